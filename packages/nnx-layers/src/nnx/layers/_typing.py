"""Type names that layer code is annotated with (Flax's ``flax.typing`` names).

All but ``Initializer`` are plain aliases, reachable as ``nnx.nn.linear.Dtype`` and the
like; ``Initializer`` is a protocol, exported as ``nnx.Initializer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import jax

Array = jax.Array
Dtype = Any  # a jnp dtype or anything jnp.dtype accepts
Shape = Sequence[int]
PrecisionLike = Any  # None, a lax.Precision, a string, or a pair of them
DotGeneralT = Callable[..., jax.Array]
ConvGeneralDilatedT = Callable[..., jax.Array]
EinsumT = Callable[..., jax.Array]
PromoteDtypeFn = Callable[..., Any]
PaddingLike = str | int | Sequence[int | tuple[int, int]]
LaxPadding = str | Sequence[tuple[int, int]]
Axes = int | Sequence[int]


@runtime_checkable
class Initializer(Protocol):
    """What a layer's ``*_init`` argument is: ``init(key, shape, dtype) -> array``.

    >>> import jax, jax.numpy as jnp
    >>> import nnx
    >>> init: nnx.Initializer = nnx.initializers.lecun_normal()
    >>> init(jax.random.key(0), (3, 4), jnp.float32).shape
    (3, 4)
    >>> isinstance(nnx.initializers.zeros, nnx.Initializer)
    True

    Every function of ``jax.nn.initializers`` and ``nnx.initializers`` fits, and so
    does any callable with this signature (``nnx.with_partitioning`` wraps one).
    """

    def __call__(self, key: jax.Array, shape: Any, dtype: Any = ..., /) -> Any: ...
