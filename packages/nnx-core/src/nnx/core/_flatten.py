"""Object graphs <-> (GraphDef, flat leaves): :func:`flatten` and :func:`unflatten`.

:func:`flatten` walks an object graph (Pytrees, Variables, lists, dicts,
tuples, arrays) in a fixed order (attributes and dict keys sorted by
:func:`~nnx.core._paths.key_order`) and returns a hashable
:class:`~nnx.core._graphdef.GraphDef` plus the flat list of leaves: each
Variable once, even when several parents hold it, and raw arrays.
Pytrees, Variables, ``nnx.List`` and ``nnx.Dict`` have identity: one reachable
at several paths is encoded once and referenced (``(_REF, i)``) after, as
Flax NNX's graph nodes are. Plain lists, dicts and tuples are values.
:func:`unflatten` builds a new graph from a GraphDef and leaves, sharing
objects exactly as the original did; reference cycles round-trip.

This is the per-call path of every nnx transform: keep it free of extra calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from jax.extend.core import get_opaque_trace_state

from nnx.core._errors import StructureError
from nnx.core._filters import to_predicate
from nnx.core._graphdef import (
    _ARRAY_TYPES,
    _DICT,
    _LEAF,
    _LIST,
    _NODE,
    _PYTREE,
    _REF,
    _STATIC,
    _TUPLE,
    _VAR,
    GraphDef,
)
from nnx.core._hijax import is_cell, new_cell
from nnx.core._paths import key_order, path_str
from nnx.core._pytree import (
    Dict,
    List,
    Pytree,
    _Static,
    _TrackedDict,
    _TrackedList,
    compute_layout,
    get_layout,
    new_node,
)
from nnx.core._state import FlatState, State
from nnx.core._var_aux import HIJAX, PLAIN, REF, _to_ref
from nnx.core._variables import Variable

if TYPE_CHECKING:
    from nnx.core._flatten_cache import _Watch


class FlatGraph:
    """What :func:`flatten` returns.

    Example::

        flat = nnx.flatten(model)
        flat.graphdef.num_leaves == len(flat.leaves)
        [type(v).__name__ for v in flat.variables]   # ['Param', 'Param']

    Attributes:
      graphdef: the static structure.
      leaves: Variables (each once) and raw arrays, in the fixed order.
      nodes: every object with identity in the graph (Pytrees, Variables,
        ``nnx.List`` and ``nnx.Dict``), in index order; a ``GraphDef`` record
        ``(_REF, i)`` points at ``nodes[i]``.
      paths: the path of each leaf (only when asked for).
    """

    __slots__ = ("graphdef", "leaves", "nodes", "paths", "pairs")

    def __init__(self, graphdef, leaves, nodes, paths, pairs: bool = True):
        self.graphdef = graphdef
        self.leaves = leaves
        self.nodes = nodes
        self.paths = paths
        self.pairs = pairs  # how it unpacks (Flax NNX's tuple form): see __iter__

    @property
    def variables(self) -> list[Variable]:
        return [x for x in self.leaves if isinstance(x, Variable)]

    def __iter__(self):
        """``graphdef, flat_state = nnx.graph.flatten(node)``: Flax NNX's tuple form, the
        GraphDef and a :class:`FlatState` of ``(path, leaf)`` pairs; after
        ``flatten(node, with_paths=False)``, the GraphDef and the list of stored values
        (each Variable's array, as Flax gives), which :func:`unflatten` takes back."""
        if not self.pairs:
            values = [x.get_raw_value() if isinstance(x, Variable) else x for x in self.leaves]
            return iter((self.graphdef, values))
        paths = self.paths if self.paths is not None else self.graphdef.paths
        return iter((self.graphdef, FlatState(zip(paths, self.leaves))))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        return tuple(self)[i]


class _Flattener:
    __slots__ = ("ids", "nodes", "leaves", "paths", "pytree_view", "watch")

    def __init__(self, ref_index, with_paths, pytree_view=False, watch=None):
        self.ids = {} if ref_index is None else dict(ref_index)
        self.nodes: list = []
        self.leaves: list = []
        self.paths = [] if with_paths else None
        self.pytree_view = pytree_view
        # what a cached flattening must re-check (FlattenCache): untracked
        # containers and mutable static values, see _Watch
        self.watch: _Watch | None = watch

    def visit(self, x, path):
        # The encoding's container rules, not those of `iter_graph`/`find_duplicates`
        # (_walk.py): every registered JAX pytree node is descended into, statics are
        # recorded, graph_ref attributes are static in the JAX view. See _walk.py.
        if isinstance(x, Variable):
            i = self.ids.get(id(x))
            if i is not None:
                return (_REF, i)
            self.ids[id(x)] = len(self.ids)
            self.nodes.append(x)
            self.leaves.append(x)
            if self.paths is not None:
                self.paths.append(path)
            return (_VAR, type(x), x._aux)
        if isinstance(x, Pytree):
            i = self.ids.get(id(x))
            if i is not None:
                return (_REF, i)
            self.ids[id(x)] = len(self.ids)
            self.nodes.append(x)
            layout = get_layout(x)
            if layout.mutable_statics:  # a static dict/list edited in place
                if any(st.stale() for st in layout.mutable_statics):
                    layout = compute_layout(x)
                if self.watch is not None:
                    self.watch.statics.extend(layout.mutable_statics)
            d = x.__dict__
            if layout.scalar_keys:  # `nnx.data(2.0)`: a Python scalar that is a leaf
                # in key order with the other children: the leaves' order is the paths'
                sk = layout.scalar_keys
                if self.paths is None:
                    children = tuple(
                        self.leaf(d[k], None) if k in sk else self.visit(d[k], None)
                        for k in layout.data_keys
                    )
                else:
                    children = tuple(
                        self.leaf(d[k], (*path, k)) if k in sk else self.visit(d[k], (*path, k))
                        for k in layout.data_keys
                    )
            elif self.paths is None:
                children = tuple(self.visit(d[k], None) for k in layout.data_keys)
            else:
                children = tuple(self.visit(d[k], (*path, k)) for k in layout.data_keys)
            if layout.graph_keys:
                if self.pytree_view:  # references stay static in the JAX view
                    children += tuple((_STATIC, _Static(d[k])) for k in layout.graph_keys)
                elif self.paths is None:
                    children += tuple(self.visit(d[k], None) for k in layout.graph_keys)
                else:
                    children += tuple(self.visit(d[k], (*path, k)) for k in layout.graph_keys)
            return (_NODE, type(x), layout, children)
        t = type(x)
        if self.watch is not None and (t is list or t is dict):
            return self.watched(x, t)  # a State moves the epoch itself, as List and Dict
        if t is _TrackedList or t is List or t is _TrackedDict or t is Dict:  # with identity
            i = self.ids.get(id(x))
            if i is not None:
                return (_REF, i)
            self.ids[id(x)] = len(self.ids)
            self.nodes.append(x)
        # the sequences (List, list, tuple) and the mappings (Dict, dict, State)
        if t is _TrackedList or t is List or t is list or t is tuple:
            if self.paths is None:
                children = tuple(self.visit(y, None) for y in x)
            else:
                children = tuple(self.visit(y, (*path, i)) for i, y in enumerate(x))
            return (_TUPLE if t is tuple else _LIST, t, children)
        if t is _TrackedDict or t is Dict or t is dict or t is State:
            keys = tuple(sorted(x, key=key_order))
            if self.paths is None:
                children = tuple(self.visit(x[k], None) for k in keys)
            else:
                children = tuple(self.visit(x[k], (*path, k)) for k in keys)
            return (_DICT, t, keys, children)
        if isinstance(x, _ARRAY_TYPES) or is_cell(x) or isinstance(x, jax.Ref):
            self.leaves.append(x)
            if self.paths is not None:
                self.paths.append(path)
            return (_LEAF,)
        if x is None or isinstance(x, (int, float, complex, str, bool, type)) or callable(x):
            return (_STATIC, _Static(x))
        children, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda y: y is not x)
        if jax.tree_util.treedef_is_leaf(treedef):
            return (_STATIC, _Static(x))
        keyed, _ = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)
        keys = tuple(_key_name(kp[0]) for kp, _ in keyed)
        if self.watch is not None and not isinstance(x, tuple):  # a namedtuple cannot change
            defs = self.watched_children(x, treedef, children)
        elif self.paths is None:
            defs = tuple(self.visit(c, None) for c in children)
        else:
            defs = tuple(self.visit(c, (*path, k)) for k, c in zip(keys, children))
        return (_PYTREE, treedef, keys, defs)

    def watched(self, x, t):
        """A plain list or dict reached by a FlattenCache's flattening (no paths)."""
        if t is list:
            return (_LIST, t, self.watched_children(x, None, list(x)))
        keys = tuple(sorted(x, key=key_order))
        return (_DICT, t, keys, self.watched_children(x, keys, [x[k] for k in keys]))

    def watched_children(self, x, keys, kids: list) -> tuple:
        arrays = None
        defs = []
        for i, y in enumerate(kids):
            if isinstance(y, _ARRAY_TYPES):
                if arrays is None:
                    arrays = {}
                arrays[i] = len(self.leaves)
            defs.append(self.visit(y, None))
        self.watch.items.append((x, keys, kids, arrays))  # type: ignore[union-attr]
        return tuple(defs)

    def leaf(self, x, path):
        self.leaves.append(x)
        if self.paths is not None:
            self.paths.append(path)
        return (_LEAF,)


def _key_name(k):
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return str(k)


def flatten(
    node: Any, *, with_paths: bool | None = None, ref_index: Mapping[int, int] | None = None
) -> FlatGraph:
    """Flatten an object graph into a :class:`GraphDef` and its leaves.

    Example::

        flat = nnx.flatten((model, optimizer), with_paths=True)
        flat.graphdef            # hashable static structure (a jax.jit cache key)
        flat.leaves              # each Variable once (shared ones too), then raw arrays
        flat.paths               # e.g. [(0, "linear", "kernel"), ...]
        raws = [x.get_raw_value() if isinstance(x, nnx.Variable) else x for x in flat.leaves]
        model2, opt2 = nnx.unflatten(flat.graphdef, raws)   # new objects, same sharing

    Args:
      node: any object graph or pytree of them.
      with_paths: True: also record the path of each leaf (``flat.paths``). Not
        given or True, ``graphdef, flat_state = nnx.flatten(node)`` unpacks as in Flax
        NNX (a :class:`FlatState` of ``(path, leaf)``); False: as
        ``graphdef, values`` (the stored values, in leaf order).
      ref_index: ``{id(obj): index}`` of objects already known to the
        caller; they are emitted as references to that index instead of being
        walked (transforms use this to map returned inputs back).
    """
    f = _Flattener(ref_index, with_paths)
    tree = f.visit(node, ())
    return FlatGraph(
        GraphDef(tree, len(f.leaves), len(f.ids)),
        f.leaves,
        f.nodes,
        f.paths,
        with_paths is not False,
    )


class _Unflattener:
    __slots__ = ("leaves", "pos", "objs", "copy", "built", "trace")

    def __init__(self, leaves, index_ref, copy, record=False):
        self.leaves = leaves
        self.pos = 0
        self.objs = {} if index_ref is None else _IndexView(index_ref)
        self.copy = copy
        # return_flat=True: the object placed at each leaf slot (a Variable or the value)
        self.built: list | None = [] if record else None
        self.trace = None  # read once, at the first node (every node is made in one trace)

    def build(self, d):
        tag = d[0]
        if tag == _VAR:
            value = self.leaves[self.pos]
            self.pos += 1
            cls, aux = d[1], d[2]
            if isinstance(value, Variable):
                v = value.copy() if self.copy else value
            else:
                v = cls._from_raw(_as_storage(aux, value), aux, _trace_if_plain(aux))
            self.objs[len(self.objs)] = v
            if self.built is not None:
                self.built.append(v)
            return v
        if tag == _REF:
            return self.objs[d[1]]
        if tag == _NODE:
            cls, layout, children = d[1], d[2], d[3]
            if self.trace is None:
                self.trace = get_opaque_trace_state(convention="nnx")
            obj = new_node(cls, layout, (), self.trace)
            self.objs[len(self.objs)] = obj
            od = obj.__dict__
            for k, c in zip(layout.keys, children):
                od[k] = self.build(c)
            # attribute order as in the original object: data keys were sorted
            return obj
        if tag == _LIST:
            t = d[1]
            if t is _TrackedList or t is List:  # numbered before its items, as flatten does
                out = t.__new__(t)
                self.objs[len(self.objs)] = out
                list.extend(out, [self.build(c) for c in d[2]])
                return out
            return [self.build(c) for c in d[2]]
        if tag == _TUPLE:
            return tuple(self.build(c) for c in d[2])
        if tag == _DICT:
            t = d[1]
            if t is dict:
                return {k: self.build(c) for k, c in zip(d[2], d[3])}
            out = t.__new__(t)
            if t is _TrackedDict or t is Dict:  # numbered before its items, as flatten does
                self.objs[len(self.objs)] = out
            for k, c in zip(d[2], d[3]):
                dict.__setitem__(out, k, self.build(c))
            return out
        if tag == _LEAF:
            value = self.leaves[self.pos]
            self.pos += 1
            if self.built is not None:
                self.built.append(value)
            return value
        if tag == _STATIC:
            return d[1].value
        if tag == _PYTREE:
            return jax.tree_util.tree_unflatten(d[1], [self.build(c) for c in d[3]])
        raise AssertionError(d)


class _IndexView(dict):
    """Index -> object map pre-filled with the caller's objects."""

    def __init__(self, index_ref):
        super().__init__(enumerate(index_ref) if isinstance(index_ref, list) else index_ref)


def _trace_if_plain(aux):
    if aux.mode == PLAIN:
        from jax.extend.core import get_opaque_trace_state

        return get_opaque_trace_state(convention="nnx")
    return None


def _is_arrays(value) -> bool:
    leaves = jax.tree.leaves(value, is_leaf=lambda r: isinstance(r, jax.Ref))
    return all(isinstance(x, (jax.Array, np.ndarray, jax.Ref)) for x in leaves)


def _as_storage(aux, value):
    mode = aux.mode
    if mode == PLAIN or not _is_arrays(value):
        return value
    if mode == REF:
        leaves = jax.tree.leaves(value, is_leaf=lambda r: isinstance(r, jax.Ref))
        if leaves and all(isinstance(r, jax.Ref) for r in leaves):
            return value
        return _to_ref(value)
    if mode == HIJAX:
        return value if is_cell(value) else new_cell(value)
    return value


def unflatten(
    graphdef: GraphDef,
    leaves: list | Mapping | FlatState,
    *,
    index_ref: list | Mapping[int, Any] | None = None,
    copy_variables: bool = False,
    return_flat: bool = False,
) -> Any:
    """Build an object graph from a :class:`GraphDef` and its leaves.

    Example::

        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        flat = nnx.flatten(model)
        values = [v.get_value() * 0 for v in flat.leaves]     # raw values: new Variables
        zeros = nnx.unflatten(flat.graphdef, values)          # same kinds and metadata
        again = nnx.unflatten(flat.graphdef, flat.leaves)     # Variables: reused as they are
        print(again.kernel is model.kernel)                   # True
        fresh = nnx.unflatten(flat.graphdef, flat.leaves, copy_variables=True)

    ``leaves`` holds, for each Variable slot, either a Variable (used as is,
    or copied with ``copy_variables=True``) or its raw stored value (a new
    Variable of the recorded kind, mode and metadata is made around it). A
    :class:`State`, a nested dict of values (``state.to_pure_dict()``) or a
    :class:`FlatState` gives each leaf by its path, as Flax NNX's
    ``nnx.unflatten(graphdef, state)``::

        graphdef, flat_state = nnx.flatten(model)
        same = nnx.unflatten(graphdef, flat_state)
        again = nnx.unflatten(graphdef, nnx.state(model).to_pure_dict())

    Args:
      index_ref: objects that references ``(_REF, i)`` below
        ``len(index_ref)`` resolve to (the caller's objects, as numbered by
        the ``flatten`` that produced them).
      return_flat: also return the :class:`FlatGraph` of what was built,
        ``(obj, flat)``: ``flat.nodes`` every object numbered as the GraphDef
        numbers them (``index_ref``'s objects first), ``flat.leaves`` the
        Variable or value at each leaf slot; what ``flatten(obj)`` would give
        right away, without walking the graph again (a transform keeps it to
        find the objects that entered after the function changed them).

    Example (``return_flat``)::

        obj, built = nnx.unflatten(flat.graphdef, values, return_flat=True)
        built.leaves[0] is obj.kernel          # True
    """
    if type(leaves) is not list and isinstance(leaves, (Mapping, FlatState)):
        leaves = leaves_by_path(graphdef, (leaves,), "unflatten")
    elif len(leaves) != graphdef.num_leaves:
        raise StructureError(
            f"unflatten: the GraphDef has {graphdef.num_leaves} leaves, got {len(leaves)}."
        )
    u = _Unflattener(leaves, index_ref, copy_variables, return_flat)
    obj = u.build(graphdef.tree)
    if not return_flat:
        return obj
    nodes = [u.objs[i] for i in sorted(u.objs)]
    return obj, FlatGraph(graphdef, u.built, nodes, None)


def flat_items(states, where: str) -> dict:
    """``{path: leaf}`` of States, nested mappings or FlatStates (later ones win)."""
    lookup: dict = {}
    for s in states:
        if isinstance(s, FlatState):
            lookup.update(s)
        elif isinstance(s, State):
            lookup.update(s.flat_state())
        elif isinstance(s, Mapping):
            lookup.update(State(s).flat_state())
        else:
            raise TypeError(f"{where}: expected a State or a mapping, got {type(s).__name__}.")
    return lookup


def leaves_by_path(graphdef: GraphDef, states, where: str) -> list:
    """The leaves ``graphdef`` needs, in its order, looked up by path in ``states``
    (States, nested mappings or FlatStates); every one must be there, and nothing else."""
    lookup = flat_items(states, where)
    leaves = []
    for p in graphdef.paths:
        try:
            leaves.append(lookup.pop(p))
        except KeyError:
            raise StructureError(
                f"{where}: no State provides a value for {path_str(p)!r}, which the "
                f"GraphDef needs. Pass every State that split returned."
            ) from None
    if lookup:
        extra = ", ".join(repr(path_str(p)) for p in list(lookup)[:5])
        raise StructureError(f"{where}: the States have paths the GraphDef does not: {extra}.")
    return leaves


def is_graph_node(x) -> bool:
    """True for Pytrees and Variables (objects with identity in a graph)."""
    return isinstance(x, (Pytree, Variable))


def filter_leaves(flat: FlatGraph, filter) -> list[bool]:
    """For each leaf of ``flat``, whether ``filter`` matches it (a list of bools).

    Example::

        flat = nnx.flatten(model, with_paths=True)
        diff = nnx.filter_leaves(flat, nnx.Param)     # e.g. [True, False, True]
        params = [x for x, d in zip(flat.leaves, diff) if d]

    Paths come from ``flat.paths``, or from ``flat.graphdef.paths`` when ``flat``
    was made without them (as :class:`FlattenCache` does).
    """
    pred = to_predicate(filter)
    paths = flat.paths if flat.paths is not None else flat.graphdef.paths
    return [bool(pred(p, x)) for p, x in zip(paths, flat.leaves)]
