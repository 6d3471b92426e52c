"""The encoding of an object graph: :class:`GraphDef` and its record tags.

A GraphDef's ``tree`` is nested tuples, one record per object, whose first
item is a tag:

- ``(_VAR, cls, aux)``: a Variable of kind ``cls`` with static part ``aux``
  (a ``VarAux``); its value is the next leaf;
- ``(_NODE, cls, layout, children)``: a Pytree; ``layout.keys`` name the children;
- ``(_REF, i)``: the object already numbered ``i`` (sharing, cycles);
- ``(_LIST, type, children)``, ``(_TUPLE, type, children)``;
- ``(_DICT, type, keys, children)``: a dict, ``nnx.Dict`` or State, keys sorted;
- an ``nnx.List`` or ``nnx.Dict`` record, as a ``_NODE`` or ``_VAR`` one, numbers
  the object (before its children) so that a later ``(_REF, i)`` can point at it;
- ``(_LEAF,)``: a raw array (the next leaf);
- ``(_STATIC, _Static(value))``: a value that is part of the structure;
- ``(_PYTREE, treedef, keys, children)``: another registered JAX pytree node.

Only this module reads the tags' meaning for display (``GraphDef.__repr__``);
:mod:`nnx.core._flatten` writes and reads them.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import jax
import numpy as np

from nnx.core._text import treescope_object

# GraphDef record tags
_VAR, _NODE, _REF, _LIST, _DICT, _TUPLE, _LEAF, _STATIC, _PYTREE = range(9)

# what the walks take as an array leaf
_ARRAY_TYPES = (jax.Array, np.ndarray, np.generic)

Node = TypeVar("Node")


class GraphDef(Generic[Node]):
    """The static structure of an object graph: hashable, comparable by value.

    Equal structures give equal GraphDefs, so a GraphDef is a valid static
    argument of ``jax.jit``; it is also a pytree with no leaves, so it can be
    passed to ``jax.jit`` as an ordinary argument.

    For type checkers it is generic in the type of the object it describes:
    ``nnx.split(model)`` gives a ``GraphDef[Model]`` and :func:`merge` of it a ``Model``.
    """

    __slots__ = ("tree", "num_leaves", "num_nodes", "_hash", "_paths")

    def __init__(self, tree: tuple, num_leaves: int, num_nodes: int):
        self.tree = tree
        self.num_leaves = num_leaves
        self.num_nodes = num_nodes
        self._hash = hash(tree)
        self._paths = None

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (
            type(other) is GraphDef and self._hash == other._hash and self.tree == other.tree
        )

    @property
    def paths(self) -> tuple[tuple, ...]:
        """The path of each leaf, in leaf order."""
        if self._paths is None:
            out: list = []
            _collect_paths(self.tree, (), out)
            self._paths = tuple(out)
        return self._paths

    def __repr__(self) -> str:
        return f"GraphDef({_def_repr(self.tree, '')}, num_leaves={self.num_leaves})"

    def __treescope_repr__(self, path, subtree_renderer):
        attrs = {"num_leaves": self.num_leaves, "num_nodes": self.num_nodes}
        return treescope_object(self, attrs, path, subtree_renderer)


jax.tree_util.register_static(GraphDef)


def _collect_paths(d, path, out) -> None:
    tag = d[0]
    if tag in (_VAR, _LEAF):
        out.append(path)
    elif tag == _NODE:
        for k, c in zip(d[2].keys, d[3]):
            _collect_paths(c, (*path, k), out)
    elif tag in (_LIST, _TUPLE):
        for i, c in enumerate(d[2]):
            _collect_paths(c, (*path, i), out)
    elif tag in (_DICT, _PYTREE):
        for k, c in zip(d[2], d[3]):
            _collect_paths(c, (*path, k), out)


def _def_repr(d, indent: str) -> str:
    tag = d[0]
    if tag == _VAR:
        return f"VariableDef({d[1].__name__})"
    if tag == _REF:
        return f"NodeRef({d[1]})"
    if tag == _NODE:
        items = [f"{indent}  {k}={_def_repr(c, indent + '  ')}" for k, c in zip(d[2].keys, d[3])]
        items += [f"{indent}  {k}={s!r}" for k, s in d[2].static_items]
        if not items:
            return f"NodeDef({d[1].__name__})"
        return f"NodeDef({d[1].__name__},\n" + ",\n".join(items) + f"\n{indent})"
    if tag in (_LIST, _TUPLE):
        return "[" + ", ".join(_def_repr(c, indent + "  ") for c in d[2]) + "]"
    if tag == _DICT:
        items = (f"{k!r}: {_def_repr(c, indent + '  ')}" for k, c in zip(d[2], d[3]))
        return "{" + ", ".join(items) + "}"
    if tag == _LEAF:
        return "Leaf"
    if tag == _STATIC:
        return repr(d[1])
    return "PytreeDef"
