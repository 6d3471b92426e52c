"""nnx.transforms.general (split_inputs / merge_inputs) and the module-path table."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Linear, add_bias

import nnx
import nnx.transforms
from nnx.transforms.general import merge_inputs, split_inputs

X = jnp.ones((1, 2))


def test_split_merge_lifts_jax_jit_and_propagates_writes(mode):
    @split_inputs
    @jax.jit
    @merge_inputs
    def forward_and_zero(model, x):
        y = model(x)
        model.w[...] *= 0
        return y

    model = Linear(2, 2, rngs=nnx.Rngs(0))
    expected = np.asarray(add_bias(X @ model.w[...], model.b[...]))
    y = forward_and_zero(model, X)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_allclose(model.w[...], 0.0)


def test_split_merge_lifts_lax_cond():
    model = Linear(2, 2, rngs=nnx.Rngs(0))
    y = split_inputs(jax.lax.cond)(
        False, merge_inputs(lambda m, x: m(x)), merge_inputs(lambda m, x: x + 1), model, X
    )
    np.testing.assert_allclose(y, 2.0)
    y = split_inputs(jax.lax.cond)(
        True, merge_inputs(lambda m, x: m(x)), merge_inputs(lambda m, x: x + 1), model, X
    )
    np.testing.assert_allclose(y, add_bias(X @ model.w[...], model.b[...]), rtol=1e-6)


def test_split_merge_lifts_vmap_with_the_internal_output_pair():
    model = Linear(2, 2, rngs=nnx.Rngs(0))
    in_axes = (None, 0)

    @split_inputs
    @functools.partial(jax.vmap, in_axes=in_axes, out_axes=(in_axes, 0))
    @merge_inputs
    def forward(model, x):
        return model(x)

    x = jnp.arange(20.0).reshape(10, 2)
    y = forward(model, x)
    assert y.shape == (10, 2)
    np.testing.assert_allclose(y, add_bias(x @ model.w[...], model.b[...]), rtol=1e-6)


def test_an_input_returned_comes_back_as_the_callers_object():
    model = Linear(2, 2, rngs=nnx.Rngs(0))
    out = split_inputs(jax.jit(merge_inputs(lambda m: m)))(model)
    assert out is model
    new = split_inputs(jax.jit(merge_inputs(lambda: Linear(2, 3, rngs=nnx.Rngs(1)))))()
    assert isinstance(new, Linear) and new.w[...].shape == (2, 3)


def test_sharing_between_arguments_is_refused_with_the_fix():
    a = Linear(2, 2, rngs=nnx.Rngs(0))
    b = Linear(2, 2, rngs=nnx.Rngs(1))
    b.w = a.w
    f = split_inputs(jax.jit(merge_inputs(lambda a, b, x: b(a(x)))))
    with pytest.raises(
        nnx.StructureError, match=r"arguments 0 and 1 share a Param.*in one argument"
    ):
        f(a, b, X)
    y = split_inputs(jax.jit(merge_inputs(lambda ab, x: ab[1](ab[0](x)))))((a, b), X)
    np.testing.assert_allclose(y, b(a(X)), rtol=1e-6)


def test_a_structure_change_inside_is_an_error_and_writes_nothing():
    model = Linear(2, 2, rngs=nnx.Rngs(0))
    w0 = np.asarray(model.w[...])

    def grow(m):
        m.w[...] += 1
        m.extra = nnx.Param(jnp.ones(()))

    with pytest.raises(nnx.StructureError, match=r"changed inside the transform \(at 'extra'\)"):
        split_inputs(jax.jit(merge_inputs(grow)))(model)
    np.testing.assert_allclose(model.w[...], w0)
    assert not hasattr(model, "extra")


def test_split_inputs_needs_the_merge_inputs_pair():
    with pytest.raises(TypeError, match="must return the `\\(inputs, output\\)` pair"):
        split_inputs(jax.jit(lambda m: jnp.zeros(3)))(Linear(2, 2, rngs=nnx.Rngs(0)))


# -- the module-path table (nnx.compat, nnx.summary) ------------------------------------
def _table_names(path: str) -> dict[str, str]:
    out = {}
    for item in nnx.transforms.__nnx_paths__[path].split():
        alias, _, target = item.partition("=")
        out[alias] = target or alias
    return out


def test_compat_table_holds_flax_older_transform_spellings():
    names = _table_names("compat")
    flax_compat = {
        "jit", "shard_map", "grad", "value_and_grad", "custom_vjp", "vjp", "jvp", "remat",
        "vmap", "scan", "while_loop", "fori_loop", "eval_shape", "cond", "switch", "checkify",
        "cached_partial", "split_rngs",
    }  # fmt: skip
    assert flax_compat <= set(names)
    assert set(names) <= flax_compat | {"pmap"}
    for alias, target in names.items():
        assert getattr(nnx.transforms, target) is getattr(nnx, alias)


def test_summary_table_resolves_to_tabulate():
    names = _table_names("summary")
    assert getattr(nnx.transforms, names["tabulate"]) is nnx.tabulate
    assert getattr(nnx.transforms, names["CallInfo"]).__name__ == "CallInfo"
    assert getattr(nnx.transforms, names["filter_rng_streams"]).__name__ == "filter_rng_streams"
