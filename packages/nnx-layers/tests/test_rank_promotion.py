"""The layers run under ``jax_numpy_rank_promotion="raise"`` (a strict setting users turn on).

They add the bias (and GroupNorm its scale) aligned to the trailing axes explicitly; with
implicit broadcasting, ``y + bias`` of a batched ``y`` raises under that setting. The
numbers are checked against the same computation written by hand (references use
numpy broadcasting, so they are computed with the setting at "allow").
"""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

import nnx

X = jax.random.normal(jax.random.key(0), (2, 5, 4))


def test_linear_with_a_batch_axis():
    layer = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    assert layer.bias is not None
    with jax.numpy_rank_promotion("raise"):
        y = layer(X)
    with jax.numpy_rank_promotion("allow"):
        ref = X @ layer.kernel[...] + layer.bias[...]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_linear_general_and_einsum():
    lg = nnx.LinearGeneral(4, (2, 3), rngs=nnx.Rngs(0))
    es = nnx.Einsum("btd,dh->bth", (4, 6), (6,), rngs=nnx.Rngs(0))
    assert lg.bias is not None and es.bias is not None
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
    assert conv.bias is not None
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
    assert gn.scale is not None and gn.bias is not None
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


def _np(x):
    return np.asarray(x, np.float64)


def test_flip_sequences_with_lengths():
    x = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)  # (batch, time, features)
    lengths = jnp.array([3, 1])
    with jax.numpy_rank_promotion("raise"):
        y = nnx.flip_sequences(x, lengths, num_batch_dims=1, time_major=False)
    for b, n in enumerate([3, 1]):  # by hand: the first n steps reversed (padding after)
        np.testing.assert_array_equal(y[b, :n], _np(x)[b, :n][::-1])


def test_avg_pool_without_counting_the_padding():
    with jax.numpy_rank_promotion("raise"):
        y = nnx.avg_pool(X, (3,), strides=(1,), padding="SAME", count_include_pad=False)
    x = _np(X)
    ref = np.stack(  # by hand: the mean of the real entries of each window
        [x[:, max(0, i - 1) : min(5, i + 2)].mean(axis=1) for i in range(5)], axis=1
    )
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_rnn_over_a_batch_with_seq_lengths():
    cell = nnx.SimpleCell(4, 3, rngs=nnx.Rngs(0))
    rnn = nnx.RNN(cell)
    lengths = jnp.array([5, 2])
    with jax.numpy_rank_promotion("raise"):
        ys = cast(jax.Array, rnn(X, seq_lengths=lengths))
    ki, kh = _np(cell.dense_i.kernel[...]), _np(cell.dense_h.kernel[...])
    bias = [_np(d.bias[...]) for d in (cell.dense_i, cell.dense_h) if d.bias is not None]
    x = _np(X)
    h = np.zeros((2, 3))
    ref = np.zeros((2, 5, 3))
    for t in range(5):  # by hand: h = tanh(x_t Ki + h Kh + b), frozen past each length
        new = np.tanh(x[:, t] @ ki + h @ kh + sum(b[None, :] for b in bias))
        h = np.where((t < np.array([5, 2]))[:, None], new, h)
        ref[:, t] = new
    np.testing.assert_allclose(ys[0], ref[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ys[1, :2], ref[1, :2], rtol=1e-4, atol=1e-5)


def test_lstm_and_gru_cells_over_a_batch():
    lstm = nnx.LSTMCell(4, 3, rngs=nnx.Rngs(0))
    gru = nnx.GRUCell(4, 3, rngs=nnx.Rngs(0))
    x = X[:, 0]
    c0 = lstm.initialize_carry(x.shape)
    h0 = gru.initialize_carry(x.shape)
    with jax.numpy_rank_promotion("raise"):
        (c, h), _ = lstm(c0, x)
        g, _ = gru(h0, x)
    with jax.numpy_rank_promotion("allow"):
        sig = jax.nn.sigmoid
        i = sig(lstm.ii(x) + lstm.hi(c0[1]))
        f = sig(lstm.if_(x) + lstm.hf(c0[1]))
        gg = jnp.tanh(lstm.ig(x) + lstm.hg(c0[1]))
        o = sig(lstm.io(x) + lstm.ho(c0[1]))
        ref_c = f * c0[0] + i * gg
        ref_h = o * jnp.tanh(ref_c)
    np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)
    assert g.shape == (2, 3)


def test_batch_norm_with_running_averages():
    bn = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
    assert bn.scale is not None and bn.bias is not None
    bn.mean[...] = jnp.arange(4.0)
    bn.var[...] = jnp.arange(1.0, 5.0)
    bn.scale[...] = jnp.arange(2.0, 6.0)
    bn.bias[...] = jnp.full((4,), 0.5)
    with jax.numpy_rank_promotion("raise"):
        y = bn(X)
    ref = (_np(X) - np.arange(4.0)) / np.sqrt(np.arange(1.0, 5.0) + bn.epsilon)
    ref = ref * np.arange(2.0, 6.0) + 0.5  # by hand, numpy broadcasting
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_spectral_norm_of_a_linear():
    sn = nnx.SpectralNorm(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    lin = cast(nnx.Linear, sn.layer_instance)
    assert lin.bias is not None
    w = _np(lin.kernel[...])
    b = _np(lin.bias[...])
    u = _np(sn.batch_stats[("kernel", "u")][...])
    with jax.numpy_rank_promotion("raise"):
        y = sn(X)
    v = u @ w.T  # by hand: one power-iteration step from the stored u
    v = v / np.linalg.norm(v)
    u = v @ w
    u = u / np.linalg.norm(u)
    sigma = (v @ w @ u.T)[0, 0]
    np.testing.assert_allclose(y, _np(X) @ (w / sigma) + b, rtol=1e-4, atol=1e-5)


def test_weight_norm_of_a_linear():
    wn = nnx.WeightNorm(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    lin = cast(nnx.Linear, wn.layer_instance)
    assert lin.bias is not None
    w = _np(lin.kernel[...])
    b = _np(lin.bias[...])
    with jax.numpy_rank_promotion("raise"):
        y = wn(X)
    normed = w / np.linalg.norm(w, axis=0, keepdims=True)  # by hand: unit columns, scale 1
    np.testing.assert_allclose(y, _np(X) @ normed + b, rtol=1e-4, atol=1e-5)
