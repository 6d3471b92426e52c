"""Layers in every Variable mode: plain, ref, hijax (state written inside plain jax.jit)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Block(nnx.Module):
    def __init__(self, din, dmid, dout, *, rngs):
        self.linear = nnx.Linear(din, dmid, rngs=rngs)
        self.bn = nnx.BatchNorm(dmid, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.linear_out = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x):
        return self.linear_out(nnx.gelu(self.dropout(self.bn(self.linear(x)))))


@pytest.mark.parametrize("mode", [dict(hijax=True), dict(ref=True)])
def test_batchnorm_and_dropout_update_state_inside_plain_jit(mode):
    with nnx.var_defaults(**mode):
        model = Block(2, 8, 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    assert model.dropout.rngs is not None
    count = int(model.dropout.rngs.count[...])

    @jax.jit
    def step(model, x):
        return model(x)

    y1 = step(model, x)
    h = model.linear(x)
    expected_mean = 0.01 * jnp.mean(h, 0)
    np.testing.assert_allclose(model.bn.mean[...], expected_mean, rtol=1e-4, atol=1e-6)
    assert int(model.dropout.rngs.count[...]) == count + 1
    y2 = step(model, x)
    assert not np.allclose(y1, y2)  # new dropout mask, new running stats
    assert int(model.dropout.rngs.count[...]) == count + 2


def test_hijax_eval_under_jit_leaves_state_alone():
    with nnx.var_defaults(hijax=True):
        model = Block(2, 8, 3, rngs=nnx.Rngs(0))
    model.eval()
    x = jnp.ones((4, 2))
    y1 = jax.jit(lambda m, x: m(x))(model, x)
    y2 = jax.jit(lambda m, x: m(x))(model, x)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(model.bn.mean[...], 0.0)


def test_plain_mode_state_through_split_merge_update():
    model = Block(2, 8, 3, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, x):
        m = nnx.merge(graphdef, state)
        y = m(x)
        return y, nnx.state(m)

    _, new_state = step(state, jnp.ones((4, 2)))
    nnx.update(model, new_state)
    assert model.dropout.rngs is not None
    assert int(model.dropout.rngs.count[...]) == 1
    assert not np.allclose(model.bn.mean[...], 0.0)


def test_grad_through_immutable_params_with_mutable_stats():
    with nnx.var_defaults(hijax=True):
        model = Block(2, 8, 3, rngs=nnx.Rngs(0))
    x, y = jnp.ones((4, 2)), jnp.ones((4, 3))

    @jax.jit
    def loss_and_grads(model):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss_fn(params):
            m = nnx.merge(graphdef, params, rest)
            return jnp.mean((m(x) - y) ** 2)

        return jax.value_and_grad(loss_fn)(nnx.vars_as(params, mutable=False))

    loss, grads = loss_and_grads(model)
    assert np.isfinite(float(loss))
    assert grads["linear"]["kernel"][...].shape == (2, 8)
    assert not np.allclose(model.bn.mean[...], 0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda r: nnx.Conv(2, 3, kernel_size=(3,), rngs=r),
        lambda r: nnx.Embed(5, 3, rngs=r),
        lambda r: nnx.LayerNorm(2, rngs=r),
    ],
)
def test_layers_run_in_hijax_jit(make):
    with nnx.var_defaults(hijax=True):
        layer = make(nnx.Rngs(0))
    x = jnp.ones((2, 4, 2)) if not isinstance(layer, nnx.Embed) else jnp.array([1, 2])
    plain = nnx.vars_as(layer, hijax=False)
    np.testing.assert_allclose(jax.jit(lambda m, x: m(x))(layer, x), plain(x), rtol=1e-6)
