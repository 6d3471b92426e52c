"""Pooling under jit and grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


@pytest.mark.parametrize("pool_fn", [nnx.avg_pool, nnx.max_pool, nnx.min_pool])
def test_pooling_is_differentiable_under_jit(pool_fn):
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3) / 10.0
    f = lambda x: pool_fn(x, (2, 2), (2, 2)).sum()
    g_jit = jax.jit(jax.grad(f))(x)
    g_eager = jax.grad(f)(x)
    np.testing.assert_allclose(g_jit, g_eager, rtol=1e-6)
    if pool_fn is nnx.avg_pool:
        np.testing.assert_allclose(g_jit, np.full(x.shape, 0.25), rtol=1e-6)
