"""Flax NNX 0.12.8 arguments and names, each checked against an independent computation."""

import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nnx
import nnx.layers as L


def plus_bias(y, bias):
    """``y + bias`` with the bias broadcast to ``y``'s trailing axes explicitly (rank
    promotion raises in these tests)."""
    return y + jnp.broadcast_to(bias, jnp.shape(y))


def _bias(layer: nnx.Linear) -> jax.Array:
    """``layer.bias[...]`` of a layer built with a bias (its type allows None)."""
    assert layer.bias is not None
    return layer.bias[...]


TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-5)
BF = jnp.bfloat16


def _bf16(cls, *args, **kw):
    return cls(*args, dtype=BF, param_dtype=BF, preferred_element_type=jnp.float32, **kw)


def test_preferred_element_type_reaches_dot_general():
    x = jax.random.normal(jax.random.key(1), (2, 3)).astype(BF)
    layer = _bf16(nnx.Linear, 3, 4, use_bias=False, rngs=nnx.Rngs(0))
    want = lax.dot_general(
        x, layer.kernel[...], (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )
    got = layer(x)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, want)

    lg = _bf16(nnx.LinearGeneral, 3, (2, 2), use_bias=False, rngs=nnx.Rngs(0))
    want = lax.dot_general(
        x, lg.kernel[...], (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )
    assert lg(x).dtype == jnp.float32
    np.testing.assert_array_equal(lg(x), want)

    es = _bf16(nnx.Einsum, "bi,io->bo", (3, 4), rngs=nnx.Rngs(0))
    want = jnp.einsum("bi,io->bo", x, es.kernel[...], preferred_element_type=jnp.float32)
    assert es(x).dtype == jnp.float32
    np.testing.assert_array_equal(es(x), want)


def test_preferred_element_type_reaches_the_convolutions():
    x = jax.random.normal(jax.random.key(1), (1, 6, 2)).astype(BF)
    conv = _bf16(nnx.Conv, 2, 3, 3, padding="VALID", use_bias=False, rngs=nnx.Rngs(0))
    dn = lax.ConvDimensionNumbers((0, 2, 1), (2, 1, 0), (0, 2, 1))
    want = lax.conv_general_dilated(
        x,
        conv.kernel[...],
        (1,),
        "VALID",
        lhs_dilation=(1,),
        rhs_dilation=(1,),
        dimension_numbers=dn,
        preferred_element_type=jnp.float32,
    )
    assert conv(x).dtype == jnp.float32
    np.testing.assert_array_equal(conv(x), want)
    ct = _bf16(nnx.ConvTranspose, 2, 3, 3, padding="VALID", use_bias=False, rngs=nnx.Rngs(0))
    want = lax.conv_transpose(
        x, ct.kernel[...], (1,), "VALID", dimension_numbers=dn, preferred_element_type=jnp.float32
    )
    assert ct(x).dtype == jnp.float32
    np.testing.assert_array_equal(ct(x), want)


def test_multi_head_attention_metadata_lands_on_the_variables():
    attn = nnx.MultiHeadAttention(
        num_heads=2,
        in_features=4,
        normalize_qk=True,
        kernel_metadata={"sharding_names": (None, "model", None)},
        out_kernel_metadata={"sharding_names": ("model", None, None)},
        bias_metadata={"sharding_names": ("model", None)},
        out_bias_metadata={"sharding_names": (None,)},
        query_ln_scale_metadata={"tag": "q"},
        key_ln_scale_metadata={"tag": "k"},
        rngs=nnx.Rngs(0),
    )
    for sub in (attn.query, attn.key, attn.value):
        assert sub.kernel.get_metadata("sharding_names") == (None, "model", None)
        assert sub.bias is not None
        assert sub.bias.get_metadata("sharding_names") == ("model", None)
    assert attn.out.kernel.get_metadata("sharding_names") == ("model", None, None)
    assert attn.out.bias is not None
    assert attn.out.bias.get_metadata("sharding_names") == (None,)
    assert attn.query_ln is not None and attn.query_ln.scale is not None
    assert attn.key_ln is not None and attn.key_ln.scale is not None
    assert attn.query_ln.scale.get_metadata("tag") == "q"
    assert attn.key_ln.scale.get_metadata("tag") == "k"
    # out_* fall back to the shared ones when not given
    shared = nnx.MultiHeadAttention(
        2, 4, kernel_metadata={"sharding_names": (None, "m", None)}, rngs=nnx.Rngs(0)
    )
    assert shared.out.kernel.get_metadata("sharding_names") == (None, "m", None)


def test_cell_and_lora_metadata_land_on_the_variables():
    md: dict[str, Any] = dict(
        kernel_metadata={"tag": "in"},
        recurrent_kernel_metadata={"tag": "rec"},
        bias_metadata={"tag": "bias"},
    )
    lstm = nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0), **md)
    assert lstm.ii.kernel.get_metadata("tag") == "in"
    assert lstm.hf.bias is not None
    assert (
        lstm.hf.kernel.get_metadata("tag") == "rec" and lstm.hf.bias.get_metadata("tag") == "bias"
    )
    gru = nnx.GRUCell(2, 3, rngs=nnx.Rngs(0), **md)
    assert gru.dense_i.kernel.get_metadata("tag") == "in"
    assert gru.dense_h.kernel.get_metadata("tag") == "rec"
    simple = nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0), **md)
    assert simple.dense_i.bias is not None and simple.dense_h.bias is None
    assert simple.dense_i.bias.get_metadata("tag") == "bias"
    opt = nnx.OptimizedLSTMCell(2, 3, rngs=nnx.Rngs(0), **md)
    assert opt.dense_i.kernel.get_metadata("tag") == "in"
    assert opt.dense_h.kernel.get_metadata("tag") == "rec"
    lora = nnx.LoRALinear(
        2, 3, lora_rank=1, a_metadata={"tag": "a"}, b_metadata={"tag": "b"}, rngs=nnx.Rngs(0)
    )
    assert lora.lora.lora_a.get_metadata("tag") == "a"
    assert lora.lora.lora_b.get_metadata("tag") == "b"


def test_optimized_lstm_cell_matches_lstm_cell_with_the_same_params():
    ref = nnx.LSTMCell(3, 4, bias_init=nnx.initializers.normal(), rngs=nnx.Rngs(0))
    opt = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(1))
    gates = ("i", "f", "g", "o")
    inp = {"i": ref.ii, "f": ref.if_, "g": ref.ig, "o": ref.io}
    rec = {"i": ref.hi, "f": ref.hf, "g": ref.hg, "o": ref.ho}
    opt.dense_i.kernel[...] = jnp.concatenate([inp[g].kernel[...] for g in gates], -1)
    opt.dense_h.kernel[...] = jnp.concatenate([rec[g].kernel[...] for g in gates], -1)
    assert opt.dense_h.bias is not None
    opt.dense_h.bias[...] = jnp.concatenate([_bias(rec[g]) for g in gates], -1)
    x = jax.random.normal(jax.random.key(2), (2, 3))
    carry = (
        jax.random.normal(jax.random.key(3), (2, 4)),
        jax.random.normal(jax.random.key(4), (2, 4)),
    )
    (c1, h1), y1 = ref(carry, x)
    (c2, h2), y2 = opt(carry, x)
    for a, b in ((c1, c2), (h1, h2), (y1, y2)):
        np.testing.assert_allclose(a, b, **TOL)
    # and by hand: the LSTM equations
    c, h = carry
    pre = {
        g: x @ inp[g].kernel[...] + plus_bias(h @ rec[g].kernel[...], _bias(rec[g])) for g in gates
    }
    sig = jax.nn.sigmoid
    new_c = sig(pre["f"]) * c + sig(pre["i"]) * jnp.tanh(pre["g"])
    np.testing.assert_allclose(c2, new_c, **TOL)
    np.testing.assert_allclose(h2, sig(pre["o"]) * jnp.tanh(new_c), **TOL)
    assert [a.shape for a in opt.initialize_carry((2, 3))] == [(2, 4), (2, 4)]


def test_spectral_norm_divides_by_the_power_iteration_estimate():
    base = nnx.Linear(4, 5, rngs=nnx.Rngs(0))
    w0 = np.asarray(base.kernel[...])
    sn = nnx.SpectralNorm(base, n_steps=3, rngs=nnx.Rngs(1))
    u0 = np.asarray(sn.batch_stats[("kernel", "u")][...])
    assert u0.shape == (1, 5) and isinstance(sn.batch_stats[("kernel", "sigma")], nnx.BatchStat)
    x = jax.random.normal(jax.random.key(2), (2, 4))
    y = sn(x)
    # independent power iteration in NumPy
    u = u0
    for _ in range(3):
        v = u @ w0.T
        v = v / np.sqrt((v * v).sum() + 1e-12)
        u = v @ w0
        u = u / np.sqrt((u * u).sum() + 1e-12)
    sigma = (v @ w0 @ u.T)[0, 0]  # pyright: ignore[reportPossiblyUnboundVariable]  (3 steps ran)
    np.testing.assert_allclose(base.kernel[...], w0 / sigma, **TOL)
    assert base.bias is not None
    np.testing.assert_allclose(y, plus_bias(x @ (w0 / sigma), base.bias[...]), **TOL)
    np.testing.assert_allclose(sn.batch_stats[("kernel", "sigma")][...], sigma, **TOL)
    np.testing.assert_allclose(sn.batch_stats[("kernel", "u")][...], u, **TOL)
    # with many steps sigma approaches the true largest singular value
    sn2 = nnx.SpectralNorm(nnx.Linear(4, 5, rngs=nnx.Rngs(0)), n_steps=50, rngs=nnx.Rngs(1))
    sn2(x)
    np.testing.assert_allclose(
        sn2.batch_stats[("kernel", "sigma")][...], np.linalg.svd(w0, compute_uv=False)[0], rtol=1e-4
    )
    # eval(): stats stay
    sn2.eval()
    before = np.asarray(sn2.batch_stats[("kernel", "u")][...])
    assert isinstance(sn2.layer_instance, nnx.Linear)
    sn2.layer_instance.kernel[...] = jnp.asarray(w0)
    sn2(x)
    np.testing.assert_array_equal(sn2.batch_stats[("kernel", "u")][...], before)


def test_spectral_norm_error_on_non_matrix():
    conv = nnx.Conv(2, 3, (3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.LayerError, match=r"\('kernel',\) has 4 dimensions"):
        nnx.SpectralNorm(conv, error_on_non_matrix=True, rngs=nnx.Rngs(0))
    sn = nnx.SpectralNorm(conv, rngs=nnx.Rngs(0))
    assert sn.batch_stats[("kernel", "u")][...].shape == (1, 3)


def test_weight_norm_normalizes_the_kernel_columns_in_place():
    base = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
    w0 = np.asarray(base.kernel[...])
    wn = nnx.WeightNorm(base, rngs=nnx.Rngs(1))
    assert wn.scales is not None and wn.scales[("kernel",)].shape == (4,)
    x = jax.random.normal(jax.random.key(2), (5, 8))
    y = wn(x)
    want_w = w0 / np.sqrt((w0 * w0).sum(axis=0, keepdims=True) + 1e-12)
    np.testing.assert_allclose(base.kernel[...], want_w, **TOL)
    np.testing.assert_allclose(np.linalg.norm(base.kernel[...], axis=0), np.ones(4), **TOL)
    assert base.bias is not None
    np.testing.assert_allclose(y, plus_bias(x @ want_w, base.bias[...]), **TOL)
    # a scale multiplies each column; feature_axes=None normalizes the whole kernel
    wn2 = nnx.WeightNorm(
        nnx.Linear(8, 4, rngs=nnx.Rngs(0)),
        feature_axes=None,
        scale_init=nnx.initializers.constant(2.0),
        rngs=nnx.Rngs(1),
    )
    wn2(x)
    assert isinstance(wn2.layer_instance, nnx.Linear)
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(wn2.layer_instance.kernel[...])), 2.0, rtol=1e-5
    )


def test_grouped_query_attention_repeats_kv_heads():
    q = jax.random.normal(jax.random.key(0), (2, 3, 4, 8))
    k = jax.random.normal(jax.random.key(1), (2, 5, 2, 8))
    v = jax.random.normal(jax.random.key(2), (2, 5, 2, 8))
    got = nnx.dot_product_attention(q, k, v)
    want = nnx.dot_product_attention(q, jnp.repeat(k, 2, axis=-2), jnp.repeat(v, 2, axis=-2))
    np.testing.assert_allclose(got, want, **TOL)
    # by hand for head 3 (uses kv head 1)
    logits = jnp.einsum("bqd,bkd->bqk", q[:, :, 3], k[:, :, 1]) / jnp.sqrt(8.0)
    np.testing.assert_allclose(
        got[:, :, 3], jnp.einsum("bqk,bkd->bqd", jax.nn.softmax(logits), v[:, :, 1]), **TOL
    )
    attn = nnx.MultiHeadAttention(4, 8, 16, 8, 2, rngs=nnx.Rngs(0))  # Flax positional order
    assert attn.num_kv_heads == 2 and attn.key.kernel.shape == (8, 2, 4)
    assert attn(jnp.ones((1, 3, 8))).shape == (1, 3, 8)


def test_is_causal_equals_a_causal_mask():
    q = jax.random.normal(jax.random.key(0), (1, 4, 2, 3))
    got = nnx.dot_product_attention(q, q, q, is_causal=True)
    want = nnx.dot_product_attention(q, q, q, mask=nnx.make_causal_mask(jnp.ones((1, 4))))
    np.testing.assert_allclose(got, want, **TOL)
    attn = nnx.MultiHeadAttention(2, 6, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 4, 6))
    np.testing.assert_allclose(
        attn(x, is_causal=True), attn(x, mask=nnx.make_causal_mask(x[..., 0])), **TOL
    )


def test_promote_dtype_and_canonicalize_dtype_follow_flax():
    x, w, b = nnx.promote_dtype((jnp.ones(2, BF), jnp.ones(2), None))
    assert x.dtype == w.dtype == jnp.float32 and b is None
    (i,) = nnx.promote_dtype((jnp.ones(2, jnp.int32),))
    assert i.dtype == jnp.float32
    (i,) = nnx.promote_dtype((jnp.ones(2, jnp.int32),), inexact=False)
    assert i.dtype == jnp.int32
    assert nnx.canonicalize_dtype(jnp.ones(1, BF), dtype=BF) == BF
    with pytest.raises(nnx.layers.LayerError, match="not a floating"):
        nnx.canonicalize_dtype(jnp.ones(1), dtype=jnp.int32)
    seen = []

    def spy(args, *, dtype=None):
        seen.append(dtype)
        return nnx.promote_dtype(args, dtype=dtype)

    nnx.Linear(2, 3, promote_dtype=spy, dtype=BF, rngs=nnx.Rngs(0))(jnp.ones((1, 2)))
    nnx.LayerNorm(2, promote_dtype=spy, rngs=nnx.Rngs(0))(jnp.ones((1, 2)))
    assert seen == [BF, None]


def test_initializer_type_and_modified_orthogonal():
    assert isinstance(nnx.initializers.lecun_normal(), nnx.Initializer)
    assert isinstance(jax.nn.initializers.zeros, nnx.Initializer)
    w = nnx.layers.modified_orthogonal(jax.random.key(0), (3, 3), BF)
    assert w.dtype == BF
    ref = jax.nn.initializers.orthogonal()(jax.random.key(0), (3, 3), jnp.float32)
    np.testing.assert_array_equal(w, ref.astype(BF))
    assert nnx.layers.canonicalize_padding(2, 2) == [(2, 2), (2, 2)]


def _resolve(spec):
    alias, _, target = spec.partition("=")
    return alias, getattr(L, target or alias)


def test_every_name_of_the_nn_path_table_resolves_on_nnx_layers():
    for path, names in L.__nnx_paths__.items():
        assert path.startswith("nn.") or path == "helpers", path
        for spec in names.split():
            _resolve(spec)  # raises AttributeError if missing


@pytest.mark.parametrize(
    ("path", "name", "expected"),
    [
        ("nn.linear", "default_kernel_init", lambda: L.default_kernel_init),
        ("nn.linear", "Linear", lambda: nnx.Linear),
        ("nn.attention", "combine_masks", lambda: nnx.combine_masks),
        (
            "nn.attention",
            "dot_product_attention_weights",
            lambda: nnx.dot_product_attention_weights,
        ),
        ("nn.attention", "make_causal_mask", lambda: nnx.make_causal_mask),
        ("nn.normalization", "SpectralNorm", lambda: nnx.SpectralNorm),
        ("nn.recurrent", "OptimizedLSTMCell", lambda: nnx.OptimizedLSTMCell),
        ("nn.initializers", "lecun_normal", lambda: nnx.initializers.lecun_normal),
        ("nn.initializers", "zeros_init", lambda: nnx.initializers.zeros_init),
        ("nn.dtypes", "promote_dtype", lambda: nnx.promote_dtype),
        ("nn.lora", "LoRAParam", lambda: nnx.LoRAParam),
        ("nn.stochastic", "Dropout", lambda: nnx.Dropout),
        ("nn.activations", "gelu", lambda: nnx.gelu),
        ("helpers", "Sequential", lambda: nnx.Sequential),
    ],
)
def test_nn_path_table_maps_flax_names_to_the_one_implementation(path, name, expected):
    specs = dict(_resolve(s) for s in L.__nnx_paths__[path].split())
    assert specs[name] is expected()
    try:  # once nnx/__init__.py turns the table into modules
        module = importlib.import_module(f"nnx.{path}")
    except ImportError:
        return
    assert getattr(module, name) is expected()


def test_prelu_takes_flax_arguments():
    act = nnx.PReLU(0.1, BF, negative_slope_metadata={"tag": "s"})
    assert act.negative_slope.get_metadata("tag") == "s" and act.dtype == BF
    out = act(jnp.array([-1.0, 2.0]))
    assert out.dtype == BF
    np.testing.assert_allclose(out.astype(jnp.float32), [-0.1, 2.0], rtol=1e-2)
    assert nnx.PReLU()(jnp.array([-1.0], jnp.float16)).dtype == jnp.float16


def test_flip_sequences_with_flax_arguments_matches_a_loop():
    x = jax.random.normal(jax.random.key(0), (3, 4, 2))  # (batch, time, features)
    lengths = jnp.array([1, 3, 4])
    got = nnx.flip_sequences(x, lengths, 1, False)
    for b, n in enumerate([1, 3, 4]):
        np.testing.assert_array_equal(got[b, :n], x[b, :n][::-1])
    tm = nnx.flip_sequences(jnp.swapaxes(x, 0, 1), lengths, 1, True)
    np.testing.assert_array_equal(jnp.swapaxes(tm, 0, 1), got)
    with pytest.raises(nnx.layers.LayerError, match="needs num_batch_dims"):
        nnx.flip_sequences(x, lengths, time_major=False)


def test_sequential_holds_an_nnx_list_as_flax_does():
    # Flax NNX's Sequential keeps its layers in an nnx.List (a Module there): the paths
    # of iter_modules and of its state are Flax's
    model = nnx.Sequential(
        nnx.Linear(1, 2, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(2, 1, rngs=nnx.Rngs(1))
    )
    assert type(model.layers) is nnx.List
    assert [p for p, _ in nnx.iter_modules(model)] == [
        ("layers", 0),
        ("layers", 2),
        ("layers",),
        (),
    ]
    assert [p for p, _ in nnx.state(model).flat_state()] == [
        ("layers", 0, "bias"),
        ("layers", 0, "kernel"),
        ("layers", 2, "bias"),
        ("layers", 2, "kernel"),
    ]
