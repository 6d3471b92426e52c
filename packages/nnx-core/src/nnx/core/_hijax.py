"""The storage cell of hijax Variables: a mutable JAX hi-type.

A hijax Variable keeps its value in a :class:`Cell`. ``Cell`` is registered
with ``jax.experimental.hijax`` as a mutable hi-type whose quasi-dynamic data
(QDD) is the pytree structure and the abstract values of its content, so

- ``jax.jit(f)(cell)`` sees the cell as one typed argument, and the writes
  that ``f`` makes inside come out to the caller's cell (a JAX effect);
- the content may change structure inside a trace (a dict that gains keys);
- ``jax.grad`` differentiates reads of a cell.

This module is the only one in nnx that touches JAX internals beyond the
public ``jax.experimental.hijax`` names (``jax._src.core.cur_qdd`` and the
effect registries). It is pinned by the ``jax`` range of nnx-core and covered
by ``tests/test_hijax.py``.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Any

import jax
from jax._src import core as _jcore  # private: cur_qdd and the QDD base class
from jax._src import effects as _jeffects  # private: effect registries
from jax._src.interpreters import partial_eval as _jpe  # private: the jit tracer's type
from jax.experimental.hijax import (
    AvalQDD,
    HiPrimitive,
    MutableHiType,
    Zero,
    aval_method,
    register_hitype,
)

from nnx.core._errors import HijaxError

_NO_MAP = (
    "jax.vmap and jax.lax.scan cannot map over hijax Variables (JAX has no "
    "batching rule for them). Use nnx.vmap / nnx.scan, which accept every "
    "Variable mode, or convert around the transform: "
    "`nnx.vars_as(tree, hijax=False)` before it and `nnx.vars_as(out, hijax=True)` "
    "after it."
)

_flatten = jax.tree_util.tree_flatten
_unflatten = jax.tree_util.tree_unflatten


@dataclass(frozen=True, slots=True)
class CellState(_jcore.QuasiDynamicData):
    """The type of a cell's content: leaf abstract values and pytree structure."""

    leaf_avals: tuple
    treedef: Any

    def to_tangent_qdd(self) -> CellState:
        return CellState(tuple(a.to_tangent_aval() for a in self.leaf_avals), self.treedef)

    def normalize(self) -> CellState:
        return CellState(tuple(a.normalize() for a in self.leaf_avals), self.treedef)


def _lo_count(aval) -> int:
    return len(aval.lo_ty())


def _raise_leaves(state: CellState, lo_vals) -> list:
    it = iter(lo_vals)
    return [a.raise_val(*itertools.islice(it, _lo_count(a))) for a in state.leaf_avals]


_NO_GRAD = (
    "jax.grad cannot differentiate with respect to a mutable hijax Variable (reads "
    "of its cell cannot be transposed). Differentiate an immutable copy instead: "
    "`jax.grad(f)(nnx.vars_as(tree, mutable=False))` (seed 002's train step), or "
    "use nnx.grad, which accepts every Variable mode."
)
# JAX before 0.10.2 cannot make a tangent of a type with quasi-dynamic data (a cell):
# jax.grad/jax.jvp of a mutable hijax Variable stop at an assertion inside JAX.
_QDD_TANGENTS = tuple(jax.__version_info__[:3]) >= (0, 10, 2)


def _from_linearize_inputs() -> bool:
    """Whether JAX asks for the tangent type of a primal input of jax.grad/jax.vjp
    (old JAX only; a closed-over read asks from elsewhere, and works)."""
    frame = sys._getframe(2)
    for _ in range(2):  # the list comprehension's own frame on Python 3.11
        if frame is None:
            return False
        if frame.f_code.co_name == "direct_linearize":
            return True
        frame = frame.f_back
    return False


class CellTy(MutableHiType):
    """Abstract value of a :class:`Cell`."""

    # The override ignores here and in the primitives below: JAX's base methods are
    # `assert False` stubs (pyright infers NoReturn), take the generic QDD where JAX hands
    # back the CellState this type made, and type to_tangent_aval as an immutable HiType.

    has_qdd = True

    # The Variable a JAX leaf stands for, ``(class, VarAux)``, when JAX is handed a
    # hijax Variable's view as a leaf (decision 0014): part of the type, so a
    # `jax.jit` over a State retraces when a Variable's kind or metadata changes
    # (the State's treedef does not hold them), and a traced cell still tells which
    # Variable it is. None for cells that are not a Variable's leaf.
    kind: Any

    def __init__(self, kind: Any = None):
        self.kind = kind

    def __hash__(self):  # pyright: ignore[reportIncompatibleMethodOverride]
        return hash((CellTy, self.kind))

    def __eq__(self, other):  # pyright: ignore[reportIncompatibleMethodOverride]
        return isinstance(other, CellTy) and other.kind == self.kind

    def str_short(self, short_dtypes=False, mesh_axis_types=False, **_) -> str:  # noqa: ARG002
        return "Variable"

    # jax.vmap and jax.lax.scan ask a hijax Variable's type for the shape to map over
    # (the Variable itself answers with its value's shape, see CellView).
    @property
    def shape(self):
        raise HijaxError(_NO_MAP)

    # -- lowering to immutable JAX values ------------------------------------
    def lo_ty_qdd(self, state: CellState):  # pyright: ignore[reportIncompatibleMethodOverride]
        return [lo for a in state.leaf_avals for lo in a.lo_ty()]

    def new_from_loval(self, state: CellState, *lo_vals):  # pyright: ignore[reportIncompatibleMethodOverride]
        return Cell._new(_unflatten(state.treedef, _raise_leaves(state, lo_vals)))

    def read_loval(self, state: CellState, cell) -> list:  # pyright: ignore[reportIncompatibleMethodOverride]
        leaves, treedef = _flatten(cell_get(cell))
        return [lo for a, x in zip(state.leaf_avals, leaves) for lo in a.lower_val(x)]

    def update_from_loval(self, state: CellState, cell, *lo_vals) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        cell_set(cell, _unflatten(state.treedef, _raise_leaves(state, lo_vals)))

    def to_tangent_aval(self):  # pyright: ignore[reportIncompatibleMethodOverride]
        if not _QDD_TANGENTS and _from_linearize_inputs():
            raise HijaxError(_NO_GRAD)  # JAX would stop at a bare `assert not aval.has_qdd`
        return CellTy()

    # JAX asks an output hi-value to lower itself; a cell made inside the trace
    # cannot leave it, so say what to do instead of an AttributeError.
    def lower_val(self, _):
        raise HijaxError(
            "A hijax Variable created inside a JAX transform cannot be returned from "
            "it. Either use the nnx transform (`nnx.jit`), which returns new modules "
            "in any Variable mode, or return plain Variables and convert outside: "
            "`nnx.vars_as(model, hijax=False)` inside, `nnx.vars_as(model, hijax=True)` "
            "outside."
        )

    def lo_ty(self):
        return self.lower_val(None)

    get = aval_method(lambda self: cell_get(self))
    set = aval_method(lambda self, value: cell_set(self, value))


class Cell:
    """A mutable box whose reads and writes JAX traces as effects."""

    __slots__ = ("_val",)

    def __init__(self, value):
        self._val = value

    @classmethod
    def _new(cls, value) -> Cell:
        return cls(value)

    @property
    def ty(self) -> CellTy:
        return CellTy()

    def cur_qdd(self) -> CellState:
        leaves, treedef = _flatten(self._val)
        return CellState(tuple(_jcore.typeof(x) for x in leaves), treedef)

    def get(self):
        return self._val

    def set(self, value) -> None:
        self._val = value

    # jax.vmap and jax.lax.scan ask their arguments for a shape to map over; a
    # cell has none, so say what to do instead of "rank 0" or "no leading axis".
    @property
    def shape(self):
        raise HijaxError(_NO_MAP)

    def __repr__(self) -> str:
        return f"Cell({self._val!r})"


register_hitype(Cell, lambda c: c.ty)


class CellView:
    """What JAX sees of a hijax Variable outside a trace: the Variable itself.

    ``nnx.core._variables`` makes, for each Variable class, a subclass of this
    class and of the Variable class whose instances forward to one Variable
    (``_nnx_owner``). JAX types it as the Variable's cell (so ``jax.jit`` still
    carries writes), and ``jax.tree.map``, checkpoint libraries and reprs see a
    Variable with its metadata, never the storage cell (decision 0009).
    """

    __slots__ = ()

    @property
    def _nnx_cell(self) -> Cell:
        raise NotImplementedError

    @property
    def _nnx_kind(self) -> Any:
        raise NotImplementedError

    def cur_qdd(self) -> CellState:
        return self._nnx_cell.cur_qdd()

    # Inside a trace a view stands for its traced cell: JAX's jit tracer asks a value
    # that is not one of its tracers for `dimension_as_value` before it makes it a
    # constant, so a view that reaches a nested `jax.jit` (or a primitive) is bound as
    # the cell it forwards to.
    def dimension_as_value(self):
        return self._nnx_cell


def _cell_of(x) -> Cell:
    return x._nnx_cell if isinstance(x, CellView) else x


def register_view_type(cls: type) -> None:
    """Type the instances of ``cls`` (a :class:`CellView` subclass) as cells for JAX:
    a concrete cell's view carries its Variable's kind (see ``CellTy.kind``); inside a
    trace the view has its traced cell's type."""
    register_hitype(cls, _view_type)


def _view_type(view) -> CellTy:
    cell = view._nnx_cell
    if type(cell) is Cell:
        return CellTy(view._nnx_kind)
    return _jcore.typeof(cell)


class CellEffect(_jeffects.Effect):
    """Reads and writes of a hijax Variable."""


cell_effect = CellEffect()
for _registry_name in (
    "control_flow_allowed_effects",
    "custom_derivatives_allowed_effects",
    "remat_allowed_effects",
    "partial_eval_kept_effects",
):
    _registry = getattr(_jeffects, _registry_name, None)
    if _registry is not None:
        _registry.add_type(CellEffect)


class _NewCell(HiPrimitive):
    def is_high(self, *, treedef) -> bool:  # noqa: ARG002
        return True

    def abstract_eval(self, *, treedef):  # pyright: ignore[reportIncompatibleMethodOverride]
        return AvalQDD(CellTy(), CellState((), treedef)), {cell_effect}

    def to_lojax(self, *, treedef):  # pyright: ignore[reportIncompatibleMethodOverride]
        return Cell._new(_unflatten(treedef, []))

    def jvp(self, primals, tangents, *, treedef):  # pyright: ignore[reportIncompatibleMethodOverride]  # noqa: ARG002
        raise HijaxError("hijax Variables cannot be created inside jax.jvp/jax.grad.")

    def transpose(self, *args, treedef):  # noqa: ARG002
        raise HijaxError("hijax Variables cannot be created inside jax.grad.")


class _CellSet(HiPrimitive):
    multiple_results = True

    def is_high(self, *avals, treedef) -> bool:  # noqa: ARG002
        return True

    def abstract_eval(self, cell_ty, *leaf_avals, treedef):  # pyright: ignore[reportIncompatibleMethodOverride]
        cell_ty.mutable_qdd.update(CellState(leaf_avals, treedef))
        return [], {cell_effect}

    def to_lojax(self, cell, *leaves, treedef):  # pyright: ignore[reportIncompatibleMethodOverride]
        _cell_of(cell)._val = _unflatten(treedef, leaves)
        return []

    def jvp(self, primals, tangents, *, treedef):  # pyright: ignore[reportIncompatibleMethodOverride]
        cell, *vals = primals
        cell_dot, *val_dots = tangents
        if type(cell_dot) is Zero:
            raise HijaxError(
                "Cannot differentiate a write to a hijax Variable. Convert the "
                "differentiated state with `nnx.vars_as(tree, mutable=False)` first, "
                "or wrap the written value in `jax.lax.stop_gradient`."
            )
        cell_set_p.bind(cell, *vals, treedef=treedef)
        cell_set_p.bind(cell_dot, *val_dots, treedef=treedef)
        return [], []

    def transpose(self, *args, treedef):  # noqa: ARG002
        raise HijaxError(
            "jax.grad/jax.vjp cannot transpose a write to a hijax Variable. Differentiate "
            "an immutable copy instead: `jax.grad(f)(nnx.vars_as(tree, mutable=False))`, "
            "or use nnx.grad, which accepts every Variable mode."
        )


class _CellGet(HiPrimitive):
    multiple_results = True

    def abstract_eval(self, cell_ty, *, avals):  # pyright: ignore[reportIncompatibleMethodOverride]  # noqa: ARG002
        return avals, {cell_effect}

    def to_lojax(self, cell, *, avals):  # pyright: ignore[reportIncompatibleMethodOverride]  # noqa: ARG002
        return jax.tree_util.tree_leaves(_cell_of(cell)._val)

    def jvp(self, primals, tangents, *, avals):  # pyright: ignore[reportIncompatibleMethodOverride]
        (cell,), (cell_dot,) = primals, tangents
        return (
            cell_get_p.bind(cell, avals=avals),
            cell_get_p.bind(cell_dot, avals=tuple(a.to_tangent_aval() for a in avals)),
        )

    def transpose(self, *args, avals):  # noqa: ARG002
        raise HijaxError(_NO_GRAD)


new_cell_p = _NewCell("new_variable")
cell_set_p = _CellSet("set_variable")
cell_get_p = _CellGet("get_variable")


def _eager() -> bool:
    return isinstance(_jcore.trace_ctx.trace, _jcore.EvalTrace)


def cells_allowed() -> bool:
    """Whether a cell can be made here: eagerly, or while tracing for ``jax.jit``.

    Inside ``jax.vmap``, ``jax.grad`` and the like the innermost trace has no rule
    for cells; Variables that ask for hijax storage only through the defaults are
    made plain there (see ``_variables._resolve_mode``).
    """
    return isinstance(_jcore.trace_ctx.trace, (_jcore.EvalTrace, _jpe.DynamicJaxprTrace))


_NO_CELL_HERE = (
    "JAX has no batching or differentiation rule for a hijax Variable's cell, so it "
    "cannot take a value traced by jax.vmap, jax.grad or another transform that is not "
    "jax.jit. Inside such a transform use plain Variables (`hijax=False`, or leave the "
    "mode to nnx.var_defaults, which makes them plain there) and convert outside with "
    "`nnx.vars_as(tree, hijax=True)`; or use nnx.vmap / nnx.grad, which accept every "
    "Variable mode."
)


def new_cell(value) -> Cell:
    """A new cell holding ``value``; a traced cell when called inside a trace."""
    if not _eager():
        if not cells_allowed():
            if any(isinstance(x, _jcore.Tracer) for x in jax.tree_util.tree_leaves(value)):
                raise HijaxError("A hijax Variable cannot be created here. " + _NO_CELL_HERE)
            return Cell(value)  # a concrete value: an ordinary cell, as outside
        _, treedef = _flatten(None)
        cell = new_cell_p.bind(treedef=treedef)
        cell_set(cell, value)
        return cell
    return Cell(value)


def cell_get(cell):
    """The content of ``cell`` (traced reads go through ``get_variable``)."""
    if type(cell) is Cell and _eager():
        return cell._val
    if isinstance(cell, CellView):
        return cell_get(cell._nnx_cell)
    state = _jcore.cur_qdd(cell)
    leaves = cell_get_p.bind(cell, avals=tuple(state.leaf_avals))
    return _unflatten(state.treedef, leaves)


def cell_set(cell, value) -> None:
    """Replace the content of ``cell`` (traced writes go through ``set_variable``)."""
    if type(cell) is Cell and _eager():
        cell._val = value
        return
    if isinstance(cell, CellView):
        cell_set(cell._nnx_cell, value)
        return
    leaves, treedef = _flatten(value)
    try:
        cell_set_p.bind(cell, *leaves, treedef=treedef)
    except NotImplementedError as e:  # no batching rule: a vmapped value
        raise HijaxError("A hijax Variable cannot be written here. " + _NO_CELL_HERE) from e


def is_tracer(x) -> bool:
    """True for a value traced by a JAX transform."""
    return isinstance(x, _jcore.Tracer)


def is_cell(x) -> bool:
    """True for a cell or a traced cell."""
    if type(x) is Cell:
        return True
    return isinstance(x, _jcore.Tracer) and isinstance(_jcore.typeof(x), CellTy)


def cell_content(cell: Cell):
    """What a concrete cell holds, read without recording a read in any trace (for
    reprs and other inspection; :func:`cell_get` is the read of a program)."""
    return cell._val
