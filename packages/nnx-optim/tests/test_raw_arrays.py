"""nnx.Optimizer over raw array attributes (state as in Flax NNX), selected by a predicate."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnx


class Linear(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.w = jax.random.normal(rngs.params(), (din, dout))
        self.b = jnp.zeros((dout,))

    def __call__(self, x):
        return x @ self.w + self.b[None]


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.count = jnp.array(0)
        self.linear1 = Linear(1, 32, rngs=rngs)
        self.linear2 = Linear(32, 1, rngs=rngs)

    def __call__(self, x):
        self.count += 1
        return self.linear2(jax.nn.relu(self.linear1(x)))


def is_param(path, value):
    return path[-1] in ("w", "b")


X = jnp.linspace(-1, 1, 8).reshape(8, 1)
Y = 0.8 * X**2 + 0.1


def pure(model):
    return {
        name: {"w": np.array(getattr(model, name).w), "b": np.array(getattr(model, name).b)}
        for name in ("linear1", "linear2")
    }


def by_hand(p, x):
    h = jax.nn.relu(x @ p["linear1"]["w"] + p["linear1"]["b"][None])
    return h @ p["linear2"]["w"] + p["linear2"]["b"][None]


def hand_loss(p):
    return jnp.mean((by_hand(p, X) - Y) ** 2)


def grads_of(model):
    graphdef, params, rest = nnx.split(model, is_param, ...)

    def loss(params):
        return jnp.mean((nnx.merge(graphdef, params, rest)(X) - Y) ** 2)

    return jax.grad(loss)(params)


@pytest.mark.parametrize("make_tx", [lambda: optax.sgd(1e-3), lambda: optax.adam(1e-2)])
def test_raw_array_params_train_like_optax_on_a_pure_dict(make_tx):
    model = MLP(nnx.Rngs(0))
    tx = make_tx()
    optimizer = nnx.Optimizer(model, tx, wrt=is_param)
    p = pure(model)
    state = tx.init(p)
    for _ in range(3):
        optimizer.update(model, grads_of(model))
        updates, state = tx.update(jax.grad(hand_loss)(p), state, p)
        p = optax.apply_updates(p, updates)
    got = pure(model)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert isinstance(model.linear1.w, jax.Array)  # still a raw array, not a Variable
    assert int(model.count) == 0  # not selected, not touched by the optimizer
    assert int(optimizer.step[...]) == 3


def test_raw_array_moments_are_addressable_by_path():
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=is_param)
    mu = optimizer.opt_state[0].mu
    assert sorted(mu) == ["linear1", "linear2"] and sorted(mu["linear1"]) == ["b", "w"]
    assert mu["linear1"]["w"][...].shape == (1, 32)
    optimizer.update(model, grads_of(model))
    assert float(jnp.abs(mu["linear2"]["w"][...]).sum()) > 0


def test_a_filter_matching_nothing_names_variables_and_arrays():
    model = MLP(nnx.Rngs(0))
    with pytest.raises(nnx.optim.OptimError, match="no Variable or array attribute matching"):
        nnx.Optimizer(model, optax.sgd(0.1), wrt=lambda path, value: False)


def test_seed_program_with_nnx_jit_and_diffstate():
    pytest.importorskip("nnx.transforms")
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(1e-3), wrt=is_param)
    p = pure(model)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, is_param))(model)
        optimizer.update(model, grads)

    for _ in range(2):
        train_step(model, optimizer, X, Y)
        p = jax.tree.map(lambda a, g: a - 1e-3 * g, p, jax.grad(hand_loss)(p))
    for a, b in zip(jax.tree.leaves(pure(model)), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert int(model.count) == 2
