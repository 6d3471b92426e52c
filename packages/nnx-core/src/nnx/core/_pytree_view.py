"""The JAX pytree view of Pytrees: a Pytree's children are its graph's leaves.

``jax.tree.map(f, model)`` sees a Pytree as the :func:`~nnx.core._flatten.flatten`
of its graph (each Variable once, ``graph_ref`` attributes static), cached per
object while the structure epoch has not moved. :mod:`nnx.core._pytree`, below
the encoding, registers every Pytree class with JAX through the
:class:`~nnx.core._pytree.PytreeCodec` this module installs at import.
"""

from __future__ import annotations

from typing import Any

from nnx.core._flatten import FlatGraph, _Flattener, _Unflattener, flatten
from nnx.core._flatten_cache import _EPOCH, _Watch
from nnx.core._graphdef import GraphDef
from nnx.core._paths import attr_path_str
from nnx.core._pytree import PytreeCodec, get_flat_cache_raw, install_codec, set_flat_cache


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
            return cached[1]
    watch = _Watch()
    f = _Flattener(None, False, pytree_view=True, watch=watch)
    tree = f.visit(obj, ())
    flat = FlatGraph(GraphDef(tree, len(f.leaves), len(f.ids)), f.leaves, f.nodes, None)
    set_flat_cache(obj, (epoch, flat, watch if (watch.items or watch.statics) else None))
    return flat


def _pytree_keys(flat: FlatGraph) -> list:
    return [(PathKey(p), x) for p, x in zip(flat.graphdef.paths, flat.leaves)]


def _pytree_unflatten(graphdef: GraphDef, children) -> Any:
    return _Unflattener(list(children), None, False).build(graphdef.tree)


def _graph_leaves(obj) -> list:
    return flatten(obj).leaves


install_codec(PytreeCodec(_pytree_flatten, _pytree_keys, _pytree_unflatten, _graph_leaves))
