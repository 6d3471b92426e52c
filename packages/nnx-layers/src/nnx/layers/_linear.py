"""Dense layers: ``Linear``, ``LinearGeneral`` and ``Einsum``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from nnx.core import Module, Param, Rngs, VariableMetadata
from nnx.layers import initializers
from nnx.layers._common import (
    Dtype,
    Initializer,
    PrecisionLike,
    PromoteDtypeFn,
    add_bias,
    check_positive,
    contraction_kwargs,
    kernel_and_bias,
    promote_dtype,
)
from nnx.layers._errors import LayerError, ShapeError

default_kernel_init = initializers.lecun_normal()
default_bias_init = initializers.zeros


class Linear(Module):
    """A dense layer: ``y = x @ kernel + bias``.

    Example::

        layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
        y = layer(jnp.ones((2, 3)))          # shape (2, 4)
        layer.kernel.shape, layer.bias.shape  # (3, 4), (4,)

    Args:
      in_features: size of the last axis of the input.
      out_features: size of the last axis of the output.
      use_bias: add a learned ``bias``.
      dtype: dtype of the computation (default: inferred from input and params).
      param_dtype: dtype of the parameters.
      precision: passed to ``dot_general``.
      kernel_init: initializer of the kernel; wrap it in ``nnx.with_partitioning``
        to give the parameter ``sharding_names``.
      bias_init: initializer of the bias, as ``kernel_init``.
      dot_general: the contraction, ``jax.lax.dot_general`` by default.
      promote_dtype: ``promote_dtype((x, kernel, bias), dtype=dtype)`` casts before the
        product (``nnx.promote_dtype`` by default).
      preferred_element_type: the accumulation / output type of the contraction.
      kernel_metadata: extra metadata for the kernel.
      bias_metadata: extra metadata for the bias.
      rngs: random streams; parameters use ``rngs.params()``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        dot_general: Callable[..., jax.Array] = lax.dot_general,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        preferred_element_type: Dtype | None = None,
        kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        rngs: Rngs,
    ):
        check_positive("Linear", in_features=in_features, out_features=out_features)
        kernel, bias = kernel_and_bias(
            rngs,
            layer="Linear",
            kernel_init=kernel_init,
            kernel_shape=(in_features, out_features),
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
        self.use_bias = use_bias
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.kernel_init = kernel_init
        self.bias_init = bias_init
        self.dot_general = dot_general
        self.promote_dtype = promote_dtype
        self.preferred_element_type = preferred_element_type

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        if jnp.shape(inputs)[-1:] != (self.in_features,):
            raise ShapeError(
                f"Linear(in_features={self.in_features}) expects inputs whose last axis has size "
                f"{self.in_features}, got shape {jnp.shape(inputs)}."
            )
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        y = self.dot_general(
            x,
            kernel,
            (((x.ndim - 1,), (0,)), ((), ())),
            precision=self.precision,
            **contraction_kwargs(self.preferred_element_type, out_sharding),
        )
        if bias is not None:
            y = add_bias(y, bias)
        return y


def _normalize(axes: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(a % ndim for a in axes)


def _as_matrix_init(init: Initializer, n_rows: int) -> Initializer:
    """``init`` applied to the kernel seen as a matrix, then reshaped (Flax NNX's rule).

    The first ``n_rows`` axes (batch and input) are the rows, the rest (output) the
    columns: a fan-in or fan-out initializer sees the fan of the whole contraction, and
    the values are those a ``(rows, columns)`` kernel with the same key would get.
    """

    def matrix_init(key, shape, dtype=jnp.float32):
        rows = math.prod(shape[:n_rows])
        value = init(key, (rows, math.prod(shape[n_rows:])), dtype)
        if isinstance(value, VariableMetadata):  # nnx.with_partitioning: names of `shape`
            return VariableMetadata(jnp.reshape(value.value, shape), value.metadata)
        return jnp.reshape(value, shape)

    return matrix_init


class LinearGeneral(Module):
    """A dense layer over several axes: contracts ``axis`` of the input with the kernel.

    Example::

        # (batch, seq, 8) -> (batch, seq, 2 heads, 4)
        qkv = nnx.LinearGeneral(8, (2, 4), rngs=nnx.Rngs(0))
        # (batch, seq, 2, 4) -> (batch, seq, 8)
        out = nnx.LinearGeneral((2, 4), 8, axis=(-2, -1), rngs=nnx.Rngs(0))

    The kernel has shape ``batch + in_features + out_features`` where ``batch`` are the
    sizes in ``batch_axis`` (a mapping input axis -> size). As in Flax NNX, the kernel
    initializer (LeCun normal by default) is called for the kernel seen as a matrix
    ``(prod(batch + in_features), prod(out_features))`` and the result reshaped, so
    its fan-in is the whole contraction.
    ``preferred_element_type`` is passed to the contraction, ``promote_dtype`` casts the
    input and parameters first; calls take ``out_sharding``.
    """

    def __init__(
        self,
        in_features: int | Sequence[int],
        out_features: int | Sequence[int],
        *,
        axis: int | Sequence[int] = -1,
        batch_axis: Mapping[int, int] | None = None,
        use_bias: bool = True,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        kernel_init: Initializer | None = None,
        bias_init: Initializer = default_bias_init,
        precision: PrecisionLike = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        dot_general: Callable[..., jax.Array] | None = None,
        dot_general_cls: Any = None,
        preferred_element_type: Dtype | None = None,
        kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        rngs: Rngs,
    ):
        in_features = (in_features,) if isinstance(in_features, int) else tuple(in_features)
        out_features = (out_features,) if isinstance(out_features, int) else tuple(out_features)
        axis = (axis,) if isinstance(axis, int) else tuple(axis)
        if len(axis) != len(in_features):
            raise ShapeError(
                f"LinearGeneral: `axis` {axis} has {len(axis)} entries but `in_features` "
                f"{in_features} has {len(in_features)}; give one input axis per in_feature."
            )
        batch_axis = dict(batch_axis or {})
        batch_dims = tuple(sorted(batch_axis))
        batch_shape = tuple(batch_axis[a] for a in batch_dims)
        nb, ni = len(batch_shape), len(in_features)
        kernel_shape = batch_shape + in_features + out_features
        kernel, bias = kernel_and_bias(
            rngs,
            layer="LinearGeneral",
            kernel_init=_as_matrix_init(kernel_init or default_kernel_init, nb + ni),
            kernel_shape=kernel_shape,
            bias_init=bias_init,
            bias_shape=batch_shape + out_features if use_bias else None,
            param_dtype=param_dtype,
            kernel_metadata=kernel_metadata,
            bias_metadata=bias_metadata,
        )
        self.kernel: Param[jax.Array] = kernel
        self.bias: Param[jax.Array] | None = bias
        self.in_features = in_features
        self.out_features = out_features
        self.axis = axis
        self.batch_axis = tuple(batch_axis.items())
        self.use_bias = use_bias
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.kernel_init = kernel_init
        self.bias_init = bias_init
        self.precision = precision
        self.promote_dtype = promote_dtype
        self.dot_general = dot_general
        self.dot_general_cls = dot_general_cls
        self.preferred_element_type = preferred_element_type

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        ndim = jnp.ndim(inputs)
        axis = _normalize(self.axis, ndim)
        batch_axis = dict(self.batch_axis)
        batch_dims = _normalize(tuple(sorted(batch_axis)), ndim) if batch_axis else ()
        got = tuple(jnp.shape(inputs)[a] for a in axis)
        if got != self.in_features:
            raise ShapeError(
                f"LinearGeneral(in_features={self.in_features}) expects input axes {self.axis} "
                f"of sizes {self.in_features}, got {got} (input shape {jnp.shape(inputs)})."
            )
        nb, ni = len(batch_dims), len(axis)
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        if self.dot_general_cls is not None:  # Flax's older spelling: a class to instantiate
            dot_general = self.dot_general_cls()
        else:
            dot_general = self.dot_general or lax.dot_general
        y = dot_general(
            x,
            kernel,
            ((axis, tuple(range(nb, nb + ni))), (batch_dims, tuple(range(nb)))),
            precision=self.precision,
            **contraction_kwargs(self.preferred_element_type, out_sharding),
        )
        if bias is not None:
            # dot_general puts batch axes first, then the free input axes, then the outputs.
            n_free = ndim - ni - nb
            bias = jnp.reshape(bias, bias.shape[:nb] + (1,) * n_free + bias.shape[nb:])
            y = add_bias(y, bias)
        return y


class Einsum(Module):
    """A layer that contracts its input with a kernel by an einsum string.

    Example::

        layer = nnx.Einsum("nta,hab->nthb", (8, 2, 4), (8, 4), rngs=nnx.Rngs(0))
        y = layer(jnp.ones((16, 11, 2)))   # shape (16, 11, 8, 4)

    ``bias`` (when ``bias_shape`` is given) is added with numpy broadcasting, aligned
    with the trailing axes of the output. ``einsum_str`` may also be given per call.
    """

    def __init__(
        self,
        einsum_str: str,
        kernel_shape: Sequence[int],
        bias_shape: Sequence[int] | None = None,
        *,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        einsum_op: Callable[..., jax.Array] = jnp.einsum,
        preferred_element_type: Dtype | None = None,
        kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        rngs: Rngs,
    ):
        _check_einsum_str(einsum_str)
        kernel_shape = tuple(kernel_shape)
        rhs = einsum_str.replace(" ", "").split("->")[0].split(",")[1]
        if len(rhs) != len(kernel_shape):
            raise ShapeError(
                f"Einsum: the kernel subscripts {rhs!r} of {einsum_str!r} name {len(rhs)} axes "
                f"but kernel_shape {kernel_shape} has {len(kernel_shape)}."
            )
        if bias_shape is not None:
            bias_shape = tuple(bias_shape)
            _check_bias_shape(einsum_str, kernel_shape, bias_shape)
        kernel, bias = kernel_and_bias(
            rngs,
            layer="Einsum",
            kernel_init=kernel_init,
            kernel_shape=kernel_shape,
            bias_init=bias_init,
            bias_shape=bias_shape,
            param_dtype=param_dtype,
            kernel_metadata=kernel_metadata,
            bias_metadata=bias_metadata,
        )
        self.kernel: Param[jax.Array] = kernel
        self.bias: Param[jax.Array] | None = bias
        self.einsum_str = einsum_str
        self.kernel_shape = kernel_shape
        self.bias_shape = None if bias_shape is None else tuple(bias_shape)
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.kernel_init = kernel_init
        self.bias_init = bias_init
        self.promote_dtype = promote_dtype
        self.einsum_op = einsum_op
        self.preferred_element_type = preferred_element_type

    def __call__(
        self, inputs: jax.Array, einsum_str: str | None = None, out_sharding: Any = None
    ) -> jax.Array:
        einsum_str = einsum_str or self.einsum_str
        _check_einsum_str(einsum_str)
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        y = self.einsum_op(
            einsum_str,
            x,
            kernel,
            precision=self.precision,
            **contraction_kwargs(self.preferred_element_type, out_sharding),
        )
        if bias is not None:
            y = add_bias(y, bias)
        return y


def _check_einsum_str(einsum_str: str) -> None:
    s = einsum_str.replace(" ", "")
    if "->" not in s or len(s.split("->")[0].split(",")) != 2:
        raise LayerError(
            f"Einsum: {einsum_str!r} must name exactly two operands and an output, "
            "like 'btd,dh->bth' (input first, kernel second)."
        )


def _check_bias_shape(einsum_str: str, kernel_shape: tuple[int, ...], bias_shape) -> None:
    """The bias is added to the trailing output axes: its sizes must fit the kernel's."""
    ins, out = einsum_str.replace(" ", "").split("->")
    sizes = dict(zip(ins.split(",")[1], kernel_shape))
    named = out.split("...")[-1]
    if len(bias_shape) > len(named) and "..." not in out:
        raise ShapeError(
            f"Einsum: bias_shape {bias_shape} has {len(bias_shape)} axes but the output "
            f"{out!r} of {einsum_str!r} has {len(named)}; the bias is added to the trailing "
            "output axes."
        )
    for j in range(1, min(len(bias_shape), len(named)) + 1):
        letter, size = named[-j], bias_shape[-j]
        if letter in sizes and size not in (1, sizes[letter]):
            raise ShapeError(
                f"Einsum: bias_shape {bias_shape} does not fit the output {out!r} of "
                f"{einsum_str!r}: axis {letter!r} has size {sizes[letter]} in the kernel, "
                f"the bias gives it {size} (expected {sizes[letter]} or 1)."
            )
