"""Pooling: numbers by hand and by numpy loops, and gradients under jit."""

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


def test_max_avg_min_pool_by_hand():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(nnx.max_pool(x, (2, 2), (2, 2))[0, ..., 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(nnx.min_pool(x, (2, 2), (2, 2))[0, ..., 0], [[0, 2], [8, 10]])
    np.testing.assert_array_equal(
        nnx.avg_pool(x, (2, 2), (2, 2))[0, ..., 0], [[2.5, 4.5], [10.5, 12.5]]
    )


def test_avg_pool_count_include_pad():
    x = jnp.ones((1, 3, 1))
    with_pad = nnx.avg_pool(x, (2,), padding=((1, 0),))
    without = nnx.avg_pool(x, (2,), padding=((1, 0),), count_include_pad=False)
    np.testing.assert_allclose(with_pad[0, :, 0], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(without[0, :, 0], [1.0, 1.0, 1.0])


def test_pool_unbatched_and_same_padding():
    x = jax.random.normal(jax.random.key(0), (5, 5, 2))
    y = nnx.max_pool(x, (3, 3), padding="SAME")
    assert y.shape == (5, 5, 2)
    assert float(y[2, 2, 0]) == float(jnp.max(x[1:4, 1:4, 0]))
    with pytest.raises(nnx.layers.ShapeError, match="at least 3 axes"):
        nnx.max_pool(jnp.ones((4, 4)), (2, 2))


def test_max_pool_integer_inputs():
    x = jnp.arange(4, dtype=jnp.int32).reshape(1, 4, 1)
    np.testing.assert_array_equal(nnx.max_pool(x, (2,), (2,))[0, :, 0], [1, 3])


@pytest.mark.parametrize("name", ["max", "min", "avg"])
def test_pool_strided_windows_match_a_numpy_loop(name):
    x = np.asarray(jax.random.normal(jax.random.key(0), (2, 7, 6, 3)))
    fn = {"max": nnx.max_pool, "min": nnx.min_pool, "avg": nnx.avg_pool}[name]
    red = {"max": np.max, "min": np.min, "avg": np.mean}[name]
    y = fn(jnp.asarray(x), (3, 2), strides=(2, 3))
    rows, cols = (7 - 3) // 2 + 1, (6 - 2) // 3 + 1
    expected = np.zeros((2, rows, cols, 3))
    for i in range(rows):
        for j in range(cols):
            expected[:, i, j] = red(x[:, 2 * i : 2 * i + 3, 3 * j : 3 * j + 2], axis=(1, 2))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
