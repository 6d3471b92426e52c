"""The JAX pytree view of Pytrees: a Pytree's children are its graph's leaves.

``jax.tree.map(f, model)`` sees a Pytree as the :func:`~nnx.core._flatten.flatten`
of its graph (each Variable once, ``graph_ref`` attributes static), cached per
object while the structure epoch has not moved. :mod:`nnx.core._pytree`, below
the encoding, registers every Pytree class with JAX through the
:class:`~nnx.core._pytree.PytreeCodec` this module installs at import.
"""

from __future__ import annotations

from typing import Any

from nnx.core._flatten import FlatGraph, _Flattener, _Unflattener
from nnx.core._flatten_cache import _EPOCH, _Watch
from nnx.core._graphdef import _DICT, _LEAF, _LIST, _NODE, _PYTREE, _TUPLE, _VAR, GraphDef
from nnx.core._paths import attr_path_str
from nnx.core._pytree import PytreeCodec, get_flat_cache_raw, install_codec, set_flat_cache
from nnx.core._var_aux import HIJAX
from nnx.core._var_leaf import from_jax_leaf, is_hijax_variable, jax_leaf


class PathKey:
    """A JAX key for a whole path inside an object graph (``.layers[0].kernel``)."""

    __slots__ = ("path",)

    def __init__(self, path: tuple):
        self.path = path

    def __str__(self) -> str:
        return attr_path_str(self.path)

    __repr__ = __str__

    def __hash__(self):
        return hash(self.path)

    def __eq__(self, other):
        return isinstance(other, PathKey) and other.path == self.path


def _pytree_flatten(obj) -> FlatGraph:
    cached = get_flat_cache_raw(obj)
    epoch = _EPOCH[0]
    if cached is not None and cached[0] == epoch:
        w = cached[2]
        if w is None or w.still_valid(cached[1].leaves):
            return _jax_view(cached[1], cached[3])
    watch = _Watch()
    f = _Flattener(None, False, pytree_view=True, watch=watch)
    tree = f.visit(obj, ())
    flat = FlatGraph(GraphDef(tree, len(f.leaves), len(f.ids)), f.leaves, f.nodes, None)
    hijax = tuple(i for i, x in enumerate(f.leaves) if is_hijax_variable(x))
    set_flat_cache(obj, (epoch, flat, watch if (watch.items or watch.statics) else None, hijax))
    return _jax_view(flat, hijax)


def _jax_view(flat: FlatGraph, hijax: tuple) -> FlatGraph:
    """``flat`` as JAX sees it: each hijax Variable that holds values is a leaf, its
    view (decision 0014); the GraphDef keeps its kind and metadata. ``hijax`` are the
    positions of the hijax Variables, found when ``flat`` was made (a Variable's mode
    never changes; whether its cell holds values is checked on every call)."""
    if not hijax:
        return flat
    leaves = flat.leaves
    children = list(leaves)
    for i in hijax:
        children[i] = jax_leaf(leaves[i])
    return FlatGraph(flat.graphdef, children, flat.nodes, None)


def _pytree_keys(flat: FlatGraph) -> list:
    return [(PathKey(p), x) for p, x in zip(flat.graphdef.paths, flat.leaves)]


def _pytree_unflatten(graphdef: GraphDef, children) -> Any:
    leaves = list(children)
    for i, cls, aux in _hijax_slots(graphdef):
        # what JAX gives back where a hijax Variable was: its view (an identity tree
        # map), a Variable a function returned, a traced cell (inside jax.jit) or a new
        # value; each gives the Variable `Variable`'s own unflatten would give
        leaves[i] = from_jax_leaf(cls, aux, leaves[i])
    return _Unflattener(leaves, None, False).build(graphdef.tree)


_SLOTS: dict = {}


def _hijax_slots(graphdef: GraphDef) -> tuple:
    """``(leaf index, class, VarAux)`` of each hijax Variable of ``graphdef``."""
    slots = _SLOTS.get(graphdef)
    if slots is None:
        found: list = []
        _collect_vars(graphdef.tree, found)
        slots = tuple(
            (i, d[1], d[2]) for i, d in enumerate(found) if d is not None and d[2].mode == HIJAX
        )
        if len(_SLOTS) > 512:  # GraphDefs of models no longer traced
            _SLOTS.clear()
        _SLOTS[graphdef] = slots
    return slots


def _collect_vars(d, out: list) -> None:
    """The leaf records of a GraphDef tree, in leaf order (Variables' and raw leaves)."""
    tag = d[0]
    if tag in (_VAR, _LEAF):
        out.append(d if tag == _VAR else None)
    elif tag == _NODE:
        for c in d[3]:
            _collect_vars(c, out)
    elif tag in (_LIST, _TUPLE):
        for c in d[2]:
            _collect_vars(c, out)
    elif tag in (_DICT, _PYTREE):
        for c in d[3]:
            _collect_vars(c, out)


install_codec(PytreeCodec(_pytree_flatten, _pytree_keys, _pytree_unflatten))
