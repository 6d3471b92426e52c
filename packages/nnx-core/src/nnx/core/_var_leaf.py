"""Hijax Variables as JAX leaves of the States and Pytrees that hold them (decision 0014).

A bare Variable is a JAX pytree node (``_variables.py``). Its parents, a State and a
Pytree's graph, hand JAX a hijax Variable that holds values as a *leaf*: its view (an
object of the Variable's own class that JAX types as its cell, ``_var_view.py``), and
rebuild Variables from what JAX gives back with the kind they recorded.
"""

from __future__ import annotations

from nnx.core._hijax import Cell, is_cell
from nnx.core._var_aux import HIJAX
from nnx.core._var_view import _LeafView
from nnx.core._variables import (
    _VALUE_CLASSES,
    _VARIABLE_CLASSES,
    Variable,
    _hijax_unflatten,
    _holds_values,
    _view_of,
)


def jax_leaf(x, *, content: bool = False):
    """What a parent (a State, a Pytree's graph) hands JAX for its child ``x``.

    A hijax Variable that holds values, or a traced cell, is a JAX *leaf*: its view,
    an object of the Variable's own class that JAX types as its cell (decision 0014).
    So ``jax.tree.map(f, params, momentum, grads)`` over States of different Variable
    kinds lines up, and ``f`` receives Variables, eagerly and inside ``jax.jit``. A
    hijax Variable whose cell holds no arrays (the ShapeDtypeStructs of an abstract
    model, None, a library's per-leaf options) shows that content: with
    ``content=True`` (a State, which records the Variable's kind itself) the content
    is the child, else the Variable, a pytree node whose child is the content. Any
    other child is handed as it is (a plain or ref Variable is a pytree node).
    """
    if type(x) not in _VARIABLE_CLASSES or x._aux.mode != HIJAX:
        return x
    raw = x._raw
    if type(raw) is Cell:
        value = raw._val
        if type(value) not in _VALUE_CLASSES and not _holds_values(value):
            return value if content else x
    elif not is_cell(raw):
        return x
    return _view_of(x)


def is_hijax_variable(x) -> bool:
    """Whether ``x`` is a hijax Variable (whose :func:`jax_leaf` may be its view)."""
    return type(x) in _VARIABLE_CLASSES and x._aux.mode == HIJAX


def from_jax_leaf(cls, aux, child):
    """The Variable a parent rebuilds from what JAX gives back for a :func:`jax_leaf`
    (``cls`` and ``aux`` are the kind and static part recorded when flattening)."""
    return _hijax_unflatten(cls, aux, child)


def from_state_leaf(cls, aux, child):
    """What a State holds where JAX gives back ``child`` for a hijax Variable's leaf.

    A hijax Variable is a leaf of its State, so, as in Flax NNX, the State holds what a
    tree map returned there: a Variable as it is (the Variable itself for its view, an
    identity map; a new one, `jax.tree.map(make_opt_state, params)`), any other value
    as it is (`nnx.pure`, `jax.tree.map(np.asarray, state)`, a checkpoint target of
    ShapeDtypeStructs). Only a traced cell (inside `jax.jit`) is wrapped, in a Variable
    of the recorded kind ``cls`` and static part ``aux``.
    """
    if isinstance(child, _LeafView):
        return child._nnx_owner
    if is_cell(child) and not isinstance(child, Variable):
        return cls._from_raw(child, aux, None)
    return child
