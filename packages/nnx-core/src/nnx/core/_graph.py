"""Object graphs <-> (GraphDef, flat leaves): the one boundary mechanism.

:func:`flatten` walks an object graph (Pytrees, Variables, lists, dicts,
tuples, arrays) in a fixed order (attributes and dict keys sorted) and
returns a hashable :class:`GraphDef` plus the flat list of leaves: each
Variable once, even when several parents hold it, and raw arrays.
:func:`unflatten` builds a new graph from a GraphDef and leaves, sharing
objects exactly as the original did; reference cycles round-trip.

``split``/``merge``/``update``/``state`` are built on these two functions, and
so is every nnx transform. :class:`FlattenCache` makes repeated flattening of
the same arguments cost one identity check while no object graph changed
shape (see :mod:`nnx.core._epoch`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar, cast, overload

import jax
import numpy as np

from nnx.core import _epoch, _pytree
from nnx.core._errors import FilterError, StructureError
from nnx.core._filters import filters_to_predicates, to_predicate
from nnx.core._hijax import is_cell, new_cell
from nnx.core._pytree import (
    Dict,
    List,
    Pytree,
    _Static,
    compute_layout,
    get_flat_cache_raw,
    get_layout,
    new_node,
    set_flat_cache,
)
from nnx.core._state import State, _keystr, _sort_key
from nnx.core._variables import HIJAX, PLAIN, REF, Variable, _to_ref

# GraphDef record tags
_VAR, _NODE, _REF, _LIST, _DICT, _TUPLE, _LEAF, _STATIC, _PYTREE = range(9)

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
        from nnx.core._display import graphdef_repr

        return graphdef_repr(self)

    def __treescope_repr__(self, path, subtree_renderer):
        from nnx.core._display import treescope_graphdef

        return treescope_graphdef(self, path, subtree_renderer)


jax.tree_util.register_static(GraphDef)


def _collect_paths(d, path, out) -> None:
    tag = d[0]
    if tag == _VAR or tag == _LEAF:
        out.append(path)
    elif tag == _NODE:
        for k, c in zip(d[2].keys, d[3]):
            _collect_paths(c, (*path, k), out)
    elif tag == _LIST or tag == _TUPLE:
        for i, c in enumerate(d[2]):
            _collect_paths(c, (*path, i), out)
    elif tag == _DICT:
        for k, c in zip(d[2], d[3]):
            _collect_paths(c, (*path, k), out)
    elif tag == _PYTREE:
        for k, c in zip(d[2], d[3]):
            _collect_paths(c, (*path, k), out)


class FlatGraph:
    """What :func:`flatten` returns.

    Example::

        flat = nnx.flatten(model)
        flat.graphdef.num_leaves == len(flat.leaves)
        [type(v).__name__ for v in flat.variables]   # ['Param', 'Param']

    Attributes:
      graphdef: the static structure.
      leaves: Variables (each once) and raw arrays, in the fixed order.
      nodes: every Pytree and Variable in the graph, in index order; a
        ``GraphDef`` record ``(_REF, i)`` points at ``nodes[i]``.
      paths: the path of each leaf (only when asked for).
    """

    __slots__ = ("graphdef", "leaves", "nodes", "paths")

    def __init__(self, graphdef, leaves, nodes, paths):
        self.graphdef = graphdef
        self.leaves = leaves
        self.nodes = nodes
        self.paths = paths

    @property
    def variables(self) -> list[Variable]:
        return [x for x in self.leaves if isinstance(x, Variable)]


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
            if self.paths is None:
                children = tuple(self.visit(d[k], None) for k in layout.data_keys)
            else:
                children = tuple(self.visit(d[k], (*path, k)) for k in layout.data_keys)
            if layout.scalar_keys:  # `nnx.data(2.0)`: a Python scalar that is a leaf
                children = tuple(
                    self.leaf(d[k], (*path, k) if self.paths is not None else None)
                    if k in layout.scalar_keys
                    else c
                    for k, c in zip(layout.data_keys, children)
                )
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
        if t is list or t is List or t is tuple:
            if self.paths is None:
                children = tuple(self.visit(y, None) for y in x)
            else:
                children = tuple(self.visit(y, (*path, i)) for i, y in enumerate(x))
            return (_TUPLE if t is tuple else _LIST, t, children)
        if t is dict or t is Dict or t is State:
            keys = tuple(sorted(x, key=_sort_key))
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
        keys = tuple(sorted(x, key=_sort_key))
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
    node: Any, *, with_paths: bool = False, ref_index: Mapping[int, int] | None = None
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
      with_paths: also record the path of each leaf (``flat.paths``).
      ref_index: ``{id(obj): index}`` of objects already known to the
        caller; they are emitted as references to that index instead of being
        walked (transforms use this to map returned inputs back).
    """
    f = _Flattener(ref_index, with_paths)
    tree = f.visit(node, ())
    return FlatGraph(GraphDef(tree, len(f.leaves), len(f.ids)), f.leaves, f.nodes, f.paths)


class _Unflattener:
    __slots__ = ("leaves", "pos", "objs", "copy")

    def __init__(self, leaves, index_ref, copy):
        self.leaves = leaves
        self.pos = 0
        self.objs = {} if index_ref is None else _IndexView(index_ref)
        self.copy = copy

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
            return v
        if tag == _REF:
            return self.objs[d[1]]
        if tag == _NODE:
            cls, layout, children = d[1], d[2], d[3]
            obj = new_node(cls, layout, ())
            self.objs[len(self.objs)] = obj
            od = obj.__dict__
            for k, c in zip(layout.keys, children):
                od[k] = self.build(c)
            # attribute order as in the original object: data keys were sorted
            return obj
        if tag == _LIST:
            items = [self.build(c) for c in d[2]]
            if d[1] is List:
                out = List.__new__(List)
                list.extend(out, items)
                return out
            return items
        if tag == _TUPLE:
            return tuple(self.build(c) for c in d[2])
        if tag == _DICT:
            t = d[1]
            if t is dict:
                return {k: self.build(c) for k, c in zip(d[2], d[3])}
            out = t.__new__(t)
            for k, c in zip(d[2], d[3]):
                dict.__setitem__(out, k, self.build(c))
            return out
        if tag == _LEAF:
            value = self.leaves[self.pos]
            self.pos += 1
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
    leaves: list,
    *,
    index_ref: list | Mapping[int, Any] | None = None,
    copy_variables: bool = False,
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
    Variable of the recorded kind, mode and metadata is made around it).

    Args:
      index_ref: objects that references ``(_REF, i)`` below
        ``len(index_ref)`` resolve to (the caller's objects, as numbered by
        the ``flatten`` that produced them).
    """
    if len(leaves) != graphdef.num_leaves:
        raise StructureError(
            f"unflatten: the GraphDef has {graphdef.num_leaves} leaves, got {len(leaves)}."
        )
    u = _Unflattener(leaves, index_ref, copy_variables)
    return u.build(graphdef.tree)


class FlattenCache:
    """Remembers :func:`flatten` of the last arguments while nothing changed.

    Example::

        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        cache = nnx.FlattenCache()            # one per call site (a transform keeps one)
        flat = cache.flatten((model, opt))    # walks the graphs
        cache.flatten((model, opt)) is flat   # True: same objects, no structural change
        model.kernel[...] = 0                 # values may change: leaves are Variables
        cache.flatten((model, opt)) is flat   # still True
        model.extra = nnx.Param(jnp.ones(1))  # a structural change moves graph_epoch()
        cache.flatten((model, opt)) is flat   # False: flattened again

    ``cache.flatten(args)`` returns the previous :class:`FlatGraph` when
    ``args`` holds the same objects as last time and nothing reachable from
    them changed structure since; otherwise it flattens again. Changes to
    nnx objects move :func:`graph_epoch` (one integer comparison). What the
    epoch cannot see is re-checked on every hit, at a cost proportional to its
    size only: the plain lists, dicts and other pytree nodes reached (compared
    item by item, by identity: ``c["m"] = other_module`` is seen) and static
    values of Pytrees that can change in place (``m.cfg["scale"] = 3.0``). An
    array replaced in a plain container (``c["x"] = 2 * x``) does not cost a
    re-flatten: the cached FlatGraph's leaves list is updated in place. A graph
    of modules only (the common case) has nothing to re-check.
    Leaves are Variables, so their current values are read by the caller at
    each use.
    """

    __slots__ = ("_refs", "_epoch", "_flat", "_watch")

    def __init__(self):
        self._refs: tuple = ()
        self._epoch = -1
        self._flat: FlatGraph | None = None
        self._watch: _Watch | None = None

    def flatten(self, nodes: tuple) -> FlatGraph:
        if self._epoch == _epoch._counter[0] and len(nodes) == len(self._refs):
            for r, n in zip(self._refs, nodes):
                if r() is not n:
                    break
            else:
                w = self._watch
                if w is None or w.still_valid(self._flat.leaves):  # type: ignore[union-attr]
                    return self._flat  # type: ignore[return-value]
        watch = _Watch()
        f = _Flattener(None, False, watch=watch)
        tree = f.visit(nodes, ())
        flat = FlatGraph(GraphDef(tree, len(f.leaves), len(f.ids)), f.leaves, f.nodes, None)
        self._refs = tuple(_weak(n) for n in nodes)
        self._epoch = _epoch._counter[0]
        self._flat = flat
        self._watch = watch if (watch.items or watch.statics) else None
        return flat


class _Watch:
    """What the structure epoch does not see, recorded during one flattening.

    ``items``: per untracked container reached (a plain list or dict, a State,
    another registered pytree node), ``(container, keys, children, arrays)``:
    the children as they were (by identity) and, for raw array children, their
    leaf index (``arrays``: position -> leaf index), so that a replaced array
    updates the cached leaves instead of forcing a re-flatten. ``statics``:
    the mutable static values of the Pytrees reached.
    """

    __slots__ = ("items", "statics")

    def __init__(self):
        self.items: list = []
        self.statics: list = []

    def still_valid(self, leaves: list) -> bool:
        for st in self.statics:
            if st.stale():
                return False
        moved = None
        for x, keys, kids, arrays in self.items:
            if keys is None:  # a plain list
                if len(x) != len(kids):
                    return False
                now = x
            elif type(keys) is tuple:  # a dict or State
                if len(x) != len(keys):
                    return False
                try:
                    now = [x[k] for k in keys]
                except KeyError:
                    return False
            else:  # another pytree node: its children and treedef
                try:
                    now, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda y, x=x: y is not x)
                except Exception:
                    return False
                if treedef != keys or len(now) != len(kids):
                    return False
            for i, (a, b) in enumerate(zip(now, kids)):
                if a is not b:
                    j = None if arrays is None else arrays.get(i)
                    if j is None or not isinstance(a, _ARRAY_TYPES):
                        return False
                    if moved is None:
                        moved = []
                    moved.append((kids, i, j, a))
        if moved:
            for kids, i, j, a in moved:
                kids[i] = a
                leaves[j] = a
        return True


class _Strong:
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __call__(self):
        return self.obj


def _weak(obj):
    try:
        return weakref.ref(obj)
    except TypeError:
        return _Strong(obj)


def graph_epoch() -> int:
    """The structure epoch: it changes whenever any object graph may have changed shape.

    Example::

        model = nnx.Sequential(nnx.Linear(2, 2, rngs=rngs))
        layer = nnx.Linear(2, 2, rngs=rngs)
        e = nnx.graph_epoch()
        model.layers[0].kernel[...] += 1  # a value write: the epoch stays
        assert nnx.graph_epoch() == e
        model.layers.append(layer)    # attribute set/delete, List/Dict mutation,
        assert nnx.graph_epoch() != e # Variable metadata write: the epoch moves

    A cached :class:`FlatGraph` (see :class:`FlattenCache`) is valid while the
    epoch is the one it was made at.
    """
    return _epoch._counter[0]


# -- the functional API ---------------------------------------------------------
def _group(flat: FlatGraph, filters: tuple, exhaustive: bool) -> list[list]:
    preds = filters_to_predicates(filters)
    groups: list[list] = [[] for _ in preds]
    for path, leaf in zip(flat.paths, flat.leaves):
        for i, p in enumerate(preds):
            if p(path, leaf):
                groups[i].append((path, leaf))
                break
        else:
            if exhaustive:
                raise FilterError(
                    f"No filter matched the {type(leaf).__name__} at path "
                    f"{_keystr(path)!r}. Filters passed to split must be exhaustive: add "
                    f"`...` as the last filter to collect the rest. Filters: {filters!r}"
                )
    return groups


@overload
def split(node: Node) -> tuple[GraphDef[Node], State]: ...
@overload
def split(node: Node, first: Any, /) -> tuple[GraphDef[Node], State]: ...
@overload
def split(
    node: Node, first: Any, second: Any, /, *filters: Any
) -> tuple[GraphDef[Node], State, State, *tuple[State, ...]]: ...
def split(node: Any, *filters) -> tuple:
    """Split an object graph into a :class:`GraphDef` and one :class:`State` per filter.

    Example::

        graphdef, state = nnx.split(model)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        model2 = nnx.merge(graphdef, params, rest)

    The States hold the graph's own Variable objects (no copies), each once
    even when shared. Filters must be exhaustive.
    """
    flat = flatten(node, with_paths=True)
    if not filters:
        return flat.graphdef, State.from_flat(zip(flat.paths, flat.leaves))
    groups = _group(flat, filters, exhaustive=True)
    return (flat.graphdef, *(State.from_flat(g) for g in groups))


def _flat_items(states) -> dict:
    lookup: dict = {}
    for s in states:
        if isinstance(s, State):
            lookup.update(s.flat_state())
        elif isinstance(s, Mapping):
            lookup.update(State(s).flat_state())
        else:
            raise TypeError(f"Expected a State or a mapping, got {type(s).__name__}.")
    return lookup


def merge(graphdef: GraphDef[Node], *states, copy: bool = False) -> Node:
    """Build an object graph from a GraphDef and States (inverse of :func:`split`).

    Shared Variables and modules are shared again. With ``copy=True`` the new
    graph gets copies of the States' Variables instead of the same objects.
    """
    lookup = _flat_items(states)
    paths = graphdef.paths
    leaves = []
    for p in paths:
        try:
            leaves.append(lookup.pop(p))
        except KeyError:
            raise StructureError(
                f"merge: no State provides a value for {_keystr(p)!r}, which the "
                f"GraphDef needs. Pass every State that split returned."
            ) from None
    if lookup:
        extra = ", ".join(repr(_keystr(p)) for p in list(lookup)[:5])
        raise StructureError(f"merge: the States have paths the GraphDef does not: {extra}.")
    return unflatten(graphdef, leaves, copy_variables=copy)


def update(node: Any, *states) -> None:
    """Write States into an existing graph, in place (Variables keep their identity).

    Example::

        @jax.jit
        def forward(graphdef, state, x):
            model = nnx.merge(graphdef, state)
            y = model(x)                          # BatchNorm updates its statistics
            return y, nnx.state(model)

        graphdef, state = nnx.split(model)
        y, state = forward(graphdef, state, x)
        nnx.update(model, state)                 # model's Variables now hold the new values

    All or nothing: every path, every shape and every target's mutability is
    checked before the first write, so an error leaves ``node`` exactly as it
    was. A path the graph lacks (a State of another model, an extra key) or a
    value whose shape differs from the one it replaces is a ``StructureError``
    naming the path (and both shapes); change a shape by assigning a new
    Variable instead (``model.linear.kernel = nnx.Param(new_value)``). The
    dtype may change: ``nnx.update(model, jax.tree.map(lambda x:
    x.astype(jnp.bfloat16), state))`` casts a model, as in Flax. Raw array
    attributes (and arrays in a Pytree's lists and dicts) are written back by
    assignment.
    """
    flat = flatten(node, with_paths=True)
    by_path = dict(zip(flat.paths, flat.leaves))
    plan: list[tuple[tuple, Any, Any]] = []
    for path, value in _flat_items(states).items():
        target = by_path.get(path, _MISSING)
        if target is _MISSING:
            raise StructureError(
                f"update: {type(node).__name__} has no Variable or array at "
                f"{_keystr(path)!r}. The State comes from a graph of another structure; "
                "nothing was written."
            )
        if isinstance(target, Variable):
            if value is target:
                continue
            if not target._aux.mutable:
                target.set_value(value)  # raises ImmutableVariableError, before any write
            new = value.get_value() if isinstance(value, Variable) else value
            _check_shapes(target.get_value(), new, path, type(target).__name__)
        else:
            new = value.get_value() if isinstance(value, Variable) else value
            _check_shapes(target, new, path, "array")
        plan.append((path, target, new))
    done: list[tuple[tuple, Any, Any]] = []
    try:
        for path, target, new in plan:
            if isinstance(target, Variable):
                old = target._raw if target._aux.mode == PLAIN else target.get_value()
                _write_variable(target, new, path)
            else:
                old = target
                _set_path(node, path, new)
            done.append((path, target, old))
    except BaseException:
        for path, target, old in reversed(done):  # undo: nothing half-written
            if isinstance(target, Variable):
                if target._aux.mode == PLAIN:
                    target.set_raw_value(old)
                else:
                    target.set_value(old)
            else:
                _set_path(node, path, old)
        raise


_MISSING = object()


def _shape_of(x):
    shape = getattr(x, "shape", None)
    return None if shape is None else tuple(shape)


def _check_shapes(old, new, path, what: str) -> None:
    """A StructureError naming ``path`` and both shapes where an array would change shape."""
    a, b = _shape_of(old), _shape_of(new)
    if a is not None and b is not None:
        if a != b:
            _shape_error(path, what, b, a)
        return
    old_keyed, old_tree = jax.tree_util.tree_flatten_with_path(old)
    new_leaves, new_tree = jax.tree.flatten(new)
    if old_tree != new_tree:
        return  # a value of another structure (a sow accumulator) is written as given
    for (kp, x), y in zip(old_keyed, new_leaves):
        a, b = _shape_of(x), _shape_of(y)
        if a is not None and b is not None and a != b:
            _shape_error((*path, *(_key_name(k) for k in kp)), what, b, a)


def _shape_error(path, what, new_shape, old_shape):
    raise StructureError(
        f"update: the value for {_keystr(path)!r} has shape {new_shape}, but the {what} "
        f"there holds {old_shape}. nnx.update writes values into the existing Variables; "
        "to change a shape (model surgery), assign a new Variable instead, e.g. "
        "`model.layer.kernel = nnx.Param(new_value)`. Nothing was written."
    )


def _write_variable(target: Variable, value, path) -> None:
    if isinstance(value, Variable):  # kinds may differ after vars_as; the value is what counts
        if value is target:
            return
        value = value.get_value()
    if target._aux.mode == PLAIN:
        if not target._aux.mutable:
            target.set_value(value)  # raises with the standard message
        target.set_raw_value(value)
    elif target._aux.mode == REF and _dtypes(target.get_raw_value()) != _dtypes(value):
        target.set_raw_value(_to_ref(value))  # a jax.Ref has a fixed dtype: a new one
    else:
        target.set_value(value)


def _dtypes(x) -> list:
    return [getattr(y, "dtype", None) for y in jax.tree.leaves(x, is_leaf=_is_ref)]


def _is_ref(x) -> bool:
    return isinstance(x, jax.Ref)


def _set_path(node, path, value) -> None:
    _replace_at(node, path, value)


def _child(container, k):
    if isinstance(container, dict) or not isinstance(k, str):
        return container[k]
    return getattr(container, k)  # Pytree, namedtuple, dataclass attributes


def _replace_at(container, path, value):
    """``container`` with ``value`` at ``path``: written in place, except that tuples
    (immutable) on the way are rebuilt and assigned to their parent."""
    k = path[0]
    old = _child(container, k)
    new = value if len(path) == 1 else _replace_at(old, path[1:], value)
    if new is old:
        return container
    if isinstance(container, tuple):
        items = list(container)
        if isinstance(k, str):  # a namedtuple field
            k = cast(Any, container)._fields.index(k)
        items[k] = new
        return type(container)(*items) if hasattr(container, "_fields") else type(container)(items)
    if isinstance(container, Pytree) or (isinstance(k, str) and not isinstance(container, dict)):
        setattr(container, k, new)
    else:
        container[k] = new
    return container


@overload
def state(node: Any) -> State: ...
@overload
def state(node: Any, first: Any, /) -> State: ...
@overload
def state(node: Any, first: Any, second: Any, /, *filters: Any) -> tuple[State, ...]: ...
def state(node: Any, *filters) -> State | tuple[State, ...]:
    """The State of ``node`` (all of it, or the part each filter matches).

    Unlike :func:`split`, the filters need not be exhaustive::

        params = nnx.state(model, nnx.Param)
    """
    flat = flatten(node, with_paths=True)
    if not filters:
        return State.from_flat(zip(flat.paths, flat.leaves))
    groups = _group(flat, filters, exhaustive=False)
    states = tuple(State.from_flat(g) for g in groups)
    return states[0] if len(states) == 1 else states


variables = state


def graphdef(node: Node) -> GraphDef[Node]:
    """The :class:`GraphDef` of ``node``."""
    return flatten(node).graphdef


def clone(node: Node) -> Node:
    """A deep copy of an object graph: new objects, new Variables, same sharing."""
    flat = flatten(node)
    return unflatten(flat.graphdef, flat.leaves, copy_variables=True)


@overload
def pop(node: Any, first: Any, /) -> State: ...
@overload
def pop(node: Any, first: Any, second: Any, /, *filters: Any) -> tuple[State, ...]: ...
def pop(node: Any, *filters) -> State | tuple[State, ...]:
    """Remove the Variables each filter matches from ``node`` and return them.

    Example::

        model(x)                                   # sows Intermediates
        intermediates = nnx.pop(model, nnx.Intermediate)
    """
    flat = flatten(node, with_paths=True)
    groups = _group(flat, filters, exhaustive=False)
    # Later siblings first, so that removing an item of a list does not shift the
    # index of another one still to be removed.
    order = {path: i for i, path in enumerate(flat.paths)}
    doomed = sorted((path for g in groups for path, _ in g), key=order.__getitem__)
    for path in doomed:  # check all before removing any: nothing half-popped
        _check_removable(node, path)
    for path in reversed(doomed):
        _remove_at(node, path)
    states = tuple(State.from_flat(g) for g in groups)
    return states[0] if len(states) == 1 else states


def _check_removable(node, path) -> None:
    parent = node
    for k in path[:-1]:
        parent = _child(parent, k)
    if parent is node and isinstance(node, tuple):
        raise StructureError(
            f"nnx.pop: the Variable at {_keystr(path)} is an item of the tuple passed as "
            "the root, which cannot lose an item in place. Pass the objects that hold the "
            "Variables (or a list of them) instead."
        )
    if isinstance(parent, tuple) and hasattr(parent, "_fields"):
        raise StructureError(
            f"nnx.pop: the Variable at {_keystr(path)} is a field of the namedtuple "
            f"{type(parent).__name__}, which cannot be removed. Hold it in a dict, a list "
            "or a Module attribute to pop it."
        )


def _remove_at(container, path):
    """``container`` without the item at ``path``: removed in place, except that tuples
    (immutable) on the way are rebuilt without it and assigned to their parent."""
    k = path[0]
    if len(path) > 1:
        old = _child(container, k)
        new = _remove_at(old, path[1:])
        return container if new is old else _replace_at(container, (k,), new)
    if isinstance(container, tuple):  # not a namedtuple: _check_removable
        return type(container)(x for i, x in enumerate(container) if i != k)
    if isinstance(container, Pytree) or (isinstance(k, str) and not isinstance(container, dict)):
        delattr(container, k)
    else:
        del container[k]
    return container


def _children(x) -> list[tuple[Any, Any]]:
    """The ``(key, child)`` pairs of a node, as a list (a snapshot: callers may mutate)."""
    if isinstance(x, Pytree):
        d = x.__dict__
        return [(k, d[k]) for k in get_layout(x).keys]
    if isinstance(x, (list, tuple)):
        return list(enumerate(x))
    if isinstance(x, dict):
        return [(k, x[k]) for k in sorted(x, key=_sort_key)]
    return []


def iter_graph(node: Any) -> Iterator[tuple[tuple, Any]]:
    """Yield ``(path, value)`` for every Pytree, Variable and array in the graph, once each.

    Children come before their parent; the root comes last with path ``()``.
    The walk is a snapshot taken when iteration starts: the loop body may
    change the graph (delete or replace attributes, append to lists) and the
    iteration still yields the graph as it was, never a ``KeyError`` or a mix
    of old and new.
    """
    seen: set[int] = set()
    out: list[tuple[tuple, Any]] = []

    def walk(x, path):
        if isinstance(x, (Variable, Pytree)):
            if id(x) in seen:
                return
            seen.add(id(x))
        if isinstance(x, Variable):
            out.append((path, x))
            return
        for k, c in _children(x):
            walk(c, (*path, k))
        if isinstance(x, Pytree) or isinstance(x, _ARRAY_TYPES):
            out.append((path, x))

    walk(node, ())
    return iter(out)


def iter_modules(node: Any) -> Iterator[tuple[tuple, Any]]:
    """Yield ``(path, module)`` for every Pytree in the graph, the root last."""
    for path, x in iter_graph(node):
        if isinstance(x, Pytree):
            yield path, x


def find_duplicates(node: Any) -> list[list[tuple]]:
    """Groups of paths that reach the same Variable or Pytree.

    Example::

        class Tied(nnx.Pytree):
            def __init__(self):
                self.a = nnx.Variable(jnp.array(0))
                self.b = self.a
        nnx.find_duplicates(Tied())   # [[('a',), ('b',)]]

    A shared subtree is reported once, at its root.
    """
    paths: dict[int, list] = {}
    order: list[int] = []

    def walk(x, path):
        if isinstance(x, (Variable, Pytree)):
            if id(x) in paths:
                paths[id(x)].append(path)
                return
            paths[id(x)] = [path]
            order.append(id(x))
        for k, c in _children(x):
            walk(c, (*path, k))

    walk(node, ())
    return [paths[i] for i in order if len(paths[i]) > 1]


class GraphTree:
    """A graph as a pytree: its GraphDef (static) and its leaves (children).

    ``to_tree`` makes one, ``from_tree`` turns it back into objects with the
    original sharing. It lets any pytree-only API (``jax.jit``, ``jax.lax.scan``,
    checkpoint libraries) carry object graphs with shared references.
    """

    __slots__ = ("graphdef", "leaves")

    def __init__(self, graphdef: GraphDef, leaves: list):
        self.graphdef = graphdef
        self.leaves = leaves

    def __repr__(self):
        return f"GraphTree(num_leaves={len(self.leaves)})"


jax.tree_util.register_pytree_node(
    GraphTree,
    lambda t: (t.leaves, t.graphdef),
    lambda g, leaves: GraphTree(g, list(leaves)),
)


def to_tree(node: Any) -> GraphTree:
    """Turn an object graph (with sharing) into a :class:`GraphTree` pytree.

    Example::

        shared_model = nnx.Dict(a=model.linear1, b=model.linear1)   # one Linear, two names
        tree = nnx.to_tree(shared_model)
        @jax.jit
        def f(tree):
            inner = nnx.from_tree(tree)   # sharing restored inside
            return inner["a"](x)

        f(tree)
    """
    flat = flatten(node)
    return GraphTree(flat.graphdef, flat.leaves)


def from_tree(tree: GraphTree) -> Any:
    """Inverse of :func:`to_tree`."""
    return unflatten(tree.graphdef, list(tree.leaves))


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


_ = REF  # re-exported mode constants live in _variables


# -- the JAX pytree view of Pytrees ------------------------------------------------
class PathKey:
    """A JAX key for a whole path inside an object graph (``.layers[0].kernel``)."""

    __slots__ = ("path",)

    def __init__(self, path: tuple):
        self.path = path

    def __str__(self) -> str:
        return "".join(f".{k}" if isinstance(k, str) else f"[{k!r}]" for k in self.path)

    __repr__ = __str__

    def __hash__(self):
        return hash(self.path)

    def __eq__(self, other):
        return isinstance(other, PathKey) and other.path == self.path


def _pytree_flatten(obj) -> FlatGraph:
    cached = get_flat_cache_raw(obj)
    epoch = _epoch._counter[0]
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


_pytree._hooks.update(flatten=_pytree_flatten, keys=_pytree_keys, unflatten=_pytree_unflatten)
