"""Flax NNX 0.12's spellings of the transforms: keyword-only decorator factories
(``@nnx.vjp(graph=False)``) and split_rngs' copy form (``graph_updates=False``)."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Linear

import nnx

X = jnp.ones((1, 2))


def _loss(m, x):
    return jnp.sum(m(x))


def test_vjp_as_a_keyword_decorator_matches_the_call_form():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    y, pull = nnx.vjp(_loss, m, X, graph=False)

    @nnx.vjp(graph=False)
    def f(m, x):
        return jnp.sum(m(x))

    y2, pull2 = f(m, X)
    assert float(y2) == float(y) and f.__name__ == "f"
    (g_m, g_x), (g_m2, g_x2) = pull(jnp.ones_like(y)), pull2(jnp.ones_like(y2))
    np.testing.assert_allclose(g_x2, g_x)
    # the reference: d/dx sum(x @ w + b) = row sums of w
    np.testing.assert_allclose(g_x2, np.asarray(m.w[...]).sum(1)[None, :], rtol=1e-6)
    np.testing.assert_allclose(jax.tree.leaves(g_m2)[0], jax.tree.leaves(g_m)[0])


def test_jvp_as_a_keyword_decorator_takes_primals_and_tangents():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    m_dot = jax.tree.map(jnp.zeros_like, m)
    x_dot = jnp.ones_like(X)
    out, out_dot = nnx.jvp(_loss, (m, X), (m_dot, x_dot), graph=False)

    @nnx.jvp(graph=False)
    def f(m, x):
        return jnp.sum(m(x))

    out2, out_dot2 = f((m, X), (m_dot, x_dot))
    assert float(out2) == float(out)
    np.testing.assert_allclose(out_dot2, out_dot)
    np.testing.assert_allclose(out_dot2, np.asarray(m.w[...]).sum(), rtol=1e-6)  # ones . w
    with pytest.raises(TypeError, match="pass both primals and tangents"):
        nnx.jvp(_loss, (m, X))  # pyright: ignore  (tangents left out on purpose)


def test_custom_vjp_as_a_keyword_decorator():
    @nnx.custom_vjp(nondiff_argnums=(1,))
    def f(x, scale):
        return jnp.sin(x) * scale

    def f_fwd(x, scale):
        return f(x, scale), jnp.cos(x)

    def f_bwd(scale, cos_x, g):
        inputs_g, g = g  # graph updates on: (input_updates_g, out_g)
        assert inputs_g == (None,)  # x is not an nnx object
        return (10.0 * cos_x * g * scale,)  # a deliberately different derivative

    f.defvjp(f_fwd, f_bwd)
    assert isinstance(f, nnx.custom_vjp)
    x = jnp.array(0.5)
    np.testing.assert_allclose(jax.grad(f)(x, 2.0), 10.0 * np.cos(0.5) * 2.0, rtol=1e-6)


def test_split_rngs_without_graph_updates_returns_a_split_copy():
    rngs = nnx.Rngs(params=0, dropout=1)
    out = nnx.split_rngs(rngs, splits=5, graph_updates=False)
    assert out is not rngs and out.params.key.shape == (5,) and out.dropout.key.shape == (5,)
    assert rngs.params.key.shape == () and int(rngs.params.count[...]) == 1
    out = nnx.split_rngs(rngs, splits=(2, 5), only="params", graph_updates=False)
    assert out.params.key.shape == (2, 5) and out.dropout.key.shape == ()
    # the copy's keys are the split of the key the stream handed out
    want = jax.random.split(jax.random.fold_in(jax.random.key(0), 1), (2, 5))
    np.testing.assert_array_equal(
        jax.random.key_data(out.params.key[...]), jax.random.key_data(want)
    )
    with nnx.set_graph_mode(False):  # tree mode (the setting): a copy as well
        copy: Any = nnx.split_rngs(rngs, splits=3)
        assert copy.params.key.shape == (3,)
    assert rngs.params.key.shape == ()

    seen = []

    @nnx.split_rngs(splits=4, graph_updates=False)
    def f(r):
        seen.append((r is rngs, r.params.key.shape))

    f(rngs)
    assert seen == [(False, (4,))] and rngs.params.key.shape == ()
