"""nnx.jit errors that name the thing (issue #12): bad leaf values, donated buffers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class HoldsString(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(2))
        self.p = nnx.Param("abc")


def test_a_string_in_a_param_names_the_path_and_type():
    m = HoldsString()
    f = nnx.jit(lambda model: model.w[...] * 2)
    with pytest.raises(TypeError, match=r"Param at 'model/p' holds a value of type str"):
        f(m)


class Model(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(3))


def _fail(x):
    raise RuntimeError("step failed at run time")


def _donating_step():
    @nnx.jit(donate_argnums=0)
    def step(model, x):
        model.w[...] = model.w[...] + x
        jax.debug.callback(_fail, x)
        return model.w[...].sum()

    return step


def test_a_failed_donating_call_says_which_buffers_were_donated():
    m = Model()
    step = _donating_step()
    with pytest.raises(Exception, match="step failed") as info:
        step(m, jnp.ones(3))
        jax.effects_barrier()
    if not m.w.get_raw_value().is_deleted():
        pytest.skip("this backend did not delete the donated buffer")
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "donated the buffers of 'model/w'" in notes


def test_the_next_call_with_a_donated_model_names_the_path():
    m = Model()
    step = _donating_step()
    with pytest.raises(Exception, match="step failed"):
        step(m, jnp.ones(3))
        jax.effects_barrier()
    if not m.w.get_raw_value().is_deleted():
        pytest.skip("this backend did not delete the donated buffer")
    ok = nnx.jit(lambda model: model.w[...] * 2)
    with pytest.raises(nnx.DonatedBufferError, match=r"Param at 'model/w' .*donated"):
        ok(m)


def test_donation_still_works_when_the_step_succeeds():
    m = Model()

    @nnx.jit(donate_argnums=0)
    def step(model, x):
        model.w[...] = model.w[...] + x

    step(m, jnp.ones(3))
    step(m, jnp.ones(3))
    np.testing.assert_allclose(m.w[...], 3 * np.ones(3))


def _model_after_a_failed_donating_step():
    m = Model()
    step = _donating_step()
    with pytest.raises(Exception, match="step failed"):
        step(m, jnp.ones(3))
        jax.effects_barrier()
    return m


def test_eager_use_of_a_donated_model_raises_donated_buffer_error():
    # JAX alone says "Array has been deleted"; nnx says which Variable, why and the fix.
    m = _model_after_a_failed_donating_step()
    expected = r"Param at 'model/w' .*donated .*nnx.jit\(step\)"
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        m.w[...] * 2
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        jnp.dot(jnp.ones(3), m.w[...])
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        np.asarray(m.w[...])
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        m.w[...].sum()
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        float(m.w[...][0])
    # lax primitives, jax.nn and plain JAX transforms too (JAX alone: "not a valid JAX type")
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        jax.lax.dot_general(jnp.ones(3), m.w[...], (((0,), (0,)), ((), ())))
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        jax.nn.relu(m.w[...])
    with pytest.raises(nnx.DonatedBufferError, match=expected):
        jax.jit(lambda a: a * 2)(m.w[...])
    assert not hasattr(m.w[...], "sharding")
    # the shape and dtype stay readable, and the repr says what happened
    assert m.w.shape == (3,) and m.w.dtype == jnp.float32
    assert "donated" in repr(m)


def test_a_donated_model_restored_with_update_works_again():
    saved = nnx.state(Model())
    m = _model_after_a_failed_donating_step()
    nnx.update(m, saved)
    np.testing.assert_allclose(m.w[...] * 2, 2 * np.ones(3))
    np.testing.assert_allclose(nnx.jit(lambda model: model.w[...] * 2)(m), 2 * np.ones(3))
