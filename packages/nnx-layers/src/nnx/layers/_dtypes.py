"""dtype helpers every layer uses: ``canonicalize_dtype`` and ``promote_dtype`` (Flax's ``nnx.nn.dtypes``)."""

from __future__ import annotations

from typing import Any, TypeVar

import jax.numpy as jnp

from nnx.layers._errors import LayerError

T = TypeVar("T")


def canonicalize_dtype(*args: Any, dtype: Any = None, inexact: bool = True) -> Any:
    """The dtype a layer computes in: ``dtype`` if given, else the common type of ``args``.

    >>> import jax.numpy as jnp
    >>> from nnx.layers import canonicalize_dtype
    >>> canonicalize_dtype(jnp.ones(2, jnp.bfloat16), jnp.ones(2, jnp.float32))
    dtype('float32')
    >>> canonicalize_dtype(jnp.ones(2, jnp.int32))          # inexact: ints become floats
    dtype('float32')

    ``None`` arguments are ignored. With ``inexact=True`` an inferred integer (or bool)
    type is promoted with float32, and an explicit non-float ``dtype`` is an error.
    """
    if dtype is None:
        present = [jnp.asarray(a) for a in args if a is not None]
        dtype = jnp.result_type(*present)
        if inexact and not jnp.issubdtype(dtype, jnp.inexact):
            dtype = jnp.promote_types(jnp.float32, dtype)
    if inexact and not jnp.issubdtype(dtype, jnp.inexact):
        raise LayerError(
            f"canonicalize_dtype: dtype {jnp.dtype(dtype)} is not a floating (inexact) type; "
            "pass a float dtype such as jnp.float32 or bfloat16, or inexact=False."
        )
    return dtype


def promote_dtype(args: T, /, *, dtype: Any = None, inexact: bool = True) -> T:
    """Cast every array in the tuple ``args`` to one dtype (``None`` entries stay ``None``).

    >>> import jax.numpy as jnp
    >>> from nnx.layers import promote_dtype
    >>> x, w, b = promote_dtype((jnp.ones(2, jnp.bfloat16), jnp.ones(2), None))
    >>> x.dtype, w.dtype, b
    (dtype('float32'), dtype('float32'), None)

    The dtype is :func:`canonicalize_dtype` of the arrays (or ``dtype`` when given).
    Layers take a function with this signature as their ``promote_dtype`` argument,
    to change how their inputs and parameters are cast before the computation.
    """
    seq = tuple(args)  # type: ignore[arg-type]
    target = canonicalize_dtype(*seq, dtype=dtype, inexact=inexact)
    return tuple(None if a is None else jnp.asarray(a, target) for a in seq)  # type: ignore[return-value]
