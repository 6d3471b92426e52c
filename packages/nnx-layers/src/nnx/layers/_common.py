"""Helpers shared by the layers: dtype promotion, parameter creation, axis handling."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nnx.core import Param, Rngs, RngStream, VariableMetadata
from nnx.layers._dtypes import promote_dtype as promote_dtype
from nnx.layers._errors import LayerError, ShapeError

Array = jax.Array
Dtype = Any
Shape = tuple[int, ...]
Initializer = Callable[..., Any]
PrecisionLike = Any
PromoteDtypeFn = Callable[..., Any]


def contraction_kwargs(preferred_element_type: Any, out_sharding: Any) -> dict[str, Any]:
    """The optional keyword arguments of a dot/einsum/conv, only those that are set.

    Left out when None so that a user's own ``dot_general`` without them still works.
    """
    kw: dict[str, Any] = {}
    if preferred_element_type is not None:
        kw["preferred_element_type"] = preferred_element_type
    if out_sharding is not None:
        kw["out_sharding"] = out_sharding
    return kw


def first_from(*values: Any, default: Any = None) -> Any:
    """The first value that is not None (per-call flag, then attribute, then default)."""
    for v in values:
        if v is not None:
            return v
    return default


def require_rngs(rngs: Any, layer: str) -> None:
    """Raise, naming ``layer``, unless ``rngs`` can make parameter keys."""
    if not isinstance(rngs, (Rngs, RngStream, jax.Array)):
        raise LayerError(
            f"{layer} creates its parameters eagerly and needs `rngs`: "
            f"`{layer}(..., rngs=nnx.Rngs(0))` (got rngs={rngs!r})."
        )


def param_key(rngs: Rngs | RngStream | jax.Array | None, layer: str) -> jax.Array:
    """A key for parameter initialization from ``rngs`` (the ``params`` stream)."""
    require_rngs(rngs, layer)
    assert rngs is not None  # require_rngs raised otherwise
    if isinstance(rngs, Rngs):
        return rngs.params()
    if isinstance(rngs, RngStream):
        return rngs()
    return rngs


def make_param(
    init: Initializer,
    rngs: Rngs | RngStream | jax.Array | None,
    shape: Iterable[int],
    dtype: Dtype,
    *,
    layer: str,
    name: str,
    metadata: Mapping[str, Any] | None = None,
    kind: type[Param] = Param,
) -> Param[jax.Array]:
    """Create a parameter with ``init(key, shape, dtype)`` and a key from ``rngs``
    (:func:`param_key`), checking the shape it returns.

    ``init`` may be wrapped by ``nnx.with_partitioning`` (its metadata reaches the
    Variable); ``metadata`` adds more (``kernel_metadata={'sharding_names': ...}``).
    Errors name ``layer`` and the parameter's ``name``.
    """
    key = param_key(rngs, layer)
    shape = tuple(int(s) for s in shape)
    value = init(key, shape, dtype)
    raw = value.value if isinstance(value, VariableMetadata) else value
    got = tuple(jnp.shape(raw))
    if got != shape:
        raise ShapeError(
            f"{layer}: the initializer of `{name}` returned shape {got}, expected {shape}. "
            f"Pass an initializer with the signature init(key, shape, dtype) that honours shape."
        )
    return kind(value, **dict(metadata or {}))


def kernel_and_bias(
    rngs: Rngs | RngStream | jax.Array | None,
    *,
    layer: str,
    kernel_init: Initializer,
    kernel_shape: Iterable[int],
    bias_init: Initializer,
    bias_shape: Iterable[int] | None,
    param_dtype: Dtype,
    kernel_metadata: Mapping[str, Any] | None = None,
    bias_metadata: Mapping[str, Any] | None = None,
) -> tuple[Param[jax.Array], Param[jax.Array] | None]:
    """The ``kernel`` and ``bias`` Params of a dense or convolutional layer, in that
    order (so the kernel gets the first key); no bias when ``bias_shape`` is None."""
    kernel = make_param(
        kernel_init,
        rngs,
        kernel_shape,
        param_dtype,
        layer=layer,
        name="kernel",
        metadata=kernel_metadata,
    )
    if bias_shape is None:
        return kernel, None
    bias = make_param(
        bias_init, rngs, bias_shape, param_dtype, layer=layer, name="bias", metadata=bias_metadata
    )
    return kernel, bias


def canonical_axes(
    axes: int | Sequence[int], ndim: int, *, layer: str, what: str
) -> tuple[int, ...]:
    """Non-negative, sorted axes; errors name the layer."""
    if isinstance(axes, int):
        axes = (axes,)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(
                f"{layer}: {what} axis {a} is out of range for an input with {ndim} dimensions."
            )
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def as_tuple(x: int | Sequence[int] | None, n: int, *, layer: str, name: str, default: int = 1):
    """Broadcast an int (or None) to an ``n``-tuple; check the length of a sequence."""
    if x is None:
        return (default,) * n
    if isinstance(x, int):
        return (x,) * n
    x = tuple(int(v) for v in x)
    if len(x) != n:
        raise ShapeError(
            f"{layer}: `{name}` has {len(x)} entries, expected {n} (one per spatial axis)."
        )
    return x


def check_positive(layer: str, **values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, (int,)) or isinstance(v, bool) or v <= 0:
            raise LayerError(f"{layer}: `{name}` must be a positive int, got {v!r}.")



def trailing(v, y):
    """``v`` reshaped to the rank of ``y``, its axes aligned to the trailing axes of ``y``.

    The alignment numpy broadcasting does, written out, so that a program running with
    ``jax.config.update("jax_numpy_rank_promotion", "raise")`` can use the layers.
    """
    extra = y.ndim - v.ndim
    return jnp.reshape(v, (1,) * extra + v.shape) if extra > 0 else v


def add_bias(y, bias):
    """``y + bias``, with ``bias`` aligned to the trailing axes of ``y`` (:func:`trailing`)."""
    return y + trailing(bias, y)
