"""Graphs as ordinary JAX pytrees, for pytree-only APIs (``jax.jit``, ``jax.lax.scan``,
checkpoint libraries): Flax NNX's ``to_tree`` / ``from_tree`` with one
:class:`NodeStates` per graph node, and the whole-graph :class:`GraphTree`.

``to_tree`` walks a pytree whose leaves may be graph nodes (Pytrees, Variables,
``nnx.List``, ``nnx.Dict``) and replaces each by a ``NodeStates`` of its split;
the splits share one numbering (:class:`TreeSplitContext`), so an object reachable
from two leaves is a reference in the second, and ``from_tree`` (one
:class:`TreeMergeContext`) rebuilds it as one object.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

import jax

from nnx.core._flatten import flatten, unflatten
from nnx.core._graphdef import GraphDef
from nnx.core._pytree import Dict, List, Pytree
from nnx.core._update_context import (
    ContextGraphDef,
    TreeMergeContext,
    TreeSplitContext,
    UpdateContext,
    current_update_context,
    move_into_outer,
)
from nnx.core._variables import Variable

S = TypeVar("S")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class GraphTree:
    """A whole graph as a pytree: its GraphDef (static) and its leaves (children).

    ``GraphTree.of(node)`` makes one and ``tree.build()`` turns it back into
    objects with the original sharing; :func:`from_tree` accepts one too.
    (:func:`to_tree` gives Flax's per-node :class:`NodeStates` instead.)
    """

    __slots__ = ("graphdef", "leaves")

    def __init__(self, graphdef: GraphDef, leaves: list):
        self.graphdef = graphdef
        self.leaves = leaves

    @classmethod
    def of(cls, node: Any) -> GraphTree:
        """The GraphTree of ``node``.

        Args:
            node: any object graph or pytree of them.
        """
        flat = flatten(node)
        return cls(flat.graphdef, flat.leaves)

    def build(self) -> Any:
        """The object graph this GraphTree describes (new objects, same sharing)."""
        return unflatten(self.graphdef, list(self.leaves))

    def __repr__(self):
        return f"GraphTree(num_leaves={len(self.leaves)})"


jax.tree_util.register_pytree_node(
    GraphTree,
    lambda t: (t.leaves, t.graphdef),
    lambda g, leaves: GraphTree(g, list(leaves)),
)


class NodeStates(Generic[S]):
    """A GraphDef (optional) with a tuple of States: the pytree Flax's transforms pass
    for a graph node.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import nnx
    >>> m = nnx.Dict(w=nnx.Param(jnp.ones(2)))
    >>> ns = nnx.NodeStates.from_split(*nnx.split(m))
    >>> jax.tree.leaves(ns)[0].tolist()
    [1.0, 1.0]
    >>> nnx.merge(ns.graphdef, *ns.states)["w"].get_value().tolist()
    [1.0, 1.0]

    The States are the pytree children; the GraphDef and ``metadata`` are
    static. ``from_split(graphdef, state, *states)`` is what ``nnx.split``
    gives, ``from_states(state, *states)`` has no GraphDef, and
    ``from_prefixes(prefixes)`` holds prefix values (axes) in place of States.

    Args:
        _graphdef: the GraphDef, or None.
        states: the States (or prefixes).
        metadata: anything static the transform attaches.
    """

    __slots__ = ("_graphdef", "metadata", "states")

    def __init__(self, _graphdef: GraphDef | None, states: tuple, metadata: Any = None):
        self._graphdef = _graphdef
        self.states = tuple(states)
        self.metadata = metadata

    @property
    def graphdef(self) -> GraphDef:
        """The GraphDef; a ``ValueError`` when this NodeStates has none."""
        if self._graphdef is None:
            raise ValueError(
                "NodeStates.graphdef: this NodeStates has no GraphDef (it was made by "
                "from_states or from_prefixes); build it with NodeStates.from_split."
            )
        return self._graphdef

    @property
    def state(self) -> Any:
        """The only State; a ``ValueError`` when there are several (use ``states``)."""
        if len(self.states) != 1:
            raise ValueError(
                f"NodeStates.state: expected exactly one State, this NodeStates has "
                f"{len(self.states)}; read .states instead."
            )
        return self.states[0]

    @classmethod
    def from_split(
        cls, graphdef: GraphDef, state: Any, /, *states: Any, metadata: Any = None
    ) -> NodeStates:
        """A NodeStates of what ``nnx.split(node, *filters)`` returns.

        Args:
            graphdef: the GraphDef.
            state: the first State.
            *states: the other States.
            metadata: static data to carry along.
        """
        return cls(graphdef, (state, *states), metadata)

    @classmethod
    def from_states(cls, state: Any, *states: Any) -> NodeStates:
        """A NodeStates of States alone (no GraphDef).

        Args:
            state: the first State.
            *states: the other States.
        """
        return cls(None, (state, *states), None)

    @classmethod
    def from_prefixes(cls, prefixes: Iterable[Any], /, *, metadata: Any = None) -> NodeStates:
        """A NodeStates holding one prefix (an axis, a sharding) per State.

        Args:
            prefixes: the prefixes, in the order of the States.
            metadata: static data to carry along.
        """
        return cls(None, tuple(prefixes), metadata)

    def __repr__(self) -> str:
        return (
            f"NodeStates(graphdef={self._graphdef!r}, states={len(self.states)}, "
            f"metadata={self.metadata!r})"
        )


def _flatten_with_keys(ns: NodeStates):
    children = [(jax.tree_util.GetAttrKey("states"), ns.states)]
    return children, (ns._graphdef, ns.metadata)


def _unflatten(aux, children) -> NodeStates:
    graphdef, metadata = aux
    (states,) = children
    return NodeStates(graphdef, tuple(states), metadata)


jax.tree_util.register_pytree_with_keys(
    NodeStates,
    _flatten_with_keys,
    _unflatten,
    flatten_func=lambda ns: ([ns.states], (ns._graphdef, ns.metadata)),
)


def _is_graph_leaf(x) -> bool:
    # what to_tree replaces by a NodeStates: objects with identity
    return isinstance(x, (Pytree, Variable, List, Dict))


def default_split_fn(ctx: TreeSplitContext, path: tuple, prefix: Any, leaf: Any) -> NodeStates:  # noqa: ARG001
    """What :func:`to_tree` puts in place of a graph node: ``NodeStates.from_split(*ctx.split(leaf))``.

    Args:
        ctx: the context of this ``to_tree`` call.
        path: the JAX key path of the leaf.
        prefix: the leaf's prefix (``MISSING`` without one).
        leaf: the graph node.
    """
    return NodeStates.from_split(*ctx.split(leaf))


def merge_tree_node(ctx: TreeMergeContext, path: tuple, prefix: Any, leaf: Any) -> Any:  # noqa: ARG001
    """What :func:`from_tree` puts in place of a :class:`NodeStates`: the merged node.

    Args:
        ctx: the context of this ``from_tree`` call.
        path: the JAX key path of the leaf.
        prefix: the leaf's prefix (``MISSING`` without one).
        leaf: the NodeStates.
    """
    if not isinstance(leaf, NodeStates):
        raise TypeError(
            f"nnx.from_tree: expected a NodeStates at {jax.tree_util.keystr(path)}, got "
            f"{type(leaf).__name__}."
        )
    return ctx.merge(leaf.graphdef, *leaf.states)


def is_tree_node(x: Any) -> bool:
    """True for a :class:`NodeStates` (a graph node in :func:`to_tree`'s form).

    Args:
        x: any value.
    """
    return isinstance(x, NodeStates)


def _leaf_prefixes(prefix, tree, is_leaf) -> list:
    """``prefix`` broadcast to the leaves of ``tree`` (``MISSING``/None: None for each)."""
    n = len(jax.tree_util.tree_leaves(tree, is_leaf=is_leaf))
    if prefix is MISSING or prefix is None:
        return [prefix] * n
    out: list = []

    def spread(p, sub):
        out.extend([p] * len(jax.tree_util.tree_leaves(sub, is_leaf=is_leaf)))

    jax.tree_util.tree_map(spread, prefix, tree, is_leaf=lambda x: x is None or is_leaf(x))
    return out


def _check_aliasing(leaves: list, prefixes: list, keypaths: list) -> None:
    seen: dict[int, tuple] = {}
    for leaf, p, kp in zip(leaves, prefixes, keypaths):
        if not _is_graph_leaf(leaf):
            continue
        for obj in flatten(leaf).nodes:
            first = seen.setdefault(id(obj), (p, kp))
            if first[0] != p:
                raise ValueError(
                    f"nnx.to_tree: the {type(obj).__name__} reached from "
                    f"{jax.tree_util.keystr(first[1]) or '<root>'} (prefix {first[0]!r}) is "
                    f"also reached from {jax.tree_util.keystr(kp) or '<root>'} with prefix "
                    f"{p!r}. An object shared between leaves needs one prefix: give both "
                    "the same prefix, or pass separate objects."
                )


def to_tree(
    tree: Any,
    /,
    *,
    prefix: Any = MISSING,
    split_fn: Callable[[TreeSplitContext, tuple, Any, Any], Any] = default_split_fn,
    map_non_graph_nodes: bool = False,
    ctxtag: Hashable | None = None,
    check_aliasing: bool = True,
) -> Any:
    """``tree`` with each graph node replaced by a :class:`NodeStates` of its split (Flax's form).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import nnx
    >>> shared = nnx.Dict(w=nnx.Param(jnp.ones(2)))
    >>> tree = nnx.to_tree((shared, {"again": shared, "x": jnp.zeros(1)}))
    >>> first, second = tree[0], tree[1].get("again")
    >>> type(first).__name__, len(first.states[0]), len(second.states[0])
    ('NodeStates', 1, 0)
    >>> @jax.jit
    ... def triple(tree):
    ...     a, rest = nnx.from_tree(tree)   # one Dict inside, reachable twice
    ...     again = rest.get("again")
    ...     again.get("w").value = a.get("w").value * 3
    ...     return nnx.to_tree((a, rest))
    >>> a, rest = nnx.from_tree(triple(tree))
    >>> a is rest.get("again"), float(a.get("w").value.sum())
    (True, 6.0)

    The leaves of ``tree`` that are graph nodes (Pytrees, Variables, ``nnx.List``,
    ``nnx.Dict``) become ``NodeStates`` (a GraphDef, static, and the States, the
    pytree children); other leaves stay as they are. All splits share one
    numbering, so an object reachable from several leaves is split once and is
    one object again after :func:`from_tree`. The result is an ordinary pytree:
    ``jax.jit``, ``jax.lax.scan`` or a checkpoint library can carry it.

    Args:
        tree: a pytree whose leaves may be graph nodes.
        prefix: a prefix of ``tree`` (e.g. vmap's axes) broadcast to its leaves and
            handed to ``split_fn``; ``MISSING`` or None for none.
        split_fn: ``(ctx, keypath, prefix, leaf) -> replacement`` for each graph
            node (default: ``NodeStates.from_split(*ctx.split(leaf))``).
        map_non_graph_nodes: also call ``split_fn`` on the other leaves.
        ctxtag: the tag of an active :func:`nnx.update_context`: this call is its
            split (1) outside the transform (the graph nodes are recorded) or (3)
            inside it, after :func:`from_tree` with ``is_inner=True`` (each
            NodeStates' GraphDef carries the outer object each node stands for, so
            ``from_tree(..., is_inner=False)`` outside updates those objects in place).
        check_aliasing: with a prefix, an object shared between leaves with
            different prefixes is a ``ValueError``.

    Returns:
        The pytree with NodeStates in place of the graph nodes.
    """
    uctx = current_update_context(ctxtag) if ctxtag is not None else None
    keyed, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_graph_leaf)
    keypaths = [kp for kp, _ in keyed]
    leaves = [x for _, x in keyed]
    prefixes = _leaf_prefixes(prefix, tree, _is_graph_leaf)
    if check_aliasing and not (prefix is MISSING or prefix is None):
        _check_aliasing(leaves, prefixes, keypaths)
    ctx = TreeSplitContext()
    out = [
        split_fn(ctx, kp, p, x) if map_non_graph_nodes or _is_graph_leaf(x) else x
        for kp, p, x in zip(keypaths, prefixes, leaves)
    ]
    if uctx is not None:
        _record_split(uctx, leaves, out)
    return jax.tree_util.tree_unflatten(treedef, out)


def _record_split(uctx: UpdateContext, leaves: list, out: list) -> None:
    # to_tree under an update context: the graph leaves are the split calls, in order
    roots = [i for i, x in enumerate(leaves) if _is_graph_leaf(x)]
    if not uctx._merged_inner:  # (1) outside: which object sits at which path
        uctx._outer_split([leaves[i] for i in roots])
        return
    for i in roots:  # (3) inside: each node's outer object rides in the GraphDef
        ns = out[i]
        if isinstance(ns, NodeStates) and ns._graphdef is not None:
            graphdef = ContextGraphDef(ns._graphdef, uctx._inner_split(leaves[i]))
            out[i] = NodeStates(graphdef, ns.states, ns.metadata)
    uctx._end_inner_split()


def from_tree(
    tree: Any,
    /,
    *,
    prefix: Any = MISSING,
    merge_fn: Callable[[TreeMergeContext, tuple, Any, Any], Any] = merge_tree_node,
    is_node_leaf: Callable[[Any], bool] = is_tree_node,
    is_leaf: Callable[[Any], bool] = is_tree_node,
    map_non_graph_nodes: bool = False,
    is_inner: bool | None = None,
    ctxtag: Hashable | None = None,
) -> Any:
    """Inverse of :func:`to_tree`: each :class:`NodeStates` of ``tree`` merged back into objects.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> m = nnx.Dict(w=nnx.Param(jnp.ones(2)))
    >>> (back, again) = nnx.from_tree(nnx.to_tree((m, m)))
    >>> back is again, back is m, back["w"] is m["w"]
    (True, False, True)

    The NodeStates are merged in order with one :class:`TreeMergeContext`, so the
    sharing :func:`to_tree` recorded between leaves comes back. The new objects
    hold the States' Variables (as :func:`nnx.merge` does). A :class:`GraphTree`
    is accepted too (its graph is rebuilt).

    Args:
        tree: a pytree holding NodeStates (what ``to_tree`` returned).
        prefix: a prefix of ``tree`` broadcast to its leaves and handed to ``merge_fn``.
        merge_fn: ``(ctx, keypath, prefix, leaf) -> node`` for each NodeStates
            (default: ``ctx.merge(leaf.graphdef, *leaf.states)``).
        is_node_leaf: which leaves ``merge_fn`` is called on.
        is_leaf: where the walk of ``tree`` stops.
        map_non_graph_nodes: also call ``merge_fn`` on the other leaves.
        is_inner: with ``ctxtag``: True inside the transform (merge (2): the new
            objects are recorded as standing for the outer ones), False outside
            (merge (4): every node that stood for an outer object is moved into it,
            so the caller gets its own objects back, updated).
        ctxtag: the tag of an active :func:`nnx.update_context` (see :func:`to_tree`).

    Returns:
        The pytree with objects in place of the NodeStates.
    """
    uctx = None
    if ctxtag is not None:
        if is_inner is None:
            raise ValueError(
                f"nnx.from_tree(ctxtag={ctxtag!r}): pass is_inner=True inside the transform "
                "(merge 2) or is_inner=False outside it (merge 4)."
            )
        uctx = current_update_context(ctxtag)
    if isinstance(tree, GraphTree):
        return tree.build()
    keyed, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    prefixes = _leaf_prefixes(prefix, tree, is_leaf)
    ctx = TreeMergeContext()
    out = [
        merge_fn(ctx, kp, p, x) if map_non_graph_nodes or is_node_leaf(x) else x
        for (kp, x), p in zip(keyed, prefixes)
    ]
    if uctx is not None:
        nodes = [i for i, (_, x) in enumerate(keyed) if is_node_leaf(x)]
        if is_inner:  # (2): the new objects stand for the outer ones, leaf by leaf
            uctx._inner_merge([out[i] for i in nodes])
        else:  # (4): back into the outer objects
            moved = [i for i in nodes if isinstance(_graphdef_of(keyed[i][1]), ContextGraphDef)]
            roots = [(out[i], dict(_graphdef_of(keyed[i][1]).outer_paths)) for i in moved]
            for i, node in zip(moved, move_into_outer(roots, uctx.outer or {})):
                out[i] = node
    return jax.tree_util.tree_unflatten(treedef, out)


def _graphdef_of(leaf: Any) -> Any:
    return leaf._graphdef if isinstance(leaf, NodeStates) else None
