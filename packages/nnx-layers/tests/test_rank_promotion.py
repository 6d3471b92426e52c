"""The layers run under ``jax_numpy_rank_promotion="raise"`` (a strict setting users turn on).

They add the bias (and GroupNorm its scale) aligned to the trailing axes explicitly; with
implicit broadcasting, ``y + bias`` of a batched ``y`` raises under that setting. The
numbers are checked against the same computation written by hand (references use
numpy broadcasting, so they are computed with the setting at "allow").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import nnx

X = jax.random.normal(jax.random.key(0), (2, 5, 4))


def test_linear_with_a_batch_axis():
    layer = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    with jax.numpy_rank_promotion("raise"):
        y = layer(X)
    with jax.numpy_rank_promotion("allow"):
        ref = X @ layer.kernel[...] + layer.bias[...]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_linear_general_and_einsum():
    lg = nnx.LinearGeneral(4, (2, 3), rngs=nnx.Rngs(0))
    es = nnx.Einsum("btd,dh->bth", (4, 6), (6,), rngs=nnx.Rngs(0))
    with jax.numpy_rank_promotion("raise"):
        y1, y2 = lg(X), es(X)
    with jax.numpy_rank_promotion("allow"):
        ref1 = jnp.einsum("btd,dij->btij", X, lg.kernel[...]) + lg.bias[...]
        ref2 = jnp.einsum("btd,dh->bth", X, es.kernel[...]) + es.bias[...]
    np.testing.assert_allclose(y1, ref1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y2, ref2, rtol=1e-5, atol=1e-6)


def test_conv_and_conv_transpose():
    conv = nnx.Conv(4, 3, kernel_size=(3,), rngs=nnx.Rngs(0))
    convt = nnx.ConvTranspose(4, 3, kernel_size=(3,), rngs=nnx.Rngs(0))
    with jax.numpy_rank_promotion("raise"):
        y1, y2 = conv(X), convt(X)
    with jax.numpy_rank_promotion("allow"):
        ref1 = jax.lax.conv_general_dilated(
            X, conv.kernel[...], (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
        ) + conv.bias[...]
    np.testing.assert_allclose(y1, ref1, rtol=1e-5, atol=1e-5)
    assert y2.shape == (2, 5, 3)


def test_group_norm():
    gn = nnx.GroupNorm(4, num_groups=2, rngs=nnx.Rngs(0))
    gn.scale[...] = jnp.arange(1.0, 5.0)
    gn.bias[...] = jnp.arange(4.0)
    with jax.numpy_rank_promotion("raise"):
        y = gn(X)
    g = X.reshape(2, 5, 2, 2)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    with jax.numpy_rank_promotion("allow"):
        normed = ((g - mean) / jnp.sqrt(var + gn.epsilon)).reshape(X.shape)
        ref = normed * gn.scale[...] + gn.bias[...]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
