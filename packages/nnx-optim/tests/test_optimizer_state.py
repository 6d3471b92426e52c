"""nnx.Optimizer: all-or-nothing updates, state by parameter path, checkpoints,
pickling, extra arguments (L-BFGS), sharded moments."""

import os
import pickle
import subprocess
import sys
import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_helpers import X, Y, forward, frozen_grads, make, pure_params

import nnx
from nnx.optim import GradientStructureError, OptimError


def snapshot(model, optimizer):
    """Every array of the model and the optimizer, copied, keyed by path."""
    return jax.tree.map(np.array, nnx.state((model, optimizer)).to_pure_dict())


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def trained(steps=2, tx=None):
    model = make()
    optimizer = nnx.Optimizer(model, tx or optax.adam(1e-2), wrt=nnx.Param)
    for _ in range(steps):
        optimizer.update(model, frozen_grads(model))
    return model, optimizer


# -- all or nothing ----------------------------------------------------------------
class Boom(Exception):
    pass


def failing_tx():
    inner = optax.adam(1e-2)

    def update(updates, state, params=None):
        raise Boom("inside optax")

    return optax.GradientTransformation(inner.init, update)


def test_an_error_inside_optax_leaves_model_and_optimizer_as_they_were():
    model = make()
    optimizer = nnx.Optimizer(model, failing_tx(), wrt=nnx.Param)
    before = snapshot(model, optimizer)
    with pytest.raises(Boom, match="inside optax"):
        optimizer.update(model, frozen_grads(model))
    assert_same(snapshot(model, optimizer), before)


def test_a_state_of_another_structure_from_optax_writes_nothing():
    inner = optax.adam(1e-2)

    def update(updates, state, params=None):
        u, s = inner.update(updates, state, params)
        return u, (s, optax.EmptyState())  # not the structure init gave

    model = make()
    optimizer = nnx.Optimizer(model, optax.GradientTransformation(inner.init, update))
    before = snapshot(model, optimizer)
    with pytest.raises(OptimError, match="another structure.*Nothing was written"):
        optimizer.update(frozen_grads(model))
    assert_same(snapshot(model, optimizer), before)


def test_a_refused_write_undoes_the_writes_made_before_it():
    model, optimizer = trained(2)
    grads = frozen_grads(model)
    # l2/bias comes after l1/* in path order: l1 is written first, then l2/bias refuses
    model.l2.bias = nnx.vars_as(model.l2.bias, mutable=False)
    before = snapshot(model, optimizer)
    with pytest.raises(nnx.ImmutableVariableError):
        optimizer.update(model, grads)
    assert_same(snapshot(model, optimizer), before)


def test_a_gradient_error_leaves_everything_as_it_was():
    model, optimizer = trained(1)
    grads = frozen_grads(model).to_pure_dict()
    grads["l2"]["kernel"] = jnp.ones((3, 8))
    before = snapshot(model, optimizer)
    with pytest.raises(GradientStructureError, match="'l2/kernel' has shape"):
        optimizer.update(model, grads)
    assert_same(snapshot(model, optimizer), before)


# -- a model of another structure --------------------------------------------------
def test_another_models_structure_names_the_first_differing_path():
    model, optimizer = trained(1)
    other = make(lora=True)  # an extra Variable, `lora`
    before = snapshot(model, optimizer)
    with pytest.raises(
        GradientStructureError,
        match=r"model passed \(MLP\) does not match the optimizer's: it has a selected "
        r"Variable at 'lora'",
    ):
        optimizer.update(other, frozen_grads(other))
    assert_same(snapshot(model, optimizer), before)

    del other.lora  # now a missing Variable
    other.l1.bias = None  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(GradientStructureError, match="has no selected Variable at 'l1/bias'"):
        optimizer.update(other, {})


def test_another_models_shapes_name_the_path_and_both_shapes():
    model, optimizer = trained(1)
    other = make()
    other.l2.kernel = nnx.Param(jnp.zeros((8, 5)))
    other.l2.bias = nnx.Param(jnp.zeros((5,)))
    with pytest.raises(
        GradientStructureError,
        match=r"'l2/bias' has shape \(5,\), but the optimizer's state was built for shape "
        r"\(3,\)",
    ):
        optimizer.update(other, jax.tree.map(jnp.zeros_like, pure_params(other)))


def test_a_model_of_the_same_structure_is_accepted():
    model, optimizer = trained(1)
    twin = make()
    optimizer.update(twin, frozen_grads(twin))
    assert int(optimizer.step[...]) == 2


# -- update returns None, as Flax's ---------------------------------------------------
def test_update_returns_none_like_flax():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    assert optimizer.update(model, frozen_grads(model)) is None
    assert optimizer.update(frozen_grads(model)) is None


# -- the state by parameter path ------------------------------------------------------
class Stack(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List(
            [
                nnx.Dict(
                    kernel=nnx.Param(jax.random.normal(rngs.params(), (2, 2))),
                    bias=nnx.Param(jnp.zeros((2,))),
                )
                for _ in range(2)
            ]
        )

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.tanh(x @ layer["kernel"] + layer["bias"][None])
        return x


def stack_loss(p):
    x = X
    for layer in p["layers"].values() if isinstance(p["layers"], dict) else p["layers"]:
        x = jnp.tanh(x @ layer["kernel"] + layer["bias"][None])
    return jnp.mean((x - Y[:, :2]) ** 2)


def test_moments_are_addressable_by_parameter_path_as_in_the_cookbook():
    model = Stack(nnx.Rngs(0))
    tx = optax.adam(1e-2)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    params = nnx.state(model, nnx.Param).to_pure_dict()
    state: Any = tx.init(params)  # optax state: (ScaleByAdamState, ...)
    for _ in range(3):
        grads = jax.grad(lambda m: stack_loss(nnx.state(m, nnx.Param).to_pure_dict()))(
            nnx.vars_as(model, mutable=False)
        )
        optimizer.update(model, grads)
        g = jax.grad(stack_loss)(params)
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    mu = optimizer.opt_state[0].mu["layers"][0]["kernel"]  # Flax's access pattern
    assert isinstance(mu, nnx.OptVariable)
    np.testing.assert_allclose(mu[...], state[0].mu["layers"][0]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(
        optimizer.opt_state[0].nu["layers"][1]["bias"][...],
        state[0].nu["layers"][1]["bias"],
        rtol=1e-6,
    )
    assert int(optimizer.opt_state[0].count[...]) == 3


def test_checkpoint_keys_are_parameter_paths():
    model, optimizer = trained(1)
    paths = {p for p, _ in nnx.state(optimizer, nnx.OptState).flat_state()}
    assert ("opt_state", 0, "mu", "l1", "kernel") in paths
    assert ("opt_state", 0, "nu", "l2", "bias") in paths
    assert ("opt_state", 0, "count") in paths and ("step",) in paths
    assert len(paths) == 2 + 2 * 4


def test_moments_carry_their_parameters_metadata():
    model = make()
    model.l1.kernel.set_metadata(sharding_names=(None, "model"), note="k")
    optimizer = nnx.Optimizer(model, optax.lbfgs(), wrt=nnx.Param)
    mu = optimizer.opt_state[0].diff_params_memory["l1"]["kernel"]  # (memory, 2, 8)
    assert mu.get_metadata("note") == "k"
    assert mu.get_metadata("sharding_names", None) is None  # another shape: no sharding names
    adam = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    assert adam.opt_state[0].mu["l1"]["kernel"].get_metadata("sharding_names") == (
        None,
        "model",
    )


# -- checkpoints -------------------------------------------------------------------
def elements(tree):
    return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("form", ["joint", "model_and_opt_state"])
def test_a_checkpoint_through_numpy_stores_each_array_once_and_training_continues_bit_for_bit(
    form,
):
    model, optimizer = trained(2)
    if form == "joint":
        ckpt = nnx.state((model, optimizer)).to_pure_dict()
    else:
        ckpt = {
            "model": nnx.state(model).to_pure_dict(),
            "optimizer": nnx.state(optimizer, nnx.OptState).to_pure_dict(),
        }
    ckpt = jax.tree.map(np.asarray, ckpt)  # what a plain numpy checkpoint holds
    n_model = elements(nnx.state(model).to_pure_dict())
    n_opt = 1 + 1 + 2 * (n_model - 1)  # step, count, mu and nu of the Params (not `calls`)
    assert elements(ckpt) == n_model + n_opt

    fresh = make()
    fresh.l1.kernel[...] = jnp.zeros((2, 8))  # different values before the restore
    fresh_opt = nnx.Optimizer(fresh, optax.adam(1e-2), wrt=nnx.Param)
    if form == "joint":
        state = nnx.state((fresh, fresh_opt))
        state.replace_by_pure_dict(ckpt)
        nnx.update((fresh, fresh_opt), state)
    else:
        m_state = nnx.state(fresh)
        m_state.replace_by_pure_dict(ckpt["model"])
        nnx.update(fresh, m_state)
        o_state = nnx.state(fresh_opt, nnx.OptState)
        o_state.replace_by_pure_dict(ckpt["optimizer"])
        nnx.update(fresh_opt, o_state)
    assert_same(snapshot(fresh, fresh_opt), snapshot(model, optimizer))
    for _ in range(2):
        optimizer.update(model, frozen_grads(model))
        fresh_opt.update(fresh, frozen_grads(fresh))
    assert_same(snapshot(fresh, fresh_opt), snapshot(model, optimizer))


# -- pickling ------------------------------------------------------------------------
def test_pickling_the_optimizer_says_the_transformation_cannot_be_pickled_and_shows_the_recipe():
    model, optimizer = trained(1)
    with pytest.raises(
        OptimError,
        match=r"optax transformation .* cannot be pickled.*nnx.state\(optimizer\).*"
        r"nnx.Optimizer\(model, tx",
    ):
        pickle.dumps((model, optimizer))


def test_the_pickle_recipe_round_trips_and_training_continues_bit_for_bit():
    model, optimizer = trained(2)
    blob = pickle.dumps((model, nnx.state(optimizer)))
    model2, opt_state = pickle.loads(blob)
    optimizer2 = nnx.Optimizer(model2, optax.adam(1e-2), wrt=nnx.Param)
    nnx.update(optimizer2, opt_state)
    assert optimizer2.model is model2
    assert_same(snapshot(model2, optimizer2), snapshot(model, optimizer))
    for _ in range(2):
        optimizer.update(model, frozen_grads(model))
        optimizer2.update(model2, frozen_grads(model2))
    assert_same(snapshot(model2, optimizer2), snapshot(model, optimizer))


def test_an_optimizer_with_a_picklable_transformation_pickles():
    model, optimizer = trained(1)
    optimizer.tx = PicklableSGD()
    model2, optimizer2 = pickle.loads(pickle.dumps((model, optimizer)))
    assert optimizer2.model is model2 and isinstance(optimizer2.tx, PicklableSGD)
    optimizer2.update(frozen_grads(model2))
    assert int(optimizer2.step[...]) == 2


def _sgd_init(params):
    return optax.EmptyState()


def _sgd_update(updates, state, params=None):
    return jax.tree.map(lambda g: -0.1 * g, updates), state


class PicklableSGD(optax.GradientTransformation):
    def __new__(cls):
        return super().__new__(cls, _sgd_init, _sgd_update)

    def __reduce__(self):
        return (PicklableSGD, ())


def test_copy_of_an_optimizer_still_works():
    import copy

    model, optimizer = trained(1)
    twin = copy.copy(optimizer)
    assert twin.tx is optimizer.tx
    deep = copy.deepcopy((model, optimizer))
    deep[1].update(frozen_grads(deep[0]))
    assert int(deep[1].step[...]) == 2


# -- extra arguments of update: Flax's L-BFGS recipe ---------------------------------
class TwoLayer(nnx.Module):
    """Only Params, so ``nnx.merge(graphdef, params)`` rebuilds it (Flax's recipe)."""

    def __init__(self, rngs):
        self.l1 = nnx.Dict(
            kernel=nnx.Param(jax.random.normal(rngs.params(), (2, 8)) * 0.5),
            bias=nnx.Param(jnp.zeros((8,))),
        )
        self.l2 = nnx.Dict(
            kernel=nnx.Param(jax.random.normal(rngs.params(), (8, 3)) * 0.5),
            bias=nnx.Param(jnp.zeros((3,))),
        )

    def __call__(self, x):
        return forward(nnx.state(self).to_pure_dict(), x)


def two_layer_loss(m):
    return jnp.mean((m(X) - Y) ** 2)


def lbfgs_by_hand(params, steps):
    tx = optax.lbfgs(1e-3)
    value_fn = lambda p: jnp.mean((forward(p, X) - Y) ** 2)  # noqa: E731
    state = tx.init(params)
    for _ in range(steps):
        value, grad = jax.value_and_grad(value_fn)(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("grads_kind", ["module_shaped", "state_of_variables"])
def test_flax_lbfgs_recipe_matches_optax_lbfgs_by_hand(grads_kind):
    steps = 3
    m = TwoLayer(nnx.Rngs(0))
    expected = lbfgs_by_hand(nnx.state(m).to_pure_dict(), steps)
    graphdef, _ = nnx.split(m)
    loss_fn = two_layer_loss
    opt = nnx.Optimizer(m, optax.lbfgs(1e-3), wrt=nnx.Param)
    for _ in range(steps):
        if grads_kind == "module_shaped":
            loss, grads = jax.value_and_grad(loss_fn)(nnx.vars_as(m, mutable=False))
        else:
            graphdef_, params = nnx.split(m)
            loss, grads = jax.value_and_grad(lambda p, g=graphdef_: loss_fn(nnx.merge(g, p)))(
                nnx.vars_as(params, mutable=False)
            )
        opt.update(
            m, grads, grad=grads, value=loss, value_fn=lambda s: loss_fn(nnx.merge(graphdef, s))
        )
    got = nnx.state(m).to_pure_dict()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(loss_fn(m)) < float(loss_fn(TwoLayer(nnx.Rngs(0))))


def test_flax_lbfgs_recipe_with_nnx_value_and_grad():
    pytest.importorskip("nnx.transforms")
    steps = 2
    m = TwoLayer(nnx.Rngs(0))
    expected = lbfgs_by_hand(nnx.state(m).to_pure_dict(), steps)
    graphdef, _ = nnx.split(m)
    opt = nnx.Optimizer(m, optax.lbfgs(1e-3), wrt=nnx.Param)
    for _ in range(steps):
        loss, grads = nnx.value_and_grad(two_layer_loss)(m)
        opt.update(
            m,
            grads,
            grad=grads,
            value=loss,
            value_fn=lambda s: two_layer_loss(nnx.merge(graphdef, s)),
        )
    got = nnx.state(m).to_pure_dict()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_variables_in_any_extra_argument_reach_optax_as_arrays():
    seen = {}
    inner = optax.sgd(0.1)

    def update(updates, state, params=None, *, extra=None):
        seen["extra"] = extra
        return inner.update(updates, state, params)

    tx = optax.GradientTransformationExtraArgs(inner.init, update)
    model = make()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    optimizer.update(model, frozen_grads(model), extra={"a": nnx.Param(jnp.ones(2)), "b": 3})
    assert type(seen["extra"]["a"]) is not nnx.Param
    np.testing.assert_array_equal(seen["extra"]["a"], jnp.ones(2))
    assert seen["extra"]["b"] == 3


# -- sharding (8 simulated devices, own process) -----------------------------------
def test_moments_carry_the_sharding_of_their_parameters_on_a_mesh():
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, optax
        from jax.sharding import PartitionSpec as P
        import nnx

        mesh = jax.make_mesh((2, 4), ("data", "model"))
        init = nnx.with_partitioning(jax.nn.initializers.ones, (None, "model"))

        class M(nnx.Module):
            def __init__(self):
                self.w = nnx.Param(init(jax.random.key(0), (4, 8)))
                self.b = nnx.Param(jnp.zeros((8,)))

            def __call__(self, x):
                return x @ self.w + self.b[None]

        model = M()
        nnx.shard_state(nnx.state(model), mesh)
        assert model.w[...].sharding.spec == P(None, "model")
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
        mu = optimizer.opt_state[0].mu["w"]
        assert mu[...].sharding.spec == P(None, "model"), mu[...].sharding
        assert mu.get_metadata("sharding_names") == (None, "model")
        assert len({s.device for s in mu[...].addressable_shards}) == 8

        state = nnx.state(optimizer)
        shardings = nnx.get_named_sharding(state, mesh)
        is_var = lambda x: isinstance(x, nnx.Variable)
        assert jax.tree.structure(shardings, is_leaf=is_var) == jax.tree.structure(
            state, is_leaf=is_var
        )
        assert shardings["opt_state"][0]["nu"]["w"][...].spec == P(None, "model")
        # the standard sharded restore: put the state with those shardings
        restored = jax.device_put(state, shardings)
        assert restored["opt_state"][0]["mu"]["w"][...].sharding.spec == P(None, "model")

        x = jnp.ones((2, 4))
        with jax.set_mesh(mesh):
            grads = jax.grad(lambda m: (m(x) ** 2).sum())(nnx.vars_as(model, mutable=False))
            optimizer.update(model, grads)
        assert optimizer.opt_state[0].mu["w"][...].sharding.spec == P(None, "model")
        print("ok")
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
