"""Seed 004, the proof of concept: each of its capabilities with today's API.

The seed's code (`nnx.param()` descriptors, `Module.init`, `model["params"]`,
`model.apply(use_running_average=...)`) predates Variables; what it promised is what
these tests check, one capability each, with the numbers compared against plain JAX:

- shared state: two blocks that share one `Linear` stay in sync through training;
- a stateful `nnx.jit` step with no return (the seed's "yes... there's no return");
- a jitted function that returns the updated model (the seed's `jit_filter`);
- the partition API: split into params and the rest, plain `jax.jit`/`jax.grad` over
  the params, merge back;
- a per-call flag set on every submodule (BatchNorm's `use_running_average`).
"""

import jax
import jax.numpy as jnp
import numpy as np

import nnx

LR = 0.1
EPS = 1e-5


class Block(nnx.Module):
    def __init__(self, linear: nnx.Linear, *, rngs: nnx.Rngs):
        self.linear = linear
        self.bn = nnx.BatchNorm(2, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.bn(self.linear(x)))


class Model(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        shared = nnx.Linear(2, 2, rngs=rngs)
        self.block1 = Block(shared, rngs=rngs)
        self.block2 = Block(shared, rngs=rngs)

    def __call__(self, x):
        return self.block2(self.block1(x))


def _data():
    x = jax.random.normal(jax.random.key(1), (8, 2))
    y = jax.random.normal(jax.random.key(2), (8, 2))
    return x, y


def _pure_bn(h, scale, bias):
    mean = h.mean(0)
    var = (h * h).mean(0) - mean * mean
    return (h - mean) / jnp.sqrt(var + EPS) * scale + bias


def _pure_loss(p, x, y):
    """The Model, written again over a dict of arrays: one kernel used twice."""

    def block(h, bn):
        return jax.nn.relu(_pure_bn(h @ p["kernel"] + p["bias"], *bn))

    y_pred = block(block(x, p["bn1"]), p["bn2"])
    return jnp.mean((y_pred - y) ** 2)


def _pure_params(model: Model) -> dict:
    lin = model.block1.linear
    assert lin.bias is not None
    assert model.block1.bn.scale is not None and model.block1.bn.bias is not None
    assert model.block2.bn.scale is not None and model.block2.bn.bias is not None
    return {
        "kernel": jnp.asarray(lin.kernel[...]),
        "bias": jnp.asarray(lin.bias[...]),
        "bn1": (jnp.asarray(model.block1.bn.scale[...]), jnp.asarray(model.block1.bn.bias[...])),
        "bn2": (jnp.asarray(model.block2.bn.scale[...]), jnp.asarray(model.block2.bn.bias[...])),
    }


def _mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def _sgd(model, grads):
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda w, g: w - LR * g, params, grads))


def test_shared_linear_stays_in_sync_through_a_training_step():
    model = Model(rngs=nnx.Rngs(0))
    x, y = _data()
    p = _pure_params(model)
    expected_grad = jax.grad(_pure_loss)(p, x, y)

    @nnx.jit
    def train_step(model, x, y):
        _sgd(model, nnx.grad(_mse)(model, x, y))

    train_step(model, x, y)

    assert model.block1.linear is model.block2.linear
    kernel = model.block1.linear.kernel
    assert kernel is model.block2.linear.kernel
    # one parameter, used twice: its gradient is the sum over both uses, applied once
    np.testing.assert_allclose(
        kernel[...], p["kernel"] - LR * expected_grad["kernel"], rtol=1e-4, atol=1e-5
    )
    assert model.block2.linear.bias is not None
    np.testing.assert_allclose(
        model.block2.linear.bias[...], p["bias"] - LR * expected_grad["bias"], atol=1e-5
    )
    # and it is stored once in the state
    params = nnx.state(model, nnx.Param)
    assert len(jax.tree.leaves(params)) == 2 + 2 * 2
    assert nnx.find_duplicates(model) == [[("block1", "linear"), ("block2", "linear")]]


def test_stateful_jit_step_returns_nothing():
    model = nnx.Linear(12, 2, rngs=nnx.Rngs(0))
    assert model.bias is not None
    x = jax.random.normal(jax.random.key(1), (16, 12))
    y = jax.random.normal(jax.random.key(2), (16, 2))
    w0, b0 = jnp.asarray(model.kernel[...]), jnp.asarray(model.bias[...])

    @nnx.jit
    def train_step(model, x, y):
        _sgd(model, nnx.grad(_mse)(model, x, y))

    assert train_step(model, x, y) is None  # yes... there's no return :)

    gw, gb = jax.grad(lambda w, b: jnp.mean((x @ w + b - y) ** 2), argnums=(0, 1))(w0, b0)
    np.testing.assert_allclose(model.kernel[...], w0 - LR * gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.bias[...], b0 - LR * gb, rtol=1e-5, atol=1e-6)


def test_jitted_function_returns_the_updated_model():
    model = nnx.Linear(12, 2, rngs=nnx.Rngs(0))
    assert model.bias is not None
    x = jax.random.normal(jax.random.key(1), (16, 12))
    y = jax.random.normal(jax.random.key(2), (16, 2))
    w0, b0 = jnp.asarray(model.kernel[...]), jnp.asarray(model.bias[...])

    @nnx.jit
    def train_step(model, x, y):
        _sgd(model, nnx.grad(_mse)(model, x, y))
        return model

    new_model = train_step(model, x, y)

    gw = jax.grad(lambda w: jnp.mean((x @ w + b0 - y) ** 2))(w0)
    np.testing.assert_allclose(new_model.kernel[...], w0 - LR * gw, rtol=1e-5, atol=1e-6)
    # the returned model is the caller's object, updated in place (reference semantics)
    assert new_model is model


def test_partition_api_with_plain_jax_jit_and_grad():
    model = nnx.Linear(12, 2, rngs=nnx.Rngs(0))
    model.calls = nnx.BatchStat(jnp.array(0))  # non-Param state: goes to `rest`
    x = jax.random.normal(jax.random.key(1), (16, 12))
    y = jax.random.normal(jax.random.key(2), (16, 2))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    assert set(params) == {"kernel", "bias"} and set(rest) == {"calls"}
    w0, b0 = jnp.asarray(params["kernel"][...]), jnp.asarray(params["bias"][...])

    @jax.jit
    def train_step(params, x, y):
        def loss_fn(params):
            y_pred = nnx.merge(graphdef, params, rest)(x)  # merge
            return jnp.mean((y_pred - y) ** 2)

        grad = jax.grad(loss_fn)(params)
        return jax.tree.map(lambda w, g: w - LR * g, params, grad)  # sgd

    new_params = train_step(params, x, y)
    nnx.update(model, new_params)  # merge back into the live model
    assert model.bias is not None

    gw, gb = jax.grad(lambda w, b: jnp.mean((x @ w + b - y) ** 2), argnums=(0, 1))(w0, b0)
    np.testing.assert_allclose(model.kernel[...], w0 - LR * gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.bias[...], b0 - LR * gb, rtol=1e-5, atol=1e-6)
    # the same with a model rebuilt from the partitions
    rebuilt = nnx.merge(graphdef, new_params, rest)
    np.testing.assert_allclose(rebuilt(x), model(x), rtol=1e-6)


def test_per_call_flag_set_across_all_submodules():
    model = Model(rngs=nnx.Rngs(0))
    x, _ = _data()
    bns = [model.block1.bn, model.block2.bn]

    # the seed's `model.apply(use_running_average=False)(x)`: training mode everywhere
    model.set_attributes(use_running_average=False)
    assert all(bn.use_running_average is False for bn in bns)
    model(x)
    assert all(not np.allclose(bn.mean[...], 0.0) for bn in bns)  # stats were updated

    # eval mode everywhere: running averages are used and left alone
    model.eval()
    assert all(bn.use_running_average is True for bn in bns)
    means = [np.asarray(bn.mean[...]) for bn in bns]
    y = model(x)
    for bn, mean in zip(bns, means):
        np.testing.assert_array_equal(bn.mean[...], mean)
    lin = model.block1.linear

    def eval_block(h, bn):
        assert lin.bias is not None
        h = h @ lin.kernel[...] + lin.bias[...]
        h = (h - bn.mean[...]) / jnp.sqrt(bn.var[...] + EPS) * bn.scale[...] + bn.bias[...]
        return jax.nn.relu(h)

    np.testing.assert_allclose(y, eval_block(eval_block(x, bns[0]), bns[1]), rtol=1e-5, atol=1e-6)

    # only the modules a filter selects
    model.set_attributes(nnx.BatchNorm, use_running_average=False)
    assert all(bn.use_running_average is False for bn in bns)
    # and the per-call override, without touching the attribute
    before = np.asarray(bns[0].mean[...])
    bns[0](x @ lin.kernel[...], use_running_average=True)
    np.testing.assert_array_equal(bns[0].mean[...], before)
    assert bns[0].use_running_average is False
