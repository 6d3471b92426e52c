"""`to_pure_dict` / `replace_by_pure_dict` with Flax NNX 0.12's semantics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Linear

import nnx


class M(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.linear = Linear(2, 3, rngs=rngs)
        self.rngs = rngs


def test_replace_by_pure_dict_replaces_the_states_variables_and_leaves_the_model_alone():
    m = M(nnx.Rngs(0))
    kernel = m.linear.kernel
    old = np.array(kernel[...])
    state = nnx.state(m)
    pure = state.to_pure_dict()
    pure["linear"]["kernel"] = jnp.full((2, 3), 7.0)
    nnx.replace_by_pure_dict(state, pure)
    np.testing.assert_array_equal(m.linear.kernel[...], old)  # the model: unchanged
    new = state["linear"]["kernel"]
    assert new is not kernel and type(new) is nnx.Param
    np.testing.assert_array_equal(new[...], np.full((2, 3), 7.0))
    nnx.update(m, state)  # now the model gets it, in its own Variable
    assert m.linear.kernel is kernel
    np.testing.assert_array_equal(m.linear.kernel[...], np.full((2, 3), 7.0))


def test_a_state_closed_over_inside_jit_does_not_leak_a_tracer_into_the_model():
    m = M(nnx.Rngs(0))
    state = nnx.state(m, nnx.Param)
    before = np.array(m.linear.kernel[...])

    @jax.jit
    def f(pure):
        state.replace_by_pure_dict(pure)  # ported Flax code: a State from outside
        return state["linear"]["kernel"][...].sum()

    pure = jax.tree.map(jnp.ones_like, nnx.state(m, nnx.Param).to_pure_dict())
    assert float(f(pure)) == 6.0
    np.testing.assert_array_equal(m.linear.kernel[...], before)
    assert isinstance(m.linear.kernel[...], jax.Array)  # not a tracer
    y = m.linear(jnp.ones((1, 2)))  # the model still works outside
    np.testing.assert_allclose(y, jnp.ones((1, 2)) @ before, rtol=1e-6)


def test_replace_fn_and_extract_fn_as_flax_spells_them():
    m = M(nnx.Rngs(0))
    state = nnx.state(m, nnx.Param)
    pure = state.to_pure_dict(lambda v: v[...] * 2)  # Flax: extract_fn
    np.testing.assert_allclose(pure["linear"]["kernel"], m.linear.kernel[...] * 2)
    nnx.replace_by_pure_dict(state, pure, lambda old, value: old.replace(value + 1))
    np.testing.assert_allclose(state["linear"]["bias"][...], np.ones(3))
    assert nnx.to_pure_dict(state, lambda v: 0) == {"linear": {"bias": 0, "kernel": 0}}


def test_replace_by_pure_dict_keeps_the_variables_metadata_and_mode():
    with nnx.var_defaults(hijax=True):
        v = nnx.Param(jnp.zeros(2), sharding_names=("x",))
    state = nnx.State({"v": v})
    state.replace_by_pure_dict({"v": jnp.ones(2)})
    new = state["v"]
    assert new.hijax and new.get_metadata("sharding_names") == ("x",)
    np.testing.assert_array_equal(v[...], [0.0, 0.0])


def test_to_pure_dict_of_an_abstract_state_gives_key_data_shapes_and_restores():
    abstract = jax.eval_shape(lambda: M(nnx.Rngs(params=0, dropout=1)))
    abs_state = nnx.state(abstract)
    key = abs_state["rngs"]["dropout"]["key"][...]
    assert isinstance(key, jax.ShapeDtypeStruct) and key.shape == ()
    target = nnx.to_pure_dict(abs_state, key_data=True)
    data = target["rngs"]["dropout"]["key"]
    assert isinstance(data, jax.ShapeDtypeStruct)
    assert data.shape == (2,) and data.dtype == jnp.uint32  # the stored form's shape
    # a checkpoint of a concrete model, as plain arrays
    real = M(nnx.Rngs(params=0, dropout=1))
    real.rngs.dropout()
    saved = jax.tree.map(np.asarray, nnx.state(real).to_pure_dict(key_data=True))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), saved) == jax.tree.map(
        lambda x: (x.shape, x.dtype), target
    )
    abs_state.replace_by_pure_dict(saved)  # the restore of issue 16
    graphdef = nnx.graphdef(abstract)
    restored = nnx.merge(graphdef, abs_state)
    assert jax.dtypes.issubdtype(restored.rngs.dropout.key[...].dtype, jax.dtypes.prng_key)  # pyright: ignore[reportPrivateImportUsage]
    np.testing.assert_array_equal(
        jax.random.key_data(restored.rngs.dropout()), jax.random.key_data(real.rngs.dropout())
    )
    np.testing.assert_array_equal(restored.linear.kernel[...], real.linear.kernel[...])


def test_replace_by_pure_dict_rejects_a_pure_dict_that_is_not_nested_like_the_state():
    state = nnx.state(M(nnx.Rngs(0)), nnx.Param)
    with pytest.raises(
        nnx.StructureError,
        match=r"holds a leaf \(ArrayImpl\) at 'linear', where the State has the entries \['bias', 'kernel'\]",
    ):
        state.replace_by_pure_dict({"linear": jnp.ones(2)})
