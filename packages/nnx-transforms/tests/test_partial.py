"""jit_partial, cached_partial, make_jaxpr and PARTITION_NAME (Flax NNX 0.12.8 names)."""

from __future__ import annotations

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Linear

import nnx


def _step(m, x):
    m.w[...] += 1.0
    return m(x)


def _expected(w, b, x):
    return np.asarray(x) @ np.asarray(w) + np.asarray(b)


X = jnp.ones((1, 2))


# -- cached_partial ---------------------------------------------------------------------
def test_cached_partial_passes_clones_that_share_the_variables():
    m = Linear(2, 3, rngs=nnx.Rngs(0))

    @nnx.jit
    def f(cached_m, other):
        assert cached_m is not other
        assert cached_m.w is other.w and cached_m.b is other.b
        return cached_m

    cached_f = nnx.cached_partial(f, m)
    cached_m = cached_f(m)
    assert cached_m is not m
    assert cached_m.w is m.w and cached_m.b is m.b
    assert cached_f(m) is cached_m  # the same clone on every call


def test_cached_partial_writes_reach_the_original(mode):
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    w0 = np.asarray(m.w[...])
    step = nnx.cached_partial(nnx.jit(_step), m)
    for i in range(1, 4):
        y = step(X)
        np.testing.assert_allclose(m.w[...], w0 + i, rtol=1e-6)
        np.testing.assert_allclose(y, _expected(w0 + i, m.b[...], X), rtol=1e-6)


def test_cached_partial_sees_a_variable_replaced_on_the_original():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    step = nnx.cached_partial(nnx.jit(_step), m)
    step(X)
    m.w = nnx.Param(jnp.zeros((2, 3)))
    y = step(X)
    np.testing.assert_allclose(m.w[...], np.ones((2, 3)))
    np.testing.assert_allclose(y, _expected(np.ones((2, 3)), m.b[...], X), rtol=1e-6)


def test_cached_partial_sees_a_submodule_swapped_in_a_plain_dict():
    a, b = Linear(2, 3, rngs=nnx.Rngs(0)), Linear(2, 3, rngs=nnx.Rngs(1))
    c = {"m": a}
    f = nnx.cached_partial(nnx.jit(lambda c, x: _step(c["m"], x)), c)
    f(X)
    a_w, b_w = np.asarray(a.w[...]), np.asarray(b.w[...])
    c["m"] = b
    y = f(X)
    np.testing.assert_allclose(y, _expected(b_w + 1, b.b[...], X), rtol=1e-6)
    np.testing.assert_allclose(b.w[...], b_w + 1, rtol=1e-6)  # the write went to b
    np.testing.assert_allclose(a.w[...], a_w, rtol=1e-6)  # and not to a


def test_cached_partial_sees_an_item_replaced_in_a_plain_list():
    a, b = Linear(2, 3, rngs=nnx.Rngs(0)), Linear(2, 3, rngs=nnx.Rngs(1))
    ens = [a]
    f = nnx.cached_partial(nnx.jit(lambda ens, x: ens[0](x)), ens)
    np.testing.assert_allclose(f(X), _expected(a.w[...], a.b[...], X), rtol=1e-6)
    ens[0] = b
    np.testing.assert_allclose(f(X), _expected(b.w[...], b.b[...], X), rtol=1e-6)


def test_cached_partial_sees_an_array_replaced_in_a_plain_dict():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    c = {"m": m, "x": X}
    f = nnx.cached_partial(nnx.jit(lambda c: c["m"](c["x"])), c)
    f()
    c["x"] = 2 * X
    np.testing.assert_allclose(f(), _expected(m.w[...], m.b[...], 2 * X), rtol=1e-6)


class Grows(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones((2,)))

    def __call__(self, x):
        self.extra = nnx.Param(jnp.zeros((2,)))
        return x * self.w


def test_cached_partial_raises_when_the_call_changes_the_structure():
    m = Grows()
    f = nnx.cached_partial(nnx.jit(lambda m, x: m(x)), m)
    # nnx.jit itself, or cached_partial after the call, names the new attribute
    with pytest.raises(nnx.StructureError, match=r"extra"):
        f(jnp.ones((2,)))
    assert not hasattr(m, "extra")  # the original is left as it was


class Sows(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.full((2,), 3.0))

    def __call__(self, x):
        y = x * self.w
        self.sow(nnx.Intermediate, "y", y)
        return y


def test_cached_partial_allows_temporary_changes_undone_before_returning():
    m = Sows()

    @nnx.jit
    def f(m, x):
        y = m(x)
        inter = nnx.pop(m, nnx.Intermediate)
        return y, inter

    cached = nnx.cached_partial(f, m)
    for _ in range(2):
        y, inter = cached(jnp.ones((2,)))
        np.testing.assert_allclose(y, [3.0, 3.0])
        assert len(jax.tree.leaves(inter)) == 1
    assert not hasattr(m, "y")


# -- jit_partial ------------------------------------------------------------------------
def test_jit_partial_binds_the_first_arguments_and_writes_back(mode):
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    w0 = np.asarray(m.w[...])
    step = nnx.jit_partial(_step, m)
    y = step(X)
    np.testing.assert_allclose(m.w[...], w0 + 1, rtol=1e-6)
    np.testing.assert_allclose(y, _expected(w0 + 1, m.b[...], X), rtol=1e-6)


def test_jit_partial_sees_changes_to_the_bound_objects():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    step = nnx.jit_partial(lambda m, x: m(x), m)
    step(X)
    m.b = nnx.Param(jnp.full((3,), 5.0))
    np.testing.assert_allclose(step(X), _expected(m.w[...], 5.0, X), rtol=1e-6)


def test_jit_partial_accepts_flax_options_and_lowers():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    step = nnx.jit_partial(lambda m, x: m(x), m, graph=False, keep_unused=True)
    assert "dot_general" in step.lower(X).as_text()
    np.testing.assert_allclose(step(X), _expected(m.w[...], m.b[...], X), rtol=1e-6)


def test_jit_partial_eval_shape_writes_nothing():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    w0 = np.asarray(m.w[...])
    out = nnx.jit_partial(_step, m).eval_shape(jnp.ones((5, 2)))
    assert out.shape == (5, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(m.w[...], w0)


def test_jit_partial_donates_the_bound_model_by_position():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    w0 = np.asarray(m.w[...])
    step = nnx.jit_partial(_step, m, donate_argnums=0)
    step(X)
    step(X)
    np.testing.assert_allclose(m.w[...], w0 + 2, rtol=1e-6)


# -- make_jaxpr -------------------------------------------------------------------------
def test_make_jaxpr_traces_the_model_arrays_then_the_inputs(mode):
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    w0 = np.asarray(m.w[...])
    trace = nnx.make_jaxpr(_step)
    closed = trace(m, X)
    shapes = [tuple(v.aval.shape) for v in closed.jaxpr.invars]
    leaves = nnx.flatten(m).leaves
    assert shapes == [tuple(v[...].shape) for v in leaves] + [(1, 2)]
    prims = [e.primitive.name for e in closed.jaxpr.eqns]
    assert "dot_general" in prims and "add" in prims
    np.testing.assert_allclose(m.w[...], w0)  # tracing wrote nothing


def test_make_jaxpr_evaluates_to_the_function():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    trace = nnx.make_jaxpr(lambda m, x: m(x))
    closed = trace(m, X)
    values = [v[...] for v in nnx.flatten(m).leaves]
    (y,) = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *values, X)
    np.testing.assert_allclose(y, _expected(m.w[...], m.b[...], X), rtol=1e-6)


def test_make_jaxpr_lists_a_shared_variable_once():
    a = Linear(2, 2, rngs=nnx.Rngs(0))
    pair = [a, a]
    trace = nnx.make_jaxpr(lambda p, x: p[1](p[0](x)))
    closed = trace(pair, jnp.ones((1, 2)))
    assert len(closed.jaxpr.invars) == 3


def test_make_jaxpr_static_argnums():
    m = Linear(2, 3, rngs=nnx.Rngs(0))

    @nnx.make_jaxpr(static_argnums=1)
    def f(m, n, x):
        for _ in range(n):
            x = x * 2.0
        return m(x)

    muls = [e for e in f(m, 3, X).jaxpr.eqns if e.primitive.name == "mul"]
    assert len(muls) == 3


def test_partition_name_is_flax_metadata_key():
    assert nnx.PARTITION_NAME == "partition_name"


def test_cached_partial_names_the_entry_a_plain_function_added():
    m = Grows()
    f = nnx.cached_partial(lambda m, x: m(x), m)  # no transform: the clone itself changes
    with pytest.raises(
        nnx.StructureError,
        match=r"cached argument 0, the entry at 'extra' appeared.*same structure after each",
    ):
        f(jnp.ones((2,)))
    assert not hasattr(m, "extra")
