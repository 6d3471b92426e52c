"""The packages together: nnx-layers model, nnx.jit step, nnx.Optimizer, EMA and metrics.

One jitted training step that updates the parameters, an EMA of them and a MultiMetric,
with the learning rate (an `optax.inject_hyperparams` hyperparameter) and the EMA decay
changed between steps. Everything is checked against the same loop written in plain JAX
and optax over a dict of arrays, and the step must compile once.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)


class MLP(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(3, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.tanh(self.l1(x)))


def pure_forward(p, x):
    h = jnp.tanh(x @ p["l1"]["kernel"] + p["l1"]["bias"])
    return h @ p["l2"]["kernel"] + p["l2"]["bias"]


def pure_params(model) -> dict:
    return jax.tree.map(lambda v: v[...], nnx.state(model, nnx.Param).to_pure_dict())


@pytest.mark.parametrize("hijax", [False, True])
def test_jitted_step_with_optimizer_ema_and_metrics_matches_plain_optax(hijax):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)
    y = jnp.sin(x[:, :2])
    with nnx.var_defaults(hijax=hijax):
        model = MLP(rngs=nnx.Rngs(0))
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.05)
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        ema = nnx.EMA(model, decay=0.9)
        metrics = nnx.metrics.MultiMetric(
            loss=nnx.metrics.Average("loss"), spread=nnx.metrics.Welford("loss")
        )
    traces = []

    @nnx.jit
    def step(model, optimizer, ema, metrics, decay):
        traces.append(None)
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        ema.decay[...] = decay
        ema.update(model)
        metrics.update(loss=loss)
        return loss

    # the same loop in plain JAX and optax
    params = pure_params(model)
    ref_tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.05)
    ref_opt: Any = ref_tx.init(params)  # an InjectHyperparamsState
    ref_ema = params
    losses = []
    schedule = [(0.05, 0.9), (0.05, 0.5), (0.0, 0.5), (0.2, 0.0)]
    for lr, decay in schedule:  # lr 0.0: a write between steps takes effect at once
        optimizer.opt_state.hyperparams["learning_rate"][...] = lr
        ref_opt.hyperparams["learning_rate"] = jnp.asarray(lr)
        loss_fn = lambda p: jnp.mean((pure_forward(p, x) - y) ** 2)
        ref_loss, g = jax.value_and_grad(loss_fn)(params)
        updates, ref_opt = ref_tx.update(g, ref_opt, params)
        params = optax.apply_updates(params, updates)
        ref_ema = jax.tree.map(lambda e, p, d=decay: d * e + (1 - d) * p, ref_ema, params)
        losses.append(float(ref_loss))

        loss = step(model, optimizer, ema, metrics, jnp.float32(decay))
        np.testing.assert_allclose(loss, ref_loss, **TOL)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, **TOL), pure_params(model), params
        )
    assert len(traces) == 1, "changing hyperparameters or the decay must not retrace"
    assert int(optimizer.step[...]) == len(schedule)
    ema_params = jax.tree.map(lambda v: v[...], ema.params.to_pure_dict())
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), ema_params, ref_ema)
    result = metrics.compute()
    np.testing.assert_allclose(result["loss"], np.mean(losses), **TOL)
    np.testing.assert_allclose(result["spread"].mean, np.mean(losses), **TOL)
    np.testing.assert_allclose(result["spread"].standard_deviation, np.std(losses), rtol=1e-4)
