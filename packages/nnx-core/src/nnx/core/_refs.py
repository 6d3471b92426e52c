"""``jax.Ref``\\ s that checkpoint libraries can read: :func:`new_ref`.

A ref-mode Variable keeps its value in a ``jax.Ref``, and the Ref must stay the
leaf JAX sees: ``jax.jit`` writes through it (decision 0009). orbax's
``StandardCheckpointer`` accepts a leaf it does not know when the leaf reads as a
NumPy array (``__array__``), and ``jax.Ref`` does not. So a concrete Ref made
here is an instance of :class:`_ReadableRef`: the same Ref (it shares the
buffer and the abstract value of the one ``jax.new_ref`` made), which also
answers ``np.asarray``. JAX dispatches on the exact type of an argument, so the
subclass is entered in JAX's two tables for Refs, under Ref's own entries
(private tables, as the hijax cell uses; decision 0015). Where a JAX release
moves those tables, :func:`new_ref` gives JAX's plain Ref, and only the orbax
convenience is lost.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _readable_ref_type() -> Any:
    """The subclass, entered in JAX's tables; None where JAX's Ref or tables differ."""
    try:  # private: the exact-type tables JAX dispatches an argument through
        from jax._src import core as jcore
        from jax._src.interpreters import pxla
    except ImportError:  # pragma: no cover - a JAX without these modules
        return None
    tables: list[dict[Any, Any]] = [jcore.pytype_aval_mappings, pxla.shard_arg_handlers]
    ref: Any = getattr(jcore, "Ref", None)
    if ref is None or not all(ref in t for t in tables):  # pragma: no cover
        return None

    class _ReadableRef(ref):
        """A concrete ``jax.Ref`` that also reads as a NumPy array (for orbax)."""

        def __array__(self, dtype=None, copy=None):  # noqa: ARG002 - NumPy's signature
            return np.asarray(self[...], dtype=dtype)

    for table in tables:
        table[_ReadableRef] = table[ref]
    return _ReadableRef


_ReadableRef = _readable_ref_type()
_REF: Any = _ReadableRef.__base__ if _ReadableRef is not None else None


def _readable(ref: Any) -> Any:
    if _ReadableRef is None or type(ref) is not _REF or not hasattr(ref, "__dict__"):
        return ref  # a traced Ref (inside a transform), or JAX's Ref changed
    out = object.__new__(_ReadableRef)
    out.__dict__.update(ref.__dict__)  # the same buffer and abstract value
    return out


def new_ref(value: Any) -> Any:
    """``jax.new_ref`` over each array of ``value``; concrete Refs also read as NumPy.

    This is how ref-mode Variables store their arrays. A Ref made outside a
    trace is a ``jax.Ref`` in every respect (``jax.jit`` writes through it,
    ``isinstance(r, jax.Ref)``) that ``np.asarray`` also reads, so checkpoint
    libraries that save array-likes (orbax's ``StandardCheckpointer``) save the
    State of a ref-mode model as they save a plain one. Inside a trace it is
    ``jax.new_ref``.

    Args:
      value: an array or a pytree of arrays.

    Returns:
      ``value`` with each array replaced by a ``jax.Ref`` holding it.

    >>> import jax, jax.numpy as jnp, numpy as np, nnx
    >>> r = nnx.new_ref(jnp.arange(3.0))
    >>> isinstance(r, jax.Ref), np.asarray(r).tolist()
    (True, [0.0, 1.0, 2.0])
    """
    return jax.tree.map(lambda x: _readable(jax.new_ref(x)), value)
