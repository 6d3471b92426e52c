"""Normalization layers: ``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from nnx.core import BatchStat, Module, Param, Rngs
from nnx.layers import initializers
from nnx.layers._common import (
    Dtype,
    Initializer,
    PromoteDtypeFn,
    add_bias,
    canonical_axes,
    check_positive,
    first_from,
    make_param,
    promote_dtype,
    trailing,
)
from nnx.layers._errors import LayerError, ShapeError

Axes = int | Sequence[int]


def _compute_stats(
    x: jax.Array,
    axes: tuple[int, ...],
    *,
    dtype: Dtype | None,
    axis_name: str | None = None,
    axis_index_groups: Any = None,
    use_mean: bool = True,
    use_fast_variance: bool = True,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mean and (biased) variance of ``x`` over ``axes``, in at least float32.

    With ``axis_name`` the statistics are averaged over that mapped axis
    (``lax.pmean``), i.e. computed over the global batch. Without ``use_mean`` the
    mean is zero and the "variance" is the mean square (RMSNorm).
    """
    dtype = jnp.promote_types(dtype or x.dtype, jnp.float32)
    x = jnp.asarray(x, dtype)

    def mean(v):
        m = jnp.mean(v, axis=axes, where=mask)
        if axis_name is not None:
            m = lax.pmean(m, axis_name, axis_index_groups=axis_index_groups)
        return m

    if not use_mean:
        ms = mean(lax.square(x))
        return jnp.zeros_like(ms), ms
    if use_fast_variance:
        mu, mu2 = mean(x), mean(lax.square(x))
        # E[x^2] - E[x]^2 can dip below zero by rounding.
        return mu, jnp.maximum(0.0, mu2 - lax.square(mu))
    mu = mean(x)
    centered = x - jnp.expand_dims(mu, axes)
    return mu, mean(lax.square(centered))


def _normalize(
    x: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    scale: jax.Array | None,
    bias: jax.Array | None,
    reduction_axes: tuple[int, ...],
    feature_axes: tuple[int, ...],
    *,
    dtype: Dtype | None,
    epsilon: float,
) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * scale + bias`` with stats over ``reduction_axes``."""
    mean = jnp.expand_dims(mean, reduction_axes)
    var = jnp.expand_dims(var, reduction_axes)
    feature_shape = [1] * x.ndim
    for a in feature_axes:
        feature_shape[a] = x.shape[a]
    y = x - mean
    mul = lax.rsqrt(var + epsilon)
    if scale is not None:
        mul = mul * jnp.reshape(scale, feature_shape)
    y = y * mul
    if bias is not None:
        y = y + jnp.reshape(bias, feature_shape)
    out_dtype = dtype or jnp.result_type(x, *(p for p in (scale, bias) if p is not None))
    return jnp.asarray(y, out_dtype)


def _scale_and_bias(
    layer: str,
    num_features: int,
    *,
    rngs: Rngs,
    param_dtype: Dtype,
    use_scale: bool,
    use_bias: bool,
    scale_init: Initializer | None,
    bias_init: Initializer | None,
    scale_metadata: Mapping[str, Any] | None = None,
    bias_metadata: Mapping[str, Any] | None = None,
) -> tuple[Param[jax.Array] | None, Param[jax.Array] | None]:
    """A normalization's ``(num_features,)`` scale and bias Params, in that order (None
    when not used)."""

    def make(use: bool, init: Any, name: str, metadata: Mapping[str, Any] | None):
        if not use:
            return None
        return make_param(
            init, rngs, (num_features,), param_dtype, layer=layer, name=name, metadata=metadata
        )

    scale = make(use_scale, scale_init, "scale", scale_metadata)
    return scale, make(use_bias, bias_init, "bias", bias_metadata)


def _promoted(norm: Any, x: jax.Array) -> tuple[Any, Any, Any]:
    """``x``, the scale and the bias (None where the layer has none) after ``promote_dtype``."""
    scale = norm.scale[...] if norm.scale is not None else None
    bias = norm.bias[...] if norm.bias is not None else None
    return norm.promote_dtype((x, scale, bias), dtype=norm.dtype)


def _feature_check(
    layer: str, x: jax.Array, feature_axes: tuple[int, ...], num_features: int
) -> None:
    size = 1
    for a in feature_axes:
        size *= x.shape[a]
    if size != num_features:
        raise ShapeError(
            f"{layer}(num_features={num_features}) got an input of shape {x.shape} whose feature "
            f"axes {feature_axes} hold {size} features."
        )


class BatchNorm(Module):
    """Batch normalization with running averages of the statistics.

    Example::

        bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
        x = jnp.arange(8.0).reshape(2, 4)
        y = bn(x)                              # training: batch stats, updates mean/var
        bn.eval(); y = bn(x)                   # eval: uses the running averages
        y = bn(x, use_running_average=True)    # per call

    Running averages are ``BatchStat`` Variables ``mean`` and ``var``, updated as
    ``ra = momentum * ra + (1 - momentum) * batch_stat`` on every training call.
    ``axis_name`` averages the batch statistics over a mapped axis (``jax.vmap``,
    ``shard_map``, ``pmap``), so devices share global statistics. ``mask`` (broadcastable
    to the input) selects the entries that count towards the statistics.
    """

    scale: Param[jax.Array] | None  # None when not used
    bias: Param[jax.Array] | None

    def __init__(
        self,
        num_features: int,
        *,
        use_running_average: bool = False,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Initializer = initializers.zeros,
        scale_init: Initializer = initializers.ones,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        scale_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        rngs: Rngs,
    ):
        check_positive("BatchNorm", num_features=num_features)
        if not 0.0 <= momentum <= 1.0:
            raise LayerError(f"BatchNorm: momentum must be in [0, 1], got {momentum}.")
        self.mean = BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = BatchStat(jnp.ones((num_features,), jnp.float32))
        self.scale, self.bias = _scale_and_bias(
            "BatchNorm",
            num_features,
            rngs=rngs,
            param_dtype=param_dtype,
            use_scale=use_scale,
            use_bias=use_bias,
            scale_init=scale_init,
            bias_init=bias_init,
            scale_metadata=scale_metadata,
            bias_metadata=bias_metadata,
        )
        self.num_features = num_features
        self.use_running_average = use_running_average
        self.axis = axis
        self.momentum = momentum
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype
        self.use_bias = use_bias
        self.use_scale = use_scale
        self.bias_init = bias_init
        self.scale_init = scale_init
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.use_fast_variance = use_fast_variance

    def __call__(
        self,
        x: jax.Array,
        use_running_average: bool | None = None,
        *,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        use_ra = first_from(use_running_average, self.use_running_average, default=False)
        x, scale, bias = _promoted(self, x)
        feature_axes = canonical_axes(self.axis, x.ndim, layer="BatchNorm", what="feature")
        _feature_check("BatchNorm", x, feature_axes, self.num_features)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        feature_shape = tuple(x.shape[a] for a in feature_axes)
        if use_ra:
            mean = jnp.reshape(self.mean[...], feature_shape)
            var = jnp.reshape(self.var[...], feature_shape)
        else:
            mean, var = _compute_stats(
                x,
                reduction_axes,
                dtype=self.dtype,
                axis_name=self.axis_name,
                axis_index_groups=self.axis_index_groups,
                use_fast_variance=self.use_fast_variance,
                mask=mask,
            )
            # Running averages are state, not part of the loss: no gradient flows into them
            # (and a differentiated write to a hijax Variable is an error).
            m = self.momentum
            batch_mean = lax.stop_gradient(jnp.reshape(mean, (-1,)))
            batch_var = lax.stop_gradient(jnp.reshape(var, (-1,)))
            self.mean[...] = m * self.mean[...] + (1 - m) * batch_mean
            self.var[...] = m * self.var[...] + (1 - m) * batch_var
        return _normalize(
            x,
            mean,
            var,
            scale,
            bias,
            reduction_axes,
            feature_axes,
            dtype=self.dtype,
            epsilon=self.epsilon,
        )

    def set_view(self, use_running_average: bool | None = None) -> None:
        """Set this layer's mode for :func:`nnx.view` (``nnx.view(model, use_running_average=True)``).

        Args:
          use_running_average: if True, normalize with the running averages ``mean``
            and ``var`` and leave them unchanged; if False, use the batch statistics
            and update the running averages. None leaves the mode unchanged.
        """
        if use_running_average is not None:
            self.use_running_average = use_running_average


class LayerNorm(Module):
    """Layer normalization: statistics over the feature axes of each example.

    Example::

        ln = nnx.LayerNorm(4, rngs=nnx.Rngs(0))
        y = ln(jnp.ones((2, 4)))

    ``reduction_axes`` (default the last) are the axes the statistics cover;
    ``feature_axes`` (default the last) are those ``scale`` and ``bias`` span (their
    sizes multiply to ``num_features``).
    """

    scale: Param[jax.Array] | None  # None when not used
    bias: Param[jax.Array] | None

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Initializer = initializers.zeros,
        scale_init: Initializer = initializers.ones,
        reduction_axes: Axes = -1,
        feature_axes: Axes = -1,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        scale_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        rngs: Rngs,
    ):
        check_positive("LayerNorm", num_features=num_features)
        self.scale, self.bias = _scale_and_bias(
            "LayerNorm",
            num_features,
            rngs=rngs,
            param_dtype=param_dtype,
            use_scale=use_scale,
            use_bias=use_bias,
            scale_init=scale_init,
            bias_init=bias_init,
            scale_metadata=scale_metadata,
            bias_metadata=bias_metadata,
        )
        self.num_features = num_features
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype
        self.use_bias = use_bias
        self.use_scale = use_scale
        self.bias_init = bias_init
        self.scale_init = scale_init
        self.reduction_axes = (
            reduction_axes if isinstance(reduction_axes, int) else tuple(reduction_axes)
        )
        self.feature_axes = feature_axes if isinstance(feature_axes, int) else tuple(feature_axes)
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.use_fast_variance = use_fast_variance

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        red = canonical_axes(self.reduction_axes, x.ndim, layer="LayerNorm", what="reduction")
        feat = canonical_axes(self.feature_axes, x.ndim, layer="LayerNorm", what="feature")
        _feature_check("LayerNorm", x, feat, self.num_features)
        x, scale, bias = _promoted(self, x)
        mean, var = _compute_stats(
            x,
            red,
            dtype=self.dtype,
            axis_name=self.axis_name,
            axis_index_groups=self.axis_index_groups,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
        )
        return _normalize(
            x, mean, var, scale, bias, red, feat, dtype=self.dtype, epsilon=self.epsilon
        )


class RMSNorm(Module):
    """Root-mean-square normalization: ``x / sqrt(mean(x^2) + eps) * scale`` (no centering).

    Example::

        norm = nnx.RMSNorm(4, rngs=nnx.Rngs(0))
        y = norm(jnp.ones((2, 4)))
    """

    scale: Param | None  # None when not used

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        use_scale: bool = True,
        scale_init: Initializer = initializers.ones,
        reduction_axes: Axes = -1,
        feature_axes: Axes = -1,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        scale_metadata: Mapping[str, Any] | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        rngs: Rngs,
    ):
        check_positive("RMSNorm", num_features=num_features)
        self.scale, _ = _scale_and_bias(
            "RMSNorm",
            num_features,
            rngs=rngs,
            param_dtype=param_dtype,
            use_scale=use_scale,
            use_bias=False,
            scale_init=scale_init,
            bias_init=None,
            scale_metadata=scale_metadata,
        )
        self.num_features = num_features
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype
        self.use_scale = use_scale
        self.scale_init = scale_init
        self.reduction_axes = (
            reduction_axes if isinstance(reduction_axes, int) else tuple(reduction_axes)
        )
        self.feature_axes = feature_axes if isinstance(feature_axes, int) else tuple(feature_axes)
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.use_fast_variance = use_fast_variance

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        red = canonical_axes(self.reduction_axes, x.ndim, layer="RMSNorm", what="reduction")
        feat = canonical_axes(self.feature_axes, x.ndim, layer="RMSNorm", what="feature")
        _feature_check("RMSNorm", x, feat, self.num_features)
        scale = self.scale[...] if self.scale is not None else None
        x, scale = self.promote_dtype((x, scale), dtype=self.dtype)
        mean, var = _compute_stats(
            x,
            red,
            dtype=self.dtype,
            axis_name=self.axis_name,
            axis_index_groups=self.axis_index_groups,
            use_mean=False,
            mask=mask,
        )
        return _normalize(
            x, mean, var, scale, None, red, feat, dtype=self.dtype, epsilon=self.epsilon
        )


class GroupNorm(Module):
    """Group normalization: features split into groups, statistics per example and group.

    Example::

        gn = nnx.GroupNorm(8, num_groups=2, rngs=nnx.Rngs(0))
        y = gn(jnp.ones((4, 5, 5, 8)))   # stats over (5, 5, 4 features) per group

    Give ``num_groups`` or ``group_size`` (features per group). The first axis is the
    batch; statistics cover every other axis (``reduction_axes`` to change that; the
    feature axis must be last).
    """

    scale: Param[jax.Array] | None  # None when not used
    bias: Param[jax.Array] | None

    def __init__(
        self,
        num_features: int,
        num_groups: int | None = 32,
        group_size: int | None = None,
        *,
        epsilon: float = 1e-6,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Initializer = initializers.zeros,
        scale_init: Initializer = initializers.ones,
        reduction_axes: Axes | None = None,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        scale_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        rngs: Rngs,
    ):
        check_positive("GroupNorm", num_features=num_features)
        if (num_groups is None) == (group_size is None):
            raise LayerError(
                "GroupNorm: give exactly one of num_groups and group_size "
                f"(got num_groups={num_groups}, group_size={group_size})."
            )
        if group_size is not None:
            if num_features % group_size:
                raise ShapeError(
                    f"GroupNorm: num_features ({num_features}) is not divisible by group_size ({group_size})."
                )
            num_groups = num_features // group_size
        assert num_groups is not None
        if num_groups <= 0 or num_features % num_groups:
            raise ShapeError(
                f"GroupNorm: num_features ({num_features}) must be a positive multiple of "
                f"num_groups ({num_groups})."
            )
        self.scale, self.bias = _scale_and_bias(
            "GroupNorm",
            num_features,
            rngs=rngs,
            param_dtype=param_dtype,
            use_scale=use_scale,
            use_bias=use_bias,
            scale_init=scale_init,
            bias_init=bias_init,
            scale_metadata=scale_metadata,
            bias_metadata=bias_metadata,
        )
        self.num_features = num_features
        self.num_groups = num_groups
        self.group_size = num_features // num_groups
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype
        self.use_bias = use_bias
        self.use_scale = use_scale
        self.bias_init = bias_init
        self.scale_init = scale_init
        self.reduction_axes = (
            reduction_axes
            if reduction_axes is None or isinstance(reduction_axes, int)
            else tuple(reduction_axes)
        )
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.use_fast_variance = use_fast_variance

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        if x.shape[-1] != self.num_features:
            raise ShapeError(
                f"GroupNorm(num_features={self.num_features}) expects the last axis to hold the "
                f"features, got shape {x.shape}."
            )
        if self.reduction_axes is None:
            red = tuple(range(1, x.ndim))
        else:
            red = canonical_axes(self.reduction_axes, x.ndim, layer="GroupNorm", what="reduction")
        if x.ndim - 1 not in red:
            raise LayerError("GroupNorm: reduction_axes must include the feature (last) axis.")
        x, scale, bias = _promoted(self, x)
        # Split the features into (groups, size): stats over `red` with the group axis kept.
        xg = jnp.reshape(x, x.shape[:-1] + (self.num_groups, self.group_size))
        gred = tuple(a for a in red if a != x.ndim - 1) + (x.ndim,)
        if mask is not None:
            mask = jnp.reshape(jnp.broadcast_to(mask, x.shape), xg.shape)
        mean, var = _compute_stats(
            xg,
            gred,
            dtype=self.dtype,
            axis_name=self.axis_name,
            axis_index_groups=self.axis_index_groups,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
        )
        mean = jnp.expand_dims(mean, gred)
        var = jnp.expand_dims(var, gred)
        y = (xg - mean) * lax.rsqrt(var + self.epsilon)
        y = jnp.reshape(y, x.shape)
        if scale is not None:
            y = y * trailing(scale, y)
        if bias is not None:
            y = add_bias(y, bias)
        dtype = self.dtype or jnp.result_type(x, *(p for p in (scale, bias) if p is not None))
        return jnp.asarray(y, dtype)


class InstanceNorm(Module):
    """Instance normalization: statistics per example and feature, over the other axes.

    Example::

        norm = nnx.InstanceNorm(3, rngs=nnx.Rngs(0))
        y = norm(jnp.ones((2, 8, 8, 3)))   # stats over the 8x8 pixels of each image/channel

    The first axis is the batch; ``feature_axes`` (default the last) are kept.
    """

    scale: Param[jax.Array] | None  # None when not used
    bias: Param[jax.Array] | None

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Initializer = initializers.zeros,
        scale_init: Initializer = initializers.ones,
        feature_axes: Axes = -1,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        scale_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        rngs: Rngs,
    ):
        check_positive("InstanceNorm", num_features=num_features)
        self.scale, self.bias = _scale_and_bias(
            "InstanceNorm",
            num_features,
            rngs=rngs,
            param_dtype=param_dtype,
            use_scale=use_scale,
            use_bias=use_bias,
            scale_init=scale_init,
            bias_init=bias_init,
            scale_metadata=scale_metadata,
            bias_metadata=bias_metadata,
        )
        self.num_features = num_features
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype
        self.use_bias = use_bias
        self.use_scale = use_scale
        self.bias_init = bias_init
        self.scale_init = scale_init
        self.feature_axes = feature_axes if isinstance(feature_axes, int) else tuple(feature_axes)
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.use_fast_variance = use_fast_variance

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        feat = canonical_axes(self.feature_axes, x.ndim, layer="InstanceNorm", what="feature")
        _feature_check("InstanceNorm", x, feat, self.num_features)
        red = tuple(i for i in range(1, x.ndim) if i not in feat)
        x, scale, bias = _promoted(self, x)
        mean, var = _compute_stats(
            x,
            red,
            dtype=self.dtype,
            axis_name=self.axis_name,
            axis_index_groups=self.axis_index_groups,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
        )
        return _normalize(
            x, mean, var, scale, bias, red, feat, dtype=self.dtype, epsilon=self.epsilon
        )
