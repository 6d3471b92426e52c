"""How a Variable stores its value: the public API that nnx's transforms build on.

A Variable has a *storage mode* (:class:`StorageMode`: a plain array, ``jax.Ref``\\ s or a
JAX hi-type cell), a *stored value* (``Variable.get_raw_value()``: the array, the Ref
tree or the cell) and a *record* (:class:`VariableRecord`: mode, mutability and
metadata; hashable, part of every GraphDef). Code that moves Variables across JAX
boundaries (the transforms, checkpointing) reads these and builds Variables back from
a stored value with :func:`variable_from_stored`, without running ``__init__``.
"""

from __future__ import annotations

import contextlib
import enum
import operator
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import jax

from nnx.core import _epoch
from nnx.core._hijax import Cell, _eager, _jcore, cell_get, cell_set, is_cell
from nnx.core._refs import _ReadableRef, new_ref
from nnx.core._variables import HIJAX, PLAIN, REF, VarAux, Variable, _set_aux, _set_raw, _set_trace

V = TypeVar("V", bound=Variable)

# the concrete (eager) ``jax.Ref``: its buffer is read and replaced directly by
# read_stored/write_stored, as JAX's own dispatch does after a call over refs
# JAX's Ref and nnx.new_ref's subclass of it (the same Ref, readable as NumPy)
_REFS = frozenset(t for t in (_jcore.Ref, _ReadableRef) if t is not None)


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


def read_stored(v: Variable) -> Any:
    """A Variable's value read from its storage without running a JAX operation.

    For transforms that hand a Variable's value to a compiled JAX call and write
    the result back with :func:`write_stored`. ``v.get_value()`` gives the same
    value, but on a ref Variable outside a trace it runs a JAX read (about 150 µs
    per ``jax.Ref``); this reads the array the ref holds. For a ref Variable
    outside a trace the arrays returned are the ref's own buffers, not copies:
    pass them to JAX (donating them is allowed when the results are written
    back) and do not keep them. Inside a trace, and for plain and hijax
    Variables, it is ``v.get_value()``.

    Args:
      v: the Variable.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> v = nnx.Param(jnp.arange(3.0), ref=True)
    >>> nnx.read_stored(v).tolist()
    [0.0, 1.0, 2.0]
    """
    aux = v._aux
    raw = v._raw
    if aux.mode == PLAIN:
        return raw
    if aux.mode == HIJAX:
        return cell_get(raw)
    if type(raw) in _REFS and _eager():
        return raw._refs._buf
    if not _eager():
        return v.get_value()
    return jax.tree.map(_buffer, raw, is_leaf=_is_ref)


def write_stored(v: Variable, value: Any, *, checked: bool = True) -> None:
    """Replace a Variable's value in its storage without running a JAX operation.

    The write-back of :func:`read_stored`: for the results of a compiled call that
    took the Variable's value. It skips the mutability check of ``set_value``
    (the caller already ran the function that wrote). A ref Variable keeps its
    refs and their buffers are replaced, unless the value changed the shape,
    dtype or sharding of an array: then the Variable gets new refs, as a plain
    Variable gets the new array. Inside a trace it writes as ``set_value`` does.

    Args:
      v: the Variable.
      value: its new value (a pytree of the structure the Variable stores).
      checked: False when the caller knows that every array of ``value`` has the
        shape, dtype and sharding of the array the ref holds (the output of a
        compiled call for that input): a ref Variable's buffers are then replaced
        without comparing them (about 1 µs less per ref).

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> v = nnx.Param(jnp.zeros(2), ref=True)
    >>> nnx.write_stored(v, jnp.ones(2))
    >>> v[...].tolist()
    [1.0, 1.0]
    """
    aux = v._aux
    raw = v._raw
    if aux.mode == PLAIN:
        _set_raw(v, value)
        return
    if aux.mode == HIJAX:
        cell_set(raw, value)
        return
    if not _eager():
        v.set_value(value)
        return
    if type(raw) in _REFS:
        impl = raw._refs
        if not checked or _same_layout(impl._buf, value):
            impl._buf = value
            return
    else:
        refs = jax.tree.leaves(raw, is_leaf=_is_ref)
        vals = jax.tree.leaves(value)
        if len(refs) == len(vals) and all(
            type(r) in _REFS and (not checked or _same_layout(r._refs._buf, x))
            for r, x in zip(refs, vals)
        ):
            for r, x in zip(refs, vals):
                r._refs._buf = x
            return
    _set_raw(v, new_ref(value))


def read_stored_many(vs: Sequence[Variable]) -> list:
    """:func:`read_stored` of each Variable, in one pass (the check for a trace once).

    What a transform calls for every ref and hijax Variable of its arguments on each
    call: about 0.1 µs a Variable against 0.7 µs for the one-by-one form.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> vs = [nnx.Param(jnp.zeros(2), ref=True), nnx.Param(jnp.ones(2), hijax=True)]
    >>> a, b = nnx.read_stored_many(vs)
    >>> float(a.sum()), float(b.sum())
    (0.0, 2.0)
    """
    if not _eager():
        return [v.get_value() for v in vs]
    out = []
    append = out.append
    for v in vs:
        raw = v._raw
        t = type(raw)
        if t in _REFS:
            append(raw._refs._buf)
        elif t is Cell:
            append(raw._val)
        else:
            append(read_stored(v))
    return out


def write_stored_many(
    vs: Sequence[Variable], values: Sequence[Any], *, checked: bool = True
) -> None:
    """:func:`write_stored` of each Variable and its value, in one pass.

    ``checked=False`` as in :func:`write_stored`: every value has the layout of the
    array its ref holds (the outputs of a compiled call for those inputs).

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> vs = [nnx.Param(jnp.zeros(2), ref=True), nnx.Param(jnp.zeros(2), hijax=True)]
    >>> nnx.write_stored_many(vs, (jnp.ones(2), jnp.full(2, 2.0)))
    >>> float(vs[0].value.sum()), float(vs[1].value.sum())
    (2.0, 4.0)
    """
    if not _eager():
        for v, x in zip(vs, values):
            v.set_value(x)
        return
    for v, x in zip(vs, values):
        raw = v._raw
        t = type(raw)
        if t in _REFS:
            impl = raw._refs
            if not checked or _same_layout(impl._buf, x):
                impl._buf = x
                continue
        elif t is Cell and v._aux.mode == HIJAX:
            raw._val = x
            continue
        write_stored(v, x, checked=checked)


class StoredBatch:
    """A fixed sequence of ref or hijax Variables whose stored values are read and
    written together, as a transform does for its arguments on every call.

    :meth:`read` and :meth:`write` are :func:`read_stored_many` and
    :func:`write_stored_many` of the same Variables, with the per-Variable checks
    done once, when the batch is built: where every Variable is a hijax Variable
    holding its cell, or a ref Variable holding one ``jax.Ref``, each call reads
    and writes the cells' contents or the refs' buffers directly (about half the
    time of the general form). The batch holds the Variables, not their storage: a
    Variable whose cell or ref is replaced later (``set_raw_value``, a write that
    changed an array's shape) is read and written through its new storage. Inside a
    trace both are the general form.

    Args:
      vs: the Variables.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> vs = [nnx.Param(jnp.zeros(2), hijax=True), nnx.Param(jnp.ones(2), hijax=True)]
    >>> batch = nnx.StoredBatch(vs)
    >>> a, b = batch.read()
    >>> float(a.sum()), float(b.sum())
    (0.0, 2.0)
    >>> batch.write((jnp.full(2, 3.0), jnp.full(2, 4.0)))
    >>> float(vs[0].value.sum()), float(vs[1].value.sum())
    (6.0, 8.0)
    """

    __slots__ = ("variables", "_kind")

    def __init__(self, vs: Sequence[Variable]):
        self.variables: tuple[Variable, ...] = tuple(vs)
        kind = None
        vs = self.variables
        if vs and all(v._aux.mode == HIJAX and type(v._raw) is Cell for v in vs):
            kind = "cells"
        elif vs and all(v._aux.mode == REF and type(v._raw) in _REFS for v in vs):
            kind = "refs"
        self._kind = kind

    def __len__(self) -> int:
        return len(self.variables)

    def read(self) -> list:
        """:func:`read_stored` of each Variable."""
        kind = self._kind
        if kind is not None and _eager():
            try:
                return list(map(_CELL_VALUE if kind == "cells" else _REF_BUFFER, self.variables))
            except AttributeError:  # a Variable's storage was replaced by another kind
                pass  # (a write through this batch never leaves `_val` on a ref)
        return read_stored_many(self.variables)

    def write(self, values: Sequence[Any], *, checked: bool = True) -> None:
        """:func:`write_stored` of each Variable and its value (``checked`` as there)."""
        kind = self._kind
        if kind == "cells" and _eager():
            for v, x in zip(self.variables, values):
                raw = v._raw
                if type(raw) is not Cell:  # its storage was replaced: the general form
                    break  # (it writes every value again)
                raw._val = x
            else:
                return
        elif kind == "refs" and not checked and _eager():
            for v, x in zip(self.variables, values):
                raw = v._raw
                if type(raw) not in _REFS:
                    break
                raw._refs._buf = x
            else:
                return
        write_stored_many(self.variables, values, checked=checked)


_CELL_VALUE = operator.attrgetter("_raw._val")
_REF_BUFFER = operator.attrgetter("_raw._refs._buf")


def _is_ref(x) -> bool:
    return isinstance(x, jax.Ref)


def _buffer(r):
    return r._refs._buf if type(r) in _REFS else r[...]


def _same_layout(buf, x) -> bool:
    return (
        type(x) is type(buf)
        and x.shape == buf.shape
        and x.dtype == buf.dtype
        and (x.sharding is buf.sharding or x.sharding == buf.sharding)
    )


@contextlib.contextmanager
def stand_in(outer: Sequence[Variable], inner: Sequence[Variable]) -> Iterator[None]:
    """Within the block each Variable of ``outer`` uses the storage of its ``inner`` one.

    For a transform that traces a function over new Variables (``inner``) built
    for the caller's (``outer``): the function may also reach a caller's Variable
    by closure, and should then see the same Variable as through its argument, not
    a second one. Inside the block ``outer[k]`` reads and writes what ``inner[k]``
    stores, in ``inner[k]``'s mode and with its record; on exit (also on an
    exception) each gets its own storage back, unchanged. Entering and leaving
    move the structure epoch (a Variable's record is part of a GraphDef, so no
    ``FlattenCache`` reuses a flattening made on the other side). The inner Variables are meant to be ref or hijax
    Variables: their storage object is what both share, so writes made through
    ``outer[k]`` stay in ``inner[k]``; with a plain inner Variable a write through
    ``outer[k]`` replaces an array that ``outer[k]`` drops at exit.

    Args:
      outer: the caller's Variables.
      inner: the Variables that stand for them, one per outer Variable.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> a, b = nnx.Param(jnp.zeros(())), nnx.Param(jnp.ones(()), ref=True)
    >>> with nnx.stand_in([a], [b]):
    ...     a[...] = 5.0
    >>> float(a[...]), float(b[...])
    (0.0, 5.0)
    """
    saved = [(v._raw, v._aux, v._trace) for v in outer]
    if saved:
        _epoch.bump()
    try:
        for v, w in zip(outer, inner):
            _set_raw(v, w._raw)
            _set_aux(v, w._aux)
            _set_trace(v, w._trace)
        yield
    finally:
        for v, (raw, aux, trace) in zip(outer, saved):
            _set_raw(v, raw)
            _set_aux(v, aux)
            _set_trace(v, trace)
        if saved:
            _epoch.bump()
