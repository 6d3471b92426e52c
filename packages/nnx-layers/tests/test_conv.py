from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nnx


def plus_bias(y, bias):
    """``y + bias`` with the bias broadcast to ``y``'s trailing axes explicitly (rank
    promotion raises in these tests)."""
    return y + jnp.broadcast_to(bias, jnp.shape(y))


TOL: dict[str, Any] = dict(rtol=1e-4, atol=1e-4)


def _ref_conv(x, k, strides, padding, lhs_dil=None, rhs_dil=None, groups=1):
    nd = x.ndim - 2
    spatial = "DHW"[-nd:] if nd <= 3 else None
    dn = lax.conv_dimension_numbers(
        x.shape, k.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    )
    return lax.conv_general_dilated(
        x,
        k,
        strides,
        padding,
        lhs_dilation=lhs_dil,
        rhs_dilation=rhs_dil,
        dimension_numbers=dn,
        feature_group_count=groups,
    )


@pytest.mark.parametrize(
    "rank, padding", [(1, "SAME"), (2, "VALID"), (3, 1), (2, [(1, 0)]), (1, "VALID"), (2, "SAME")]
)
def test_conv_matches_lax_conv_general_dilated(rank, padding):
    ks = (3, 2, 2)[:rank]
    conv = nnx.Conv(
        2,
        4,
        kernel_size=ks,
        strides=2 if rank < 3 else 1,
        padding=padding,
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.key(1), (2, *(5,) * rank, 2))
    if isinstance(padding, int):
        pad = [(padding, padding)] * rank
    elif isinstance(padding, list):
        pad = padding * rank
    else:
        pad = padding
    assert conv.bias is not None
    expected = plus_bias(_ref_conv(x, conv.kernel[...], conv.strides, pad), conv.bias[...])
    np.testing.assert_allclose(conv(x), expected, **TOL)


def test_conv_dilation_and_groups():
    conv = nnx.Conv(
        4,
        6,
        kernel_size=(3, 3),
        padding="VALID",
        kernel_dilation=2,
        input_dilation=(1, 2),
        feature_group_count=2,
        rngs=nnx.Rngs(0),
    )
    assert conv.kernel.shape == (3, 3, 2, 6)
    x = jax.random.normal(jax.random.key(1), (1, 9, 9, 4))
    zero = [(0, 0), (0, 0)]
    assert conv.bias is not None
    expected = plus_bias(
        _ref_conv(x, conv.kernel[...], (1, 1), zero, (1, 2), (2, 2), groups=2), conv.bias[...]
    )
    np.testing.assert_allclose(conv(x), expected, **TOL)


def test_conv_1d_by_hand():
    # y[t] = sum_j x[t + j] k[j] for VALID, one channel: a cross-correlation.
    conv = nnx.Conv(1, 1, kernel_size=3, padding="VALID", use_bias=False, rngs=nnx.Rngs(0))
    conv.kernel[...] = jnp.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
    x = jnp.arange(5.0).reshape(1, 5, 1)
    np.testing.assert_allclose(conv(x)[0, :, 0], [8.0, 14.0, 20.0])


def test_conv_circular_padding_wraps_around():
    conv = nnx.Conv(1, 1, kernel_size=3, padding="CIRCULAR", use_bias=False, rngs=nnx.Rngs(0))
    conv.kernel[...] = jnp.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
    x = jnp.arange(5.0)
    y = conv(x.reshape(1, 5, 1))[0, :, 0]
    expected = [sum(x[(t + j - 1) % 5] * (j + 1) for j in range(3)) for t in range(5)]
    np.testing.assert_allclose(y, np.asarray(expected), **TOL)


def test_conv_circular_2d_equals_conv_of_wrapped_input():
    conv = nnx.Conv(2, 3, kernel_size=(3, 4), padding="CIRCULAR", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 2))
    wrapped = jnp.pad(x, [(0, 0), (1, 1), (1, 2), (0, 0)], mode="wrap")
    assert conv.bias is not None
    expected = plus_bias(_ref_conv(wrapped, conv.kernel[...], (1, 1), "VALID"), conv.bias[...])
    y = conv(x)
    assert y.shape == (2, 6, 6, 3)
    np.testing.assert_allclose(y, expected, **TOL)


def test_conv_causal_output_depends_only_on_the_past():
    conv = nnx.Conv(
        1, 1, kernel_size=3, padding="CAUSAL", kernel_dilation=2, use_bias=False, rngs=nnx.Rngs(0)
    )
    conv.kernel[...] = jnp.array([1.0, 10.0, 100.0]).reshape(3, 1, 1)
    x = jnp.arange(1.0, 7.0)
    y = conv(x.reshape(1, 6, 1))[0, :, 0]
    xp = np.concatenate([np.zeros(4), np.asarray(x)])
    expected = [xp[t] + 10 * xp[t + 2] + 100 * xp[t + 4] for t in range(6)]
    np.testing.assert_allclose(y, expected, **TOL)


def test_conv_unbatched_and_multi_batch_inputs():
    conv = nnx.Conv(2, 3, kernel_size=(3,), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 4, 7, 2))
    y = conv(x)
    assert y.shape == (2, 4, 7, 3)
    np.testing.assert_allclose(y[1, 2], conv(x[1, 2]), **TOL)


def test_conv_mask_multiplies_kernel():
    mask = jnp.array([1.0, 1.0, 0.0]).reshape(3, 1, 1)
    conv = nnx.Conv(
        1, 1, kernel_size=3, mask=mask, use_bias=False, padding="VALID", rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (1, 6, 1))
    expected = _ref_conv(x, conv.kernel[...] * mask, (1,), "VALID")
    np.testing.assert_allclose(conv(x), expected, **TOL)


def test_conv_errors_name_layer_and_shape():
    with pytest.raises(nnx.layers.ShapeError, match="feature_group_count"):
        nnx.Conv(3, 4, kernel_size=3, feature_group_count=2, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.LayerError, match="CAUSAL"):
        nnx.Conv(1, 1, kernel_size=(3, 3), padding="CAUSAL", rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.LayerError, match="unknown padding"):
        nnx.Conv(1, 1, kernel_size=3, padding="FULL", rngs=nnx.Rngs(0))
    conv = nnx.Conv(3, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.ShapeError, match=r"Conv\(in_features=3.*\(1, 5, 5, 2\)"):
        conv(jnp.ones((1, 5, 5, 2)))


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_conv_transpose_matches_dilated_conv(padding):
    layer = nnx.ConvTranspose(
        2,
        3,
        kernel_size=(3,),
        strides=2,
        padding=padding,
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.key(1), (2, 5, 2))
    k = layer.kernel[...]
    # A transposed convolution is a convolution of the stride-dilated input; for k=3, s=2
    # the padding is (2, 2) for VALID and (2, 1) for SAME (output = 2 * input size).
    pad = [(2, 2)] if padding == "VALID" else [(2, 1)]
    assert layer.bias is not None
    expected = plus_bias(_ref_conv(x, k, (1,), pad, lhs_dil=(2,)), layer.bias[...])
    y = layer(x)
    np.testing.assert_allclose(y, expected, **TOL)
    if padding == "SAME":
        assert y.shape == (2, 10, 3)


def test_conv_transpose_circular_is_adjoint_of_circular_conv():
    # With transpose_kernel=True, ConvTranspose computes the gradient (adjoint) of Conv.
    conv = nnx.Conv(
        2, 3, kernel_size=(3,), strides=2, padding="CIRCULAR", use_bias=False, rngs=nnx.Rngs(0)
    )
    convt = nnx.ConvTranspose(
        3,
        2,
        kernel_size=(3,),
        strides=2,
        padding="CIRCULAR",
        transpose_kernel=True,
        use_bias=False,
        rngs=nnx.Rngs(0),
    )
    assert convt.kernel.shape == conv.kernel.shape == (3, 2, 3)  # the Conv's own kernel
    convt.kernel[...] = conv.kernel[...]
    x = jax.random.normal(jax.random.key(1), (1, 8, 2))
    y, vjp = jax.vjp(conv, x)
    g = jax.random.normal(jax.random.key(2), y.shape)
    (expected,) = vjp(g)
    np.testing.assert_allclose(convt(g), expected, **TOL)


def _dn(rank):
    s = "DHW"[-rank:]
    return (f"N{s}C", f"{s}IO", f"N{s}C")


def _circular_reference(x, k, strides, dilation, groups):
    """A periodic convolution read off a 3x tiled input (no padding code involved)."""
    rank = x.ndim - 2
    ns = x.shape[1:-1]
    tiled = jnp.tile(x, (1,) + (3,) * rank + (1,))
    full = lax.conv_general_dilated(
        tiled,
        k,
        (1,) * rank,
        "VALID",
        rhs_dilation=dilation,
        dimension_numbers=_dn(rank),
        feature_group_count=groups,
    )
    for axis, (n, s, ks, d) in enumerate(zip(ns, strides, k.shape[:rank], dilation)):
        lo = ((ks - 1) * d) // 2  # the window of output t starts at t * s - lo
        starts = np.array([n + t * s - lo for t in range(-(-n // s))])
        full = jnp.take(full, starts, axis=axis + 1)
    return full


PADDINGS = ["SAME", "VALID", "CIRCULAR", 1, ((2, 0),)]
# (strides, kernel_dilation, feature_group_count)
SETTINGS = [(1, 1, 1), (2, 1, 2), (1, 2, 1), (2, 2, 2)]


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
@pytest.mark.parametrize("strides, dilation, groups", SETTINGS)
def test_conv_grid_matches_lax_conv_general_dilated(rank, padding, strides, dilation, groups):
    ks = (3, 2, 3)[:rank]
    conv = nnx.Conv(
        4,
        6,
        kernel_size=ks,
        strides=strides,
        padding=padding,
        kernel_dilation=dilation,
        feature_group_count=groups,
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(0),
    )
    assert conv.kernel.shape == ks + (4 // groups, 6)
    x = jax.random.normal(jax.random.key(1), (2, *(7, 6, 5)[:rank], 4))
    k, s, d = conv.kernel[...], (strides,) * rank, (dilation,) * rank
    if padding == "CIRCULAR":
        expected = _circular_reference(x, k, s, d, groups)
        assert expected.shape[1:-1] == tuple(-(-n // strides) for n in x.shape[1:-1])
    else:
        pad = padding
        if isinstance(padding, int):
            pad = [(padding, padding)] * rank
        elif isinstance(padding, tuple):
            pad = list(padding) * rank
        expected = lax.conv_general_dilated(
            x,
            k,
            s,
            pad,
            rhs_dilation=d,
            dimension_numbers=_dn(rank),
            feature_group_count=groups,
        )
    assert conv.bias is not None
    np.testing.assert_allclose(conv(x), plus_bias(expected, conv.bias[...]), **TOL)


@pytest.mark.parametrize("strides", [1, 2])
def test_conv_causal_matches_left_padded_lax_conv(strides):
    conv = nnx.Conv(
        3, 2, kernel_size=4, strides=strides, padding="CAUSAL", kernel_dilation=2, rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (2, 9, 3))
    # only the past: pad (kernel extent - 1) zeros at the start, none at the end
    expected = lax.conv_general_dilated(
        x, conv.kernel[...], (strides,), [(6, 0)], rhs_dilation=(2,), dimension_numbers=_dn(1)
    )
    assert conv.bias is not None
    np.testing.assert_allclose(conv(x), plus_bias(expected, conv.bias[...]), **TOL)
    # changing a future input leaves every earlier output alone
    y = conv(x)
    y2 = conv(x.at[:, 5].add(10.0))
    t_last_unaffected = (5 - 1) // strides
    np.testing.assert_allclose(y2[:, : t_last_unaffected + 1], y[:, : t_last_unaffected + 1], **TOL)


@pytest.mark.parametrize("strides", [1, 2, 3])
def test_conv_same_with_input_dilation_resolves_on_the_dilated_input(strides):
    # lax refuses string padding with lhs_dilation; SAME is taken on the dilated length L:
    # ceil(L / stride) outputs, the missing extent split low = total // 2.
    conv = nnx.Conv(2, 3, kernel_size=3, strides=strides, input_dilation=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 7, 2))
    L = (7 - 1) * 2 + 1
    out = -(-L // strides)
    total = max((out - 1) * strides + 3 - L, 0)
    pad = [(total // 2, total - total // 2)]
    expected = lax.conv_general_dilated(
        x, conv.kernel[...], (strides,), pad, lhs_dilation=(2,), dimension_numbers=_dn(1)
    )
    y = conv(x)
    assert y.shape == (1, out, 3)
    assert conv.bias is not None
    np.testing.assert_allclose(y, plus_bias(expected, conv.bias[...]), **TOL)


def _transpose_pads(k, s, padding):
    """Padding of the stride-dilated input that a transposed convolution convolves."""
    if padding == "SAME":  # output length = input length * stride
        total = k + s - 2
        lo = k - 1 if s > k - 1 else -(-total // 2)
    else:  # VALID: every position any kernel tap reaches
        total = k + s - 2 + max(k - s, 0)
        lo = k - 1
    return (lo, total - lo)


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", "VALID", ((1, 2),)], ids=str)
@pytest.mark.parametrize("strides, dilation", [(1, 1), (2, 1), (3, 2)])
def test_conv_transpose_grid_matches_dilated_lax_conv(rank, padding, strides, dilation):
    ks = (3, 4)[:rank]
    layer = nnx.ConvTranspose(
        3,
        2,
        kernel_size=ks,
        strides=strides,
        padding=padding,
        kernel_dilation=dilation,
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.key(1), (2, *(5, 4)[:rank], 3))
    if isinstance(padding, str):
        pad = [_transpose_pads((k - 1) * dilation + 1, strides, padding) for k in ks]
    else:
        pad = list(padding) * rank
    expected = lax.conv_general_dilated(
        x,
        layer.kernel[...],
        (1,) * rank,
        pad,
        lhs_dilation=(strides,) * rank,
        rhs_dilation=(dilation,) * rank,
        dimension_numbers=_dn(rank),
    )
    y = layer(x)
    if padding == "SAME":
        assert y.shape[1:-1] == tuple(n * strides for n in x.shape[1:-1])
    assert layer.bias is not None
    np.testing.assert_allclose(y, plus_bias(expected, layer.bias[...]), **TOL)


def test_conv_transpose_circular_output_is_input_times_stride():
    layer = nnx.ConvTranspose(
        2, 3, kernel_size=(3, 5), strides=(2, 3), padding="CIRCULAR", rngs=nnx.Rngs(0)
    )
    y = layer(jnp.ones((1, 4, 3, 2)))
    assert y.shape == (1, 8, 9, 3)


def test_conv_dtype_param_dtype_and_partitioned_kernel():
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, None, "in", "out"))
    conv = nnx.Conv(
        2,
        4,
        (3, 3),
        kernel_init=init,
        dtype=jnp.bfloat16,
        param_dtype=jnp.float16,
        rngs=nnx.Rngs(0),
    )
    assert conv.kernel.dtype == jnp.float16 and conv.kernel.sharding_names == (
        None,
        None,
        "in",
        "out",
    )
    x = jax.random.normal(jax.random.key(1), (1, 5, 5, 2))
    y = conv(x)
    assert y.dtype == jnp.bfloat16
    assert conv.bias is not None
    expected = plus_bias(
        _ref_conv(x, conv.kernel[...].astype(jnp.float32), (1, 1), "SAME"), conv.bias[...]
    )
    np.testing.assert_allclose(np.asarray(y, np.float32), expected, rtol=5e-2, atol=5e-2)


def test_conv_transpose_with_transpose_kernel_has_the_conv_kernel_shape():
    # Flax NNX's ConvTranspose example: kernel (6, 6, out=4, in=3), output 15 * 2 = 30
    layer = nnx.ConvTranspose(
        3, 4, kernel_size=(6, 6), strides=(2, 2), padding="CIRCULAR",
        transpose_kernel=True, rngs=nnx.Rngs(0),
    )  # fmt: skip
    assert layer.kernel.shape == (6, 6, 4, 3)
    y = layer(jnp.ones((1, 15, 15, 3)))
    assert y.shape == (1, 30, 30, 4)
    # the reference: lax.conv_transpose over the same kernel, then the circular wrap,
    # here without it ('VALID' padding on a layer built the same way)
    valid = nnx.ConvTranspose(
        3, 4, kernel_size=(6, 6), strides=(2, 2), padding="VALID",
        transpose_kernel=True, rngs=nnx.Rngs(0),
    )  # fmt: skip
    x = jax.random.normal(jax.random.key(3), (1, 5, 5, 3))
    ref = lax.conv_transpose(
        x, valid.kernel[...], (2, 2), "VALID", dimension_numbers=_dn(2), transpose_kernel=True
    )
    assert valid.bias is not None
    np.testing.assert_allclose(valid(x), ref + valid.bias[...].reshape(1, 1, 1, 4), **TOL)
