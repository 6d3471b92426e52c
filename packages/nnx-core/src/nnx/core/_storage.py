"""How a Variable stores its value: the public API that nnx's transforms build on.

A Variable has a *storage mode* (:class:`StorageMode`: a plain array, ``jax.Ref``\\ s or a
JAX hi-type cell), a *stored value* (``Variable.get_raw_value()``: the array, the Ref
tree or the cell) and a *record* (:class:`VariableRecord`: mode, mutability and
metadata; hashable, part of every GraphDef). Code that moves Variables across JAX
boundaries (the transforms, checkpointing) reads these and builds Variables back from
a stored value with :func:`variable_from_stored`, without running ``__init__``.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

from nnx.core._hijax import is_cell
from nnx.core._variables import HIJAX, PLAIN, REF, VarAux, Variable

V = TypeVar("V", bound=Variable)


class StorageMode(enum.IntEnum):
    """Where a Variable's value lives.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> nnx.storage_mode(nnx.Param(jnp.ones(2), hijax=False, ref=False)) is nnx.StorageMode.PLAIN
    True

    ``PLAIN``: an array (or pytree of arrays) held by the Variable; ``REF``: ``jax.Ref``
    objects (JAX carries writes through ``jax.jit``); ``HIJAX``: a JAX hi-type cell (the
    Variable is a mutable JAX value). Equal to the integers in ``VariableRecord.mode``.
    """

    PLAIN = PLAIN
    REF = REF
    HIJAX = HIJAX


VariableRecord = VarAux
"""The static part of a Variable: ``mode`` (a :class:`StorageMode` value), ``mutable``,
``metadata`` (a dict); hashable and immutable; ``record.replace(mode=..., mutable=...,
**metadata)`` returns a changed copy. Read it with :func:`variable_record`."""


def storage_mode(v: Variable) -> StorageMode:
    """The :class:`StorageMode` of a Variable."""
    return StorageMode(v._aux.mode)


def variable_record(v: Variable) -> VarAux:
    """The :data:`VariableRecord` of a Variable (mode, mutability, metadata).

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> rec = nnx.variable_record(nnx.Param(jnp.ones(2), tag="w"))
    >>> rec.mutable, rec.metadata["tag"]
    (True, 'w')
    """
    return v._aux


def variable_trace(v: Variable) -> Any:
    """The JAX trace state a plain Variable was created under (None for refs and cells).

    Compared with ``jax.extend.core.get_opaque_trace_state(convention="nnx")`` it tells
    whether the Variable was made inside the current transform.
    """
    return getattr(v, "_trace", None)


def variable_from_stored(cls: type[V], stored: Any, record: VarAux, trace: Any = None) -> V:
    """A new Variable of class ``cls`` around a stored value, without calling ``__init__``.

    ``stored`` must already be in the storage ``record.mode`` says (an array for
    ``PLAIN``, a Ref tree for ``REF``, a cell for ``HIJAX``); ``trace`` is the trace
    state a plain Variable records (see :func:`variable_trace`; None outside traces
    checks).

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> p = nnx.Param(jnp.ones(2), hijax=False, ref=False)
    >>> q = nnx.variable_from_stored(nnx.Param, jnp.zeros(2), nnx.variable_record(p))
    >>> type(q).__name__, q[...].tolist()
    ('Param', [0.0, 0.0])
    """
    return cls._from_raw(stored, record, trace)


def is_storage_cell(x: Any) -> bool:
    """Whether ``x`` is a hijax storage cell (what a HIJAX Variable's stored value is)."""
    return is_cell(x)
