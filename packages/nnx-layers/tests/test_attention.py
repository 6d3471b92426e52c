from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def plus_bias(y, bias):
    """``y + bias`` with the bias broadcast to ``y``'s trailing axes explicitly (rank
    promotion raises in these tests)."""
    return y + jnp.broadcast_to(bias, jnp.shape(y))


TOL: dict[str, Any] = dict(rtol=1e-4, atol=1e-5)


def naive_attention(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d)) V per batch and head, written with numpy loops."""
    q, k, v = map(np.asarray, (q, k, v))
    b, lq, h, d = q.shape
    out = np.zeros((b, lq, h, v.shape[-1]))
    for bi in range(b):
        for hi in range(h):
            s = q[bi, :, hi] @ k[bi, :, hi].T / np.sqrt(d)
            if mask is not None:
                m = np.broadcast_to(np.asarray(mask), (b, h, lq, k.shape[1]))[bi, hi]
                s = np.where(m, s, -1e30)
            w = np.exp(s - s.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            out[bi, :, hi] = w @ v[bi, :, hi]
    return out


def _qkv(lq=4, lk=5, seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(ks[0], (2, lq, 3, 4)),
        jax.random.normal(ks[1], (2, lk, 3, 4)),
        jax.random.normal(ks[2], (2, lk, 3, 2)),
    )


def test_dot_product_attention_matches_naive():
    q, k, v = _qkv()
    np.testing.assert_allclose(nnx.dot_product_attention(q, k, v), naive_attention(q, k, v), **TOL)


def test_dot_product_attention_with_mask_and_bias():
    q, k, v = _qkv(lq=5)
    mask = nnx.make_causal_mask(jnp.ones((2, 5)))
    np.testing.assert_allclose(
        nnx.dot_product_attention(q, k, v, mask=mask), naive_attention(q, k, v, mask), **TOL
    )
    bias = jnp.where(mask, 0.0, -1e9)
    np.testing.assert_allclose(
        nnx.dot_product_attention(q, k, v, bias=bias), naive_attention(q, k, v, mask), **TOL
    )


def test_masks_by_hand():
    causal = nnx.make_causal_mask(jnp.ones((1, 3)))
    np.testing.assert_array_equal(causal[0, 0], [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    tokens = jnp.array([[5, 3, 0]])
    pad = nnx.make_attention_mask(tokens > 0, tokens > 0)
    assert pad.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(pad[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    both = nnx.combine_masks(causal, pad)
    assert both is not None
    np.testing.assert_array_equal(both[0, 0], [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    assert nnx.combine_masks(None, None) is None


def test_attention_dropout_broadcasts_mask_and_scales():
    q, k, v = _qkv()
    w = nnx.dot_product_attention_weights(q, k, dropout_rng=jax.random.key(1), dropout_rate=0.5)
    w0 = nnx.dot_product_attention_weights(q, k)
    ratio = np.asarray(w / w0)
    assert set(np.unique(np.round(ratio, 4))) <= {0.0, 2.0}
    assert (ratio == ratio[0:1, 0:1]).all()  # same mask for every batch entry and head


def _mha_reference(mha, xq, xkv, mask=None):
    def proj(layer, x):
        return plus_bias(jnp.einsum("bld,dhk->blhk", x, layer.kernel[...]), layer.bias[...])

    q, k, v = proj(mha.query, xq), proj(mha.key, xkv), proj(mha.value, xkv)
    heads = naive_attention(q, k, v, mask)
    return plus_bias(jnp.einsum("blhk,hko->blo", heads, mha.out.kernel[...]), mha.out.bias[...])


def test_mha_self_attention_matches_naive():
    mha = nnx.MultiHeadAttention(2, 6, qkv_features=8, out_features=5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 4, 6))
    assert mha.query.kernel.shape == (6, 2, 4) and mha.out.kernel.shape == (2, 4, 5)
    np.testing.assert_allclose(mha(x), _mha_reference(mha, x, x), **TOL)


def test_mha_cross_attention_with_mask():
    mha = nnx.MultiHeadAttention(2, 6, in_kv_features=3, rngs=nnx.Rngs(0))
    xq = jax.random.normal(jax.random.key(1), (2, 4, 6))
    xkv = jax.random.normal(jax.random.key(2), (2, 7, 3))
    mask = nnx.make_attention_mask(jnp.ones((2, 4)), jnp.arange(7)[None, :].repeat(2, 0) < 5)
    np.testing.assert_allclose(mha(xq, xkv, mask=mask), _mha_reference(mha, xq, xkv, mask), **TOL)


def test_mha_decode_with_cache_matches_causal_full_pass():
    mha = nnx.MultiHeadAttention(2, 4, decode=False, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 5, 4))
    full = mha(x, mask=nnx.make_causal_mask(x[..., 0]))
    mha.init_cache(x.shape)
    steps = [mha(x[:, t : t + 1], decode=True) for t in range(5)]
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, **TOL)
    assert mha.cache_index is not None
    assert int(mha.cache_index[...]) == 5 and isinstance(mha.cached_key, nnx.Cache)


def test_mha_decode_errors():
    mha = nnx.MultiHeadAttention(2, 4, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.LayerError, match="init_cache"):
        mha(jnp.ones((1, 1, 4)), decode=True)
    mha.init_cache((1, 3, 4))
    with pytest.raises(nnx.layers.ShapeError, match="one step at a time"):
        mha(jnp.ones((1, 2, 4)), decode=True)


def test_mha_decode_in_hijax_jit():
    with nnx.var_defaults(hijax=True):
        mha = nnx.MultiHeadAttention(2, 4, rngs=nnx.Rngs(0))
        mha.init_cache((1, 3, 4))
    step = jax.jit(lambda m, x: m(x, decode=True))
    step(mha, jnp.ones((1, 1, 4)))
    step(mha, jnp.ones((1, 1, 4)))
    assert mha.cache_index is not None and int(mha.cache_index[...]) == 2


def test_mha_dropout_train_and_eval():
    mha = nnx.MultiHeadAttention(2, 4, dropout_rate=0.5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 6, 4))
    assert not np.allclose(mha(x), mha(x))
    mha.eval()
    np.testing.assert_allclose(mha(x), mha(x))
    np.testing.assert_allclose(mha(x), _mha_reference(mha, x, x), **TOL)


def test_mha_errors_and_sow():
    with pytest.raises(nnx.layers.ShapeError, match="divisible by num_heads"):
        nnx.MultiHeadAttention(3, 4, rngs=nnx.Rngs(0))
    mha = nnx.MultiHeadAttention(2, 4, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.ShapeError, match="inputs_q must have 4 features"):
        mha(jnp.ones((1, 2, 5)))
    mha(jnp.ones((1, 2, 4)), sow_weights=True)
    # sow adds the attribute at run time
    (w,) = mha.attention_weights[...]  # pyright: ignore[reportAttributeAccessIssue]
    assert w.shape == (1, 2, 2, 2)


def test_mha_normalize_qk_builds_layernorms():
    mha = nnx.MultiHeadAttention(2, 4, normalize_qk=True, rngs=nnx.Rngs(0))
    assert isinstance(mha.query_ln, nnx.LayerNorm) and mha.query_ln.bias is None
    assert mha(jnp.ones((1, 3, 4))).shape == (1, 3, 4)


def _naive_weights(q, k):
    q, k = np.asarray(q), np.asarray(k)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    w = np.exp(s - s.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


@pytest.mark.parametrize("broadcast", [True, False])
def test_attention_dropout_matches_masked_naive_weights(broadcast):
    q, k, v = _qkv()
    key = jax.random.key(3)
    w = _naive_weights(q, k)
    shape = (1, 1) + w.shape[2:] if broadcast else w.shape
    kept = np.asarray(jax.random.bernoulli(key, 0.75, shape))
    expected = np.einsum("bhqk,bkhd->bqhd", w * kept / 0.75, np.asarray(v))
    out = nnx.dot_product_attention(
        q, k, v, dropout_rng=key, dropout_rate=0.25, broadcast_dropout=broadcast
    )
    np.testing.assert_allclose(out, expected, **TOL)


def test_attention_dropout_without_a_key_says_what_is_missing():
    q, k, v = _qkv()
    with pytest.raises(nnx.layers.MissingRngsError, match="dropout_rng"):
        nnx.dot_product_attention(q, k, v, dropout_rate=0.5)


def test_mha_keeps_a_fork_of_an_rng_stream_and_takes_rngs_per_call():
    stream = nnx.Rngs(params=0, dropout=4)["dropout"]
    # accepted at run time; __init__ is annotated `rngs: Rngs` only
    mha = nnx.MultiHeadAttention(2, 4, dropout_rate=0.5, rngs=stream)  # pyright: ignore[reportArgumentType]
    assert isinstance(mha.rngs, nnx.RngStream)
    x = jax.random.normal(jax.random.key(1), (1, 3, 4))
    a = mha(x, rngs=nnx.Rngs(dropout=7))
    b = mha(x, rngs=nnx.Rngs(dropout=7))
    np.testing.assert_allclose(a, b)
    no_keep = nnx.MultiHeadAttention(2, 4, dropout_rate=0.5, keep_rngs=False, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.MissingRngsError, match="pass `rngs=` per call"):
        no_keep(x)
    np.testing.assert_allclose(no_keep(x, deterministic=True), _mha_reference(no_keep, x, x), **TOL)
