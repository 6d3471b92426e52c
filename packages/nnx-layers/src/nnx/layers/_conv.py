"""Convolutions: ``Conv`` (1-3D and more, any padding, dilation, groups) and ``ConvTranspose``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from nnx.core import Module, Param, Rngs
from nnx.layers._common import (
    Dtype,
    Initializer,
    PrecisionLike,
    PromoteDtypeFn,
    add_bias,
    as_tuple,
    check_positive,
    contraction_kwargs,
    kernel_and_bias,
    promote_dtype,
)
from nnx.layers._errors import LayerError, ShapeError
from nnx.layers._linear import default_bias_init, default_kernel_init

PaddingLike = str | int | Sequence[int | tuple[int, int]]


def _kernel_size(kernel_size: int | Sequence[int], layer: str) -> tuple[int, ...]:
    ks = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    if not ks or any(not isinstance(k, int) or k <= 0 for k in ks):
        raise LayerError(f"{layer}: `kernel_size` must be positive ints, got {kernel_size!r}.")
    return ks


def canonicalize_padding(
    padding: PaddingLike, rank: int, layer: str = "canonicalize_padding"
) -> str | list[tuple[int, int]]:
    """Padding in a form ``lax`` takes: a string, or one ``(low, high)`` pair per spatial axis.

    >>> from nnx.layers import canonicalize_padding
    >>> canonicalize_padding(1, 2)
    [(1, 1), (1, 1)]
    >>> canonicalize_padding([(0, 1), 2], 2)
    [(0, 1), (2, 2)]
    >>> canonicalize_padding("same", 2)
    'SAME'

    Strings: 'SAME', 'SAME_LOWER', 'VALID', 'CIRCULAR', 'CAUSAL' (case-insensitive).
    """
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "SAME_LOWER", "VALID", "CIRCULAR", "CAUSAL"):
            raise LayerError(
                f"{layer}: unknown padding {padding!r}; use 'SAME', 'VALID', 'CIRCULAR', "
                "'CAUSAL', an int, or one (low, high) pair per spatial axis."
            )
        return p
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    pads = list(padding)
    if len(pads) == 1 and rank > 1:
        pads = pads * rank
    if len(pads) != rank:
        raise ShapeError(
            f"{layer}: padding {padding!r} has {len(pads)} entries, expected {rank} "
            "(one per spatial axis)."
        )
    out = []
    for p in pads:
        if isinstance(p, int):
            out.append((p, p))
        else:
            lo, hi = p
            out.append((int(lo), int(hi)))
    return out


def _dimension_numbers(ndim: int) -> lax.ConvDimensionNumbers:
    # inputs (N, spatial..., C), kernels (spatial..., I, O): channels-last like Flax.
    spatial = tuple(range(1, ndim - 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, ndim - 1, *spatial),
        rhs_spec=(ndim - 1, ndim - 2, *range(ndim - 2)),
        out_spec=(0, ndim - 1, *spatial),
    )


def _flatten_batch(inputs: jax.Array, rank: int):
    """Give the input exactly one batch axis; return it and the original batch shape."""
    nbatch = inputs.ndim - (rank + 1)
    batch_shape = inputs.shape[:nbatch]
    x = jnp.reshape(inputs, (math.prod(batch_shape),) + inputs.shape[nbatch:])
    return x, batch_shape


class Conv(Module):
    """A convolution over the spatial axes of channels-last inputs.

    Example::

        conv = nnx.Conv(3, 8, kernel_size=(3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
        y = conv(jnp.ones((4, 32, 32, 3)))   # (4, 16, 16, 8)

    Inputs have shape ``(*batch, *spatial, in_features)``; any number of batch axes
    (none included). The kernel has shape ``kernel_size + (in_features //
    feature_group_count, out_features)``.

    Args:
      kernel_size: an int (1-D) or one size per spatial axis.
      strides: an int or one per spatial axis.
      padding: 'SAME', 'VALID', 'CIRCULAR' (periodic), 'CAUSAL' (1-D, pads only the
        start), an int, or (low, high) pairs per spatial axis.
      input_dilation: an int or one per spatial axis (``lhs_dilation`` of
        ``lax.conv_general_dilated``). With input dilation, 'SAME' and 'VALID' are
        resolved on the dilated input (lax itself refuses them there).
      kernel_dilation: an int or one per spatial axis (``rhs_dilation``).
      feature_group_count: split input and output features into this many groups.
      mask: multiplies the kernel (e.g. for masked convolutions).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        padding: PaddingLike = "SAME",
        input_dilation: int | Sequence[int] = 1,
        kernel_dilation: int | Sequence[int] = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        mask: jax.Array | None = None,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        conv_general_dilated: Callable[..., jax.Array] = lax.conv_general_dilated,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        preferred_element_type: Dtype | None = None,
        kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        rngs: Rngs,
    ):
        check_positive(
            "Conv",
            in_features=in_features,
            out_features=out_features,
            feature_group_count=feature_group_count,
        )
        ks = _kernel_size(kernel_size, "Conv")
        rank = len(ks)
        if in_features % feature_group_count or out_features % feature_group_count:
            raise ShapeError(
                f"Conv: in_features ({in_features}) and out_features ({out_features}) must "
                f"both be divisible by feature_group_count ({feature_group_count})."
            )
        pad = canonicalize_padding(padding, rank, "Conv")
        if pad == "CAUSAL" and rank != 1:
            raise LayerError(
                f"Conv: padding='CAUSAL' is for 1-D convolutions, got kernel_size {ks}."
            )
        kernel_shape = ks + (in_features // feature_group_count, out_features)
        if mask is not None and tuple(jnp.shape(mask)) != kernel_shape:
            raise ShapeError(
                f"Conv: `mask` has shape {jnp.shape(mask)}, expected the kernel shape {kernel_shape}."
            )
        kernel, bias = kernel_and_bias(
            rngs,
            layer="Conv",
            kernel_init=kernel_init,
            kernel_shape=kernel_shape,
            bias_init=bias_init,
            bias_shape=(out_features,) if use_bias else None,
            param_dtype=param_dtype,
            kernel_metadata=kernel_metadata,
            bias_metadata=bias_metadata,
        )
        self.kernel: Param[jax.Array] = kernel
        self.bias: Param[jax.Array] | None = bias
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = ks
        self.kernel_shape = kernel_shape
        self.strides = as_tuple(strides, rank, layer="Conv", name="strides")
        self.padding = padding if isinstance(padding, str) else pad
        self.input_dilation = as_tuple(input_dilation, rank, layer="Conv", name="input_dilation")
        self.kernel_dilation = as_tuple(kernel_dilation, rank, layer="Conv", name="kernel_dilation")
        self.feature_group_count = feature_group_count
        self.use_bias = use_bias
        self.mask = mask
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.kernel_init = kernel_init
        self.bias_init = bias_init
        self.conv_general_dilated = conv_general_dilated
        self.promote_dtype = promote_dtype
        self.preferred_element_type = preferred_element_type

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        rank = len(self.kernel_size)
        shape = jnp.shape(inputs)
        if len(shape) < rank + 1 or shape[-1] != self.in_features:
            raise ShapeError(
                f"Conv(in_features={self.in_features}, kernel_size={self.kernel_size}) expects "
                f"inputs of shape (*batch, {rank} spatial axes, {self.in_features}), got {shape}."
            )
        kernel = self.kernel[...]
        if self.mask is not None:
            kernel = kernel * self.mask
        bias = self.bias[...] if self.bias is not None else None
        inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        x, batch_shape = _flatten_batch(inputs, rank)
        pad = canonicalize_padding(self.padding, rank, "Conv")
        if pad == "CIRCULAR":
            dilated = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.kernel_dilation)]
            widths = [(0, 0)] + [((k - 1) // 2, k // 2) for k in dilated] + [(0, 0)]
            x = jnp.pad(x, widths, mode="wrap")
            pad = "VALID"
        elif pad == "CAUSAL":
            left = self.kernel_dilation[0] * (self.kernel_size[0] - 1)
            x = jnp.pad(x, [(0, 0), (left, 0), (0, 0)])
            pad = "VALID"
        if isinstance(pad, str) and any(d != 1 for d in self.input_dilation):
            # lax takes only explicit padding with input dilation: resolve it on the dilated shapes.
            in_shape = [(n - 1) * d + 1 for n, d in zip(x.shape[1:-1], self.input_dilation)]
            k_shape = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.kernel_dilation)]
            pad = lax.padtype_to_pads(in_shape, k_shape, self.strides, pad)
        y = self.conv_general_dilated(
            x,
            kernel,
            self.strides,
            pad,
            lhs_dilation=self.input_dilation,
            rhs_dilation=self.kernel_dilation,
            dimension_numbers=_dimension_numbers(x.ndim),
            feature_group_count=self.feature_group_count,
            precision=self.precision,
            **contraction_kwargs(self.preferred_element_type, out_sharding),
        )
        if bias is not None:
            y = add_bias(y, bias)
        return jnp.reshape(y, batch_shape + y.shape[1:])


class ConvTranspose(Module):
    """A transposed convolution (the gradient of a convolution), channels-last.

    Example::

        up = nnx.ConvTranspose(8, 3, kernel_size=(3, 3), strides=2, rngs=nnx.Rngs(0))
        y = up(jnp.ones((4, 16, 16, 8)))   # (4, 32, 32, 3)

    The kernel has shape ``kernel_size + (in_features, out_features)``. ``padding`` is
    as for :class:`Conv` except 'CAUSAL'; 'CIRCULAR' makes the output exactly
    ``input size * stride`` on each axis, wrapping the overlap around.
    ``transpose_kernel=True`` flips the kernel and swaps its feature axes, so that
    the layer computes the gradient of a ``Conv`` with the same kernel; the kernel then
    has that ``Conv``'s shape, ``kernel_size + (out_features, in_features)``, as in
    Flax NNX.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = None,
        *,
        padding: PaddingLike = "SAME",
        kernel_dilation: int | Sequence[int] | None = None,
        use_bias: bool = True,
        mask: jax.Array | None = None,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        transpose_kernel: bool = False,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        preferred_element_type: Dtype | None = None,
        kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        rngs: Rngs,
    ):
        check_positive("ConvTranspose", in_features=in_features, out_features=out_features)
        ks = _kernel_size(kernel_size, "ConvTranspose")
        rank = len(ks)
        pad = canonicalize_padding(padding, rank, "ConvTranspose")
        if pad == "CAUSAL":
            raise LayerError(
                "ConvTranspose: padding='CAUSAL' is not supported; use 'SAME', 'VALID' or 'CIRCULAR'."
            )
        # transpose_kernel: the kernel of the Conv this layer transposes, (..., out, in)
        kernel_shape = ks + (
            (out_features, in_features) if transpose_kernel else (in_features, out_features)
        )
        if mask is not None and tuple(jnp.shape(mask)) != kernel_shape:
            raise ShapeError(
                f"ConvTranspose: `mask` has shape {jnp.shape(mask)}, expected the kernel shape {kernel_shape}."
            )
        kernel, bias = kernel_and_bias(
            rngs,
            layer="ConvTranspose",
            kernel_init=kernel_init,
            kernel_shape=kernel_shape,
            bias_init=bias_init,
            bias_shape=(out_features,) if use_bias else None,
            param_dtype=param_dtype,
            kernel_metadata=kernel_metadata,
            bias_metadata=bias_metadata,
        )
        self.kernel: Param[jax.Array] = kernel
        self.bias: Param[jax.Array] | None = bias
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = ks
        self.kernel_shape = kernel_shape
        self.strides = as_tuple(strides, rank, layer="ConvTranspose", name="strides")
        self.padding = padding if isinstance(padding, str) else pad
        self.kernel_dilation = as_tuple(
            kernel_dilation, rank, layer="ConvTranspose", name="kernel_dilation"
        )
        self.use_bias = use_bias
        self.mask = mask
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.kernel_init = kernel_init
        self.bias_init = bias_init
        self.transpose_kernel = transpose_kernel
        self.promote_dtype = promote_dtype
        self.preferred_element_type = preferred_element_type

    def __call__(self, inputs: jax.Array) -> jax.Array:
        rank = len(self.kernel_size)
        shape = jnp.shape(inputs)
        if len(shape) < rank + 1 or shape[-1] != self.in_features:
            raise ShapeError(
                f"ConvTranspose(in_features={self.in_features}, kernel_size={self.kernel_size}) "
                f"expects inputs of shape (*batch, {rank} spatial axes, {self.in_features}), got {shape}."
            )
        kernel = self.kernel[...]
        if self.mask is not None:
            kernel = kernel * self.mask
        bias = self.bias[...] if self.bias is not None else None
        inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        x, batch_shape = _flatten_batch(inputs, rank)
        pad = canonicalize_padding(self.padding, rank, "ConvTranspose")
        circular = pad == "CIRCULAR"
        y = lax.conv_transpose(
            x,
            kernel,
            self.strides,
            "VALID" if circular else pad,
            rhs_dilation=self.kernel_dilation,
            dimension_numbers=_dimension_numbers(x.ndim),
            transpose_kernel=self.transpose_kernel,
            precision=self.precision,
            **contraction_kwargs(self.preferred_element_type, None),
        )
        if circular:
            y = _wrap_around(y, x.shape[1:-1], self.strides, self.transpose_kernel)
        if bias is not None:
            y = add_bias(y, bias)
        return jnp.reshape(y, batch_shape + y.shape[1:])


def _wrap_around(y: jax.Array, in_sizes, strides, transpose_kernel: bool) -> jax.Array:
    """Fold a 'VALID' transposed output onto a periodic grid of ``size * stride`` points."""
    for i, (n, s) in enumerate(zip(in_sizes, strides)):
        axis = i + 1
        period = n * s
        extra = -y.shape[axis] % period  # pad up to a whole number of periods
        lo = extra if transpose_kernel else (extra + 1) // 2
        widths = [(0, 0)] * y.ndim
        widths[axis] = (lo, extra - lo)
        y = jnp.pad(y, widths)
        y = jnp.reshape(y, y.shape[:axis] + (-1, period) + y.shape[axis + 1 :])
        y = jnp.sum(y, axis=axis)
    return y
