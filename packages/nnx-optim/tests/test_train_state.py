"""nnx.TrainState (Flax NNX's functional train state) and nnx.optim's module-path table."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_helpers import X, Y, forward, make, pure_params

import nnx
import nnx.optim


def split_params(model):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def test_train_state_k_steps_equal_plain_optax_and_count_steps():
    tx = optax.adam(1e-2)
    model = make()
    graphdef, params, rest = split_params(model)
    state = nnx.TrainState.create(graphdef, params=params, tx=tx)
    assert int(state.step) == 0

    @jax.jit
    def train_step(state):
        def loss_fn(params):
            y, _ = state.apply(params, rest)(X)
            return jnp.mean((y - Y) ** 2)

        return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

    for _ in range(3):
        state = train_step(state)

    p = pure_params(make())
    opt = tx.init(p)
    for _ in range(3):
        g = jax.grad(lambda p: jnp.mean((forward(p, X) - Y) ** 2))(p)
        u, opt = tx.update(g, opt, p)
        p = optax.apply_updates(p, u)
    got = state.params.to_pure_dict()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(state.step) == 3


def test_apply_returns_output_and_the_state_after_the_call_and_reaches_methods():
    model = make()
    graphdef, params, rest = split_params(model)
    state = nnx.TrainState.create(graphdef, params=params, tx=optax.sgd(0.1))
    y, (g2, s2) = state.apply(params, rest)(X)
    np.testing.assert_allclose(y, forward(pure_params(model), X), rtol=1e-6)
    assert isinstance(g2, nnx.GraphDef) and isinstance(s2, nnx.State)
    h, _ = state.apply("params", rest).l1(X)  # a submodule, reached through attributes
    np.testing.assert_allclose(h, X @ model.l1.kernel[...] + model.l1.bias[None], rtol=1e-6)
    with pytest.raises(TypeError, match=r"apply\('step'\): the field 'step' holds"):
        state.apply("step")


def test_train_state_is_a_frozen_pytree_with_static_graphdef_and_tx():
    model = make()
    graphdef, params, _ = split_params(model)
    tx = optax.sgd(0.1)
    state = nnx.TrainState.create(graphdef, params=params, tx=tx, step=5)
    leaves = jax.tree.leaves(state)
    assert len(leaves) == 4 + 1  # 4 params, the step (sgd has no state arrays)
    rebuilt = jax.tree.map(lambda x: x, state)
    assert rebuilt.graphdef == graphdef and rebuilt.tx is tx and int(rebuilt.step) == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.step = 1  # type: ignore[misc]
    assert int(state.replace(step=jnp.asarray(9)).step) == 9


def test_subclasses_add_fields_that_apply_gradients_can_replace():
    class WithStats(nnx.TrainState):
        batch_stats: nnx.State
        name: str = dataclasses.field(default="run", metadata={"pytree_node": False})

    model = make()
    graphdef, params, stats = nnx.split(model, nnx.Param, ...)
    state = WithStats.create(graphdef, params=params, tx=optax.sgd(0.1), batch_stats=stats)
    assert len(jax.tree.leaves(state)) == 4 + 1 + 1  # params, step, stats (`calls`)
    zeros = jax.tree.map(jnp.zeros_like, params)
    new = state.apply_gradients(grads=zeros, batch_stats=jax.tree.map(lambda x: x + 1, stats))
    assert isinstance(new, WithStats) and new.name == "run" and int(new.step) == 1
    assert float(new.batch_stats["calls"][...]) == 1.0


def test_nnx_train_state_is_the_helpers_one():
    assert nnx.TrainState is nnx.optim.TrainState
    assert "TrainState" in nnx.optim.__nnx_paths__["helpers"].split()


# -- the module-path table -------------------------------------------------------------
def test_every_name_in_the_path_table_is_an_attribute_of_nnx_optim():
    table = nnx.optim.__nnx_paths__
    assert isinstance(table, dict) and table
    for path, names in table.items():
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", path), path
        assert isinstance(names, str) and names.split(), path
        for entry in names.split():
            alias, _, target = entry.partition("=")
            target = target or alias
            assert alias.isidentifier(), entry
            assert hasattr(nnx.optim, target), f"{path}: {entry}"


def test_the_path_table_lists_flax_module_paths_for_optimizer_and_metrics():
    table = {k: set(v.split()) for k, v in nnx.optim.__nnx_paths__.items()}
    assert table["helpers"] == {"TrainState"}
    assert {"Optimizer", "ModelAndOptimizer", "OptState", "OptArray", "OptVariable"} <= table[
        "training.optimizer"
    ]
    assert table["optimizer"] == table["training.optimizer"]
    assert {"Metric", "MultiMetric", "Average", "Accuracy", "Welford", "MetricState"} <= table[
        "training.metrics"
    ]
    assert table["training.ema"] == {"EMA"}
    assert nnx.optim.MetricState is nnx.metrics.MetricState
