"""Pooling over the spatial axes of channels-last inputs: ``avg_pool``, ``max_pool``, ``min_pool``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nnx.layers._errors import ShapeError


def pool(
    inputs: jax.Array,
    init: Any,
    reduce_fn: Callable[[Any, Any], Any],
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    """Reduce every window of ``window_shape`` with ``reduce_fn`` (``lax.reduce_window``).

    Example::

        images = jnp.ones((1, 8, 8, 3))                        # (N, H, W, C)
        y = nnx.pool(images, -jnp.inf, jax.lax.max, (2, 2), strides=(2, 2))  # a max pool
        print(y.shape)  # (1, 4, 4, 3)

    Inputs have shape ``(*batch, *spatial, features)`` with one spatial axis per entry
    of ``window_shape``; batch axes may be absent or several.
    """
    window_shape = tuple(window_shape)
    rank = len(window_shape)
    strides = tuple(strides) if strides is not None else (1,) * rank
    if len(strides) != rank:
        raise ShapeError(f"pool: strides {strides} must have one entry per window axis ({rank}).")
    nbatch = inputs.ndim - rank - 1
    if nbatch < 0:
        raise ShapeError(
            f"pool: window {window_shape} needs inputs with at least {rank + 1} axes "
            f"(spatial and features), got shape {inputs.shape}."
        )
    batch_shape = inputs.shape[:nbatch]
    x = jnp.reshape(inputs, (-1,) + inputs.shape[nbatch:])
    dims = (1, *window_shape, 1)
    strides_full = (1, *strides, 1)
    if not isinstance(padding, str):
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
        if len(pads) != rank:
            raise ShapeError(
                f"pool: padding {padding} must have one (low, high) pair per window axis."
            )
        padding = ((0, 0), *pads, (0, 0))
    y = lax.reduce_window(x, init, reduce_fn, dims, strides_full, padding)
    return jnp.reshape(y, batch_shape + y.shape[1:])


def avg_pool(
    inputs: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    count_include_pad: bool = True,
) -> jax.Array:
    """Average over windows. With padding, ``count_include_pad=False`` divides by the real entries.

    Example::

        y = nnx.avg_pool(jnp.ones((1, 8, 8, 3)), (2, 2), strides=(2, 2))
        print(y.shape)  # (1, 4, 4, 3)
    """
    total = pool(inputs, np.zeros((), inputs.dtype), lax.add, window_shape, strides, padding)
    if count_include_pad:
        return total / jnp.asarray(_prod(window_shape), inputs.dtype)
    ones = jnp.ones(inputs.shape[-len(window_shape) - 1 : -1] + (1,), inputs.dtype)
    counts = pool(ones, np.zeros((), inputs.dtype), lax.add, window_shape, strides, padding)
    return total / jnp.broadcast_to(counts, total.shape)  # (*spatial, 1) to every batch entry


def max_pool(
    inputs: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    """Maximum over windows. Example: ``nnx.max_pool(x, (2, 2), strides=(2, 2))``."""
    return pool(inputs, _extreme(inputs.dtype, low=True), lax.max, window_shape, strides, padding)


def min_pool(
    inputs: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    """Minimum over windows. Example: ``nnx.min_pool(x, (2, 2), strides=(2, 2))``."""
    return pool(inputs, _extreme(inputs.dtype, low=False), lax.min, window_shape, strides, padding)


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _extreme(dtype, *, low: bool):
    # a concrete numpy init, so that under jit lax.reduce_window still recognises the
    # max/min monoid (a traced init falls back to a generic, non-differentiable window)
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf if low else np.inf, dtype)
    info = jnp.iinfo(dtype)
    return np.array(info.min if low else info.max, dtype)
