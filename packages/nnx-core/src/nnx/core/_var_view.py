"""The view of a hijax Variable that JAX sees as its cell (decision 0009).

A hijax Variable's pytree child outside a trace is an object of the Variable's
own class (a view class made here, once per kind) that forwards reads and
writes to the Variable and that JAX types as the Variable's cell, so a plain
``jax.jit`` carries its writes while ``jax.tree.map``, checkpoint libraries and
reprs see a Variable, never the cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nnx.core._hijax import Cell, CellView, register_view_type

if TYPE_CHECKING:
    from nnx.core._variables import Variable


class _LeafView(CellView):
    """Base of the view classes (see ``_child``): forwards state and writes to the owner."""

    __slots__ = ()
    _nnx_owner: Variable  # a slot of each view class

    _raw = property(lambda self: self._nnx_owner._raw)
    _aux = property(lambda self: self._nnx_owner._aux)
    _trace = property(lambda self: None)  # noqa: ARG005

    @property
    def _nnx_cell(self) -> Cell:
        return self._nnx_owner._raw

    @property
    def _nnx_kind(self) -> tuple:
        owner = self._nnx_owner
        return (type(owner), owner._aux)

    def __setattr__(self, name, value):
        setattr(self._nnx_owner, name, value)

    def __delattr__(self, name):
        delattr(self._nnx_owner, name)

    def set_metadata(self, **metadata) -> None:
        self._nnx_owner.set_metadata(**metadata)

    def set_raw_value(self, raw) -> None:
        self._nnx_owner.set_raw_value(raw)

    def replace(self, value: Any = None, **metadata):
        return self._nnx_owner.replace(value, **metadata)

    def copy(self):
        return self._nnx_owner.copy()

    def to_mode(self, *, mode: int, mutable: bool):
        return self._nnx_owner.to_mode(mode=mode, mutable=mutable)

    def __deepcopy__(self, memo):
        import copy

        return copy.deepcopy(self._nnx_owner, memo)

    def __copy__(self):
        return self._nnx_owner.copy()

    def __reduce__(self):
        return self._nnx_owner.__reduce__()


_VIEW_CLASSES: dict = {}


def _view_class(cls: type) -> type:
    view = _VIEW_CLASSES.get(cls)
    if view is None:
        view = type(
            cls.__name__,
            (_LeafView, cls),
            {
                "__slots__": ("_nnx_owner",),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
            },
        )
        register_view_type(view)
        _VIEW_CLASSES[cls] = view
    return view


def _set_owner(view, owner) -> None:
    type(view)._nnx_owner.__set__(view, owner)  # type: ignore[attr-defined]
