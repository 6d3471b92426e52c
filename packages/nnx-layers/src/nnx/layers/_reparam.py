"""Wrappers that renormalize a layer's weights before each call: ``SpectralNorm``, ``WeightNorm``.

Both follow Flax NNX: the wrapped layer's Params are overwritten in place with their
normalized values at every call, then the layer runs as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax import lax

from nnx.core import (
    BatchStat,
    Module,
    Param,
    PathContains,
    Rngs,
    State,
    data,
    state,
    to_flat_state,
    to_predicate,
)
from nnx.layers import initializers
from nnx.layers._common import Dtype, Initializer, PromoteDtypeFn, first_from, param_key
from nnx.layers._dtypes import canonicalize_dtype, promote_dtype
from nnx.layers._errors import LayerError

_KERNELS = PathContains("kernel")


def _flat_params(node: Module) -> list:
    """``(path, Param)`` for every Param of ``node``."""
    return list(to_flat_state(cast(State, state(node, Param))))


def _l2_normalize(x: jax.Array, axis: Any = None, eps: float = 1e-12) -> jax.Array:
    return x * lax.rsqrt(jnp.sum(x * x, axis=axis, keepdims=True) + eps)


def _as_matrix(value: jax.Array, path: tuple, error_on_non_matrix: bool) -> jax.Array:
    if value.ndim > 2:
        if error_on_non_matrix:
            raise LayerError(
                f"SpectralNorm: the parameter at {path} has {value.ndim} dimensions and "
                "error_on_non_matrix=True; spectral normalization is defined on matrices "
                "(without the flag, leading axes are flattened into rows)."
            )
        value = jnp.reshape(value, (-1, value.shape[-1]))
    return value


class SpectralNorm(Module):
    """Divides each weight matrix of ``layer_instance`` by its largest singular value.

    Example::

        layer = nnx.SpectralNorm(nnx.Linear(4, 5, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
        y = layer(jnp.ones((2, 4)))               # runs Linear with kernel / sigma
        layer.batch_stats[("kernel", "u")]        # the power-iteration vector (BatchStat)

    The largest singular value ``sigma`` is estimated by ``n_steps`` of power iteration
    from a stored vector ``u`` (one per Param with 2 or more dimensions; higher-rank
    kernels are flattened to ``(-1, last)``); the Param is overwritten in place by
    ``W / sigma`` before the layer runs. With ``update_stats`` (the default; ``eval()``
    turns it off) the new ``u`` and ``sigma`` are stored in ``batch_stats``, a dict
    from ``param_path + ("u",)`` / ``("sigma",)`` to ``nnx.BatchStat``.
    """

    def __init__(
        self,
        layer_instance: Module,
        *,
        n_steps: int = 1,
        epsilon: float = 1e-12,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        error_on_non_matrix: bool = False,
        update_stats: bool = True,
        rngs: Rngs,
    ):
        self.layer_instance = layer_instance
        self.n_steps = n_steps
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.error_on_non_matrix = error_on_non_matrix
        # train()/eval() set use_running_average; update_stats is its opposite.
        self.use_running_average = not update_stats
        stats: dict[tuple, BatchStat] = {}
        for path, param in _flat_params(layer_instance):
            value = param[...]
            if value.ndim <= 1 or n_steps < 1:
                continue
            value = _as_matrix(value, path, error_on_non_matrix)
            key = param_key(rngs, "SpectralNorm")
            u = initializers.normal()(key, (1, value.shape[-1]), param_dtype)
            stats[tuple(path) + ("u",)] = BatchStat(u)
            stats[tuple(path) + ("sigma",)] = BatchStat(jnp.ones((), param_dtype))
        self.batch_stats = data(stats)

    def __call__(self, x: Any, update_stats: bool | None = None) -> Any:
        update = first_from(update_stats, not self.use_running_average)
        for path, param in _flat_params(self.layer_instance):
            self._normalize_in_place(tuple(path), param, bool(update))
        return cast(Any, self.layer_instance)(x)

    def _normalize_in_place(self, path: tuple, param: Param, update: bool) -> None:
        value = param[...]
        if value.ndim <= 1 or self.n_steps < 1:
            return
        shape = value.shape
        w = _as_matrix(value, path, self.error_on_non_matrix)
        u_path, sigma_path = path + ("u",), path + ("sigma",)
        if u_path not in self.batch_stats or sigma_path not in self.batch_stats:
            raise LayerError(
                f"SpectralNorm: no power-iteration state for the parameter at {path}; the "
                "wrapped layer's Params changed after SpectralNorm was built. Build a new "
                "SpectralNorm around the changed layer."
            )
        u = self.batch_stats[u_path][...]
        v = u
        for _ in range(self.n_steps):
            v = _l2_normalize(u @ w.T, eps=self.epsilon)
            u = _l2_normalize(v @ w, eps=self.epsilon)
        u, v = lax.stop_gradient(u), lax.stop_gradient(v)
        sigma = (v @ w @ u.T)[0, 0]
        w = w / jnp.where(sigma != 0, sigma, 1)
        if update:
            self.batch_stats[u_path][...] = u
            self.batch_stats[sigma_path][...] = sigma
        out_dtype = canonicalize_dtype(w, u, v, sigma, dtype=self.dtype)
        param[...] = jnp.asarray(jnp.reshape(w, shape), out_dtype)


class WeightNorm(Module):
    """Rescales the weights of ``layer_instance`` to unit L2 norm (times a learned-free scale).

    Example::

        layer = nnx.WeightNorm(nnx.Linear(8, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
        y = layer(jnp.ones((5, 8)))
        # every column of the kernel now has norm 1:
        jnp.linalg.norm(layer.layer_instance.kernel[...], axis=0)

    For each state entry of the layer that ``variable_filter`` selects (default: paths
    containing ``'kernel'``), the norm is taken over every axis except
    ``feature_axes`` (``None``: over all axes), and the Param is overwritten in place
    by ``W / ||W|| * scale`` before the layer runs. ``scales`` is a dict from each
    such path to its scale array, of the shape of the feature axes, made by
    ``scale_init`` (ones) when ``use_scale``.
    """

    def __init__(
        self,
        layer_instance: Module,
        *,
        feature_axes: int | tuple[int, ...] | None = -1,
        use_scale: bool = True,
        scale_init: Initializer = initializers.ones,
        epsilon: float = 1e-12,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        variable_filter: Any = _KERNELS,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        rngs: Rngs,
    ):
        self.layer_instance = layer_instance
        self.feature_axes = () if feature_axes is None else feature_axes
        self.use_scale = use_scale
        self.scale_init = scale_init
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.variable_filter: Callable[..., bool] = to_predicate(variable_filter)
        self.promote_dtype = promote_dtype
        self.scales: dict | None = None
        if use_scale:
            scales = {}
            for path, param in _flat_params(layer_instance):
                if not self.variable_filter(path, param):
                    continue
                feat = self._feature_axes(param[...].ndim)
                shape = tuple(param[...].shape[a] for a in feat)
                key = param_key(rngs, "WeightNorm")
                scales[tuple(path)] = jnp.asarray(scale_init(key, shape, param_dtype))
            self.scales = data(scales)

    def _feature_axes(self, ndim: int) -> tuple[int, ...]:
        axes = (self.feature_axes,) if isinstance(self.feature_axes, int) else self.feature_axes
        return tuple(sorted(a % ndim for a in axes))

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        for path, variable in to_flat_state(cast(State, state(self.layer_instance))):
            if self.variable_filter(path, variable):
                self._normalize_in_place(tuple(path), variable)
        return cast(Any, self.layer_instance)(x, *args, **kwargs)

    def _normalize_in_place(self, path: tuple, variable: Any) -> None:
        value = variable[...]
        feat = self._feature_axes(value.ndim)
        reduction = tuple(i for i in range(value.ndim) if i not in feat)
        normed = _l2_normalize(value, axis=reduction, eps=self.epsilon)
        cast = [value]
        if self.use_scale:
            assert self.scales is not None  # built with use_scale
            if path not in self.scales:
                raise LayerError(
                    f"WeightNorm: no scale for the parameter at {path}; the wrapped layer's "
                    "parameters changed after WeightNorm was built. Build a new WeightNorm "
                    "around the changed layer."
                )
            scale = self.scales[path]
            shape = [1] * value.ndim
            for a in feat:
                shape[a] = value.shape[a]
            scale = jnp.reshape(scale, shape)
            normed = normed * scale
            cast.append(scale)
        variable[...] = jnp.asarray(normed, canonicalize_dtype(*cast, dtype=self.dtype))
