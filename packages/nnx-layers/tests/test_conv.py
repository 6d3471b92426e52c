import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nnx

TOL = dict(rtol=1e-4, atol=1e-4)


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
    expected = _ref_conv(x, conv.kernel[...], conv.strides, pad) + conv.bias[...]
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
    expected = (
        _ref_conv(x, conv.kernel[...], (1, 1), zero, (1, 2), (2, 2), groups=2) + conv.bias[...]
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
    np.testing.assert_allclose(y, expected, **TOL)


def test_conv_circular_2d_equals_conv_of_wrapped_input():
    conv = nnx.Conv(2, 3, kernel_size=(3, 4), padding="CIRCULAR", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 2))
    wrapped = jnp.pad(x, [(0, 0), (1, 1), (1, 2), (0, 0)], mode="wrap")
    expected = _ref_conv(wrapped, conv.kernel[...], (1, 1), "VALID") + conv.bias[...]
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
    expected = _ref_conv(x, k, (1,), pad, lhs_dil=(2,)) + layer.bias[...]
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
    convt.kernel[...] = conv.kernel[...]
    x = jax.random.normal(jax.random.key(1), (1, 8, 2))
    y, vjp = jax.vjp(conv, x)
    g = jax.random.normal(jax.random.key(2), y.shape)
    (expected,) = vjp(g)
    np.testing.assert_allclose(convt(g), expected, **TOL)
