"""Update contexts: structural updates across a JAX transform you write yourself.

``nnx.update`` writes new *values* into a graph. A transform built on
``nnx.split``/``nnx.merge`` around a plain JAX transform loses everything else
that happened inside: attributes added or removed, submodules replaced, new
cycles. An update context keeps that bookkeeping over four calls (Flax NNX's
protocol and names)::

    (1) split outside --refs--> (2) merge inside
    (4) merge outside <-paths-- (3) split inside

(1) records which object sits at which path of the graphs split; (2) records
which new inner object stands for which outer one; (3) returns, beside the
GraphDef, for each node of the result that stood for an outer object the path
of that object (as static data, so the mapping crosses ``jax.jit`` like the
GraphDef does); (4) builds the result and moves every node that stood for an
outer object back into that object, in place: ``m1 is m3`` and ``m1.a == 1``
after an attribute ``a`` was set inside.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import jax

from nnx.core._errors import StructureError
from nnx.core._filters import group_by_filters
from nnx.core._flatten import _Flattener, _Unflattener, leaves_by_path
from nnx.core._graph import merge, split
from nnx.core._graphdef import GraphDef
from nnx.core._move import move_into
from nnx.core._paths import path_str
from nnx.core._pytree import Dict, List, Pytree
from nnx.core._state import State
from nnx.core._variables import Variable
from nnx.core._walk import iter_graph

F = TypeVar("F", bound=Callable[..., Any])


class _Stacks(threading.local):
    update: dict | None = None  # tag -> [UpdateContext, ...]


_STACKS = _Stacks()


def _nodes(root) -> list[tuple[tuple, Any]]:
    """``(path, node)`` of every object with identity in ``root`` (Pytrees, Variables,
    ``nnx.List``, ``nnx.Dict``), each once, in iter_graph's order."""
    return [(p, x) for p, x in iter_graph(root) if isinstance(x, (Pytree, Variable, List, Dict))]


class ContextGraphDef(GraphDef):
    """The GraphDef of an inner split (3): also the outer path of each node that stood
    for an outer object. Static (hashable, no leaves) like every GraphDef."""

    __slots__ = ("graphdef", "outer_paths")

    def __init__(self, graphdef: GraphDef, outer_paths: tuple):
        super().__init__(graphdef.tree, graphdef.num_leaves, graphdef.num_nodes)
        self.graphdef = graphdef
        self.outer_paths = outer_paths  # ((inner path, (split call, outer path)), ...)
        self._hash = hash((graphdef, outer_paths))

    def __eq__(self, other):
        return (
            type(other) is ContextGraphDef
            and self.graphdef == other.graphdef
            and self.outer_paths == other.outer_paths
        )

    def __hash__(self):
        return self._hash


jax.tree_util.register_static(ContextGraphDef)


class UpdateContext:
    """The bookkeeping of one :func:`update_context` (Flax NNX's ``UpdateContext``).

    Reached with :func:`current_update_context`. :meth:`split` and :meth:`merge`
    follow the four calls themselves (the first split and the last merge
    outside, the two others inside), for code that does not use
    :func:`split_context` / :func:`merge_context`.

    Attributes:
      tag: the tag given to :func:`update_context`.
    """

    def __init__(self, tag: Hashable):
        self.tag = tag
        self.outer: dict | None = None  # (call, path) -> outer object, from (1)
        self.inner: dict | None = None  # id(inner object) -> (call, path), from (2)
        self._inner_objs: list = []  # keeps the inner objects alive while `inner` is read
        self._merged_inner = False

    # -- the four calls ------------------------------------------------------------
    def _outer_split(self, calls: list) -> None:
        self.outer = {(k, p): x for k, root in enumerate(calls) for p, x in _nodes(root)}

    def _inner_merge(self, calls: list) -> None:
        self.inner = {}
        self._inner_objs = list(calls)
        for k, root in enumerate(calls):
            for p, x in _nodes(root):
                if (k, p) in (self.outer or {}):
                    self.inner[id(x)] = (k, p)
        self._merged_inner = True

    def _inner_split(self, node) -> tuple:
        inner = self.inner or {}
        return tuple((p, inner[id(x)]) for p, x in _nodes(node) if id(x) in inner)

    def _end_inner_split(self) -> None:
        self.inner, self._inner_objs = None, []

    def _outer_merge(self, graphdef: GraphDef, states: tuple) -> Any:
        if not isinstance(graphdef, ContextGraphDef):
            return merge(graphdef, *states)
        fresh = merge(graphdef.graphdef, *states)
        return _move_into_outer(fresh, dict(graphdef.outer_paths), self.outer or {})

    def split(self, node: Any, *filters: Any) -> tuple:
        """``nnx.split`` as call (1) outside (no context yet) or (3) inside (after (2)).

        Args:
          node: the object graph to split.
          *filters: as in ``nnx.split``.
        """
        if not self._merged_inner:
            self._outer_split([node])
            return split(node, *filters)
        graphdef, *states = split(node, *filters)
        out = ContextGraphDef(graphdef, self._inner_split(node))
        self._end_inner_split()
        return (out, *states)

    def merge(self, graphdef: GraphDef, state: Any, *states: Any) -> Any:
        """``nnx.merge`` as call (2) inside or (4) outside (after an inner split).

        Args:
          graphdef: from :meth:`split`.
          state: the first State.
          *states: further States.
        """
        if isinstance(graphdef, ContextGraphDef):
            return self._outer_merge(graphdef, (state, *states))
        node = merge(graphdef, state, *states)
        self._inner_merge([node])
        return node


def _move_into_outer(fresh: Any, outer_paths: dict, outer: dict) -> Any:
    """Move each node of ``fresh`` that stood for an outer object into that object."""
    return move_into_outer([(fresh, outer_paths)], outer)[0]


def move_into_outer(roots: list[tuple[Any, dict]], outer: dict) -> list:
    """Call (4) over several roots built together (one ``from_tree``): each node that
    stood for an outer object moves into it, every node once, in one ``move_into`` so
    that references between the roots follow. Returns the roots, moved."""
    pairs, rest, seen = [], [], set()
    for fresh, outer_paths in roots:
        for p, x in _nodes(fresh):
            if id(x) in seen:  # shared between roots: its first path decides
                continue
            seen.add(id(x))
            key = outer_paths.get(p)
            target = outer.get(key) if key is not None else None
            if target is not None and type(target) is type(x):
                pairs.append((x, target))
            else:
                rest.append(x)
    moved = move_into(pairs, rest)
    return [moved.get(id(fresh), fresh) for fresh, _ in roots]


# -- context managers ---------------------------------------------------------------
class UpdateContextManager:
    """What :func:`update_context` returns: a context manager and a decorator."""

    def __init__(self, tag: Hashable):
        self.tag = tag

    def __enter__(self) -> UpdateContext:
        if _STACKS.update is None:
            _STACKS.update = {}
        ctx = UpdateContext(self.tag)
        _STACKS.update.setdefault(self.tag, []).append(ctx)
        return ctx

    def __exit__(self, *exc) -> None:
        stacks = _STACKS.update or {}
        stack = stacks.get(self.tag)
        if stack:
            ctx = stack.pop()
            ctx.outer = ctx.inner = None
            ctx._inner_objs = []
            if not stack:
                del stacks[self.tag]

    def __call__(self, f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            with self:
                return f(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def update_context(tag: Hashable) -> UpdateContextManager:
    """A context (or decorator) that carries structural updates across a JAX transform.

    Inside it, :func:`split_context` and :func:`merge_context` with the same
    ``tag`` keep track of four calls: (1) split outside, (2) merge inside the
    transform, (3) split inside, (4) merge outside. (4) moves every node that
    came from an object split at (1) back into that object, in place, with the
    attributes, submodules and references it has at (3); new nodes come out as
    new objects. Flax NNX's API and protocol.

    Args:
      tag: any hashable value naming the context, for :func:`current_update_context`.

    Returns:
      A context manager (entering gives the :class:`UpdateContext`) that is also a
      decorator.

    >>> import jax, nnx
    >>> class Foo(nnx.Module): pass
    >>> m1 = Foo()
    >>> with nnx.update_context("example"):
    ...     with nnx.split_context("example") as ctx:
    ...         graphdef, state = ctx.split(m1)
    ...     @jax.jit
    ...     def f(graphdef, state):
    ...         with nnx.merge_context("example", inner=True) as ctx:
    ...             m2 = ctx.merge(graphdef, state)
    ...         m2.a = 1
    ...         m2.ref = m2  # a reference cycle
    ...         with nnx.split_context("example") as ctx:
    ...             return ctx.split(m2)
    ...     graphdef_out, state_out = f(graphdef, state)
    ...     with nnx.merge_context("example", inner=False) as ctx:
    ...         m3 = ctx.merge(graphdef_out, state_out)
    >>> m3 is m1, m1.a, m1.ref is m1
    (True, 1, True)
    """
    return UpdateContextManager(tag)


def current_update_context(tag: Hashable) -> UpdateContext:
    """The innermost active :func:`update_context` of ``tag``.

    Args:
      tag: the tag given to :func:`update_context`.

    Raises:
      ValueError: no update context with this tag is active.
    """
    stack = (_STACKS.update or {}).get(tag)
    if not stack:
        raise ValueError(
            f"current_update_context({tag!r}): no update context with this tag is active. "
            f"Call it inside `with nnx.update_context({tag!r}):` (or a function decorated "
            f"with `@nnx.update_context({tag!r})`)."
        )
    return stack[-1]


class TreeSplitContext:
    """Splits that share one numbering of the objects (what :func:`to_tree` hands
    its ``split_fn``).

    ``ctx.split(node, *filters)`` is :func:`nnx.split` of ``node``, except that an
    object an earlier split of the same context reached is a reference (no State
    entry) in this one. A GraphDef from a context refers to objects numbered by earlier splits of
    the same context: rebuild them with one :class:`TreeMergeContext`, in the same order.
    """

    __slots__ = ("_ids",)

    def __init__(self):
        self._ids: dict[int, int] = {}

    def split(self, node: Any, *filters: Any) -> tuple:
        """``(graphdef, state, ...)`` of ``node``, as :func:`nnx.split` gives.

        Args:
            node: a graph node (a Variable gives itself as its state).
            *filters: as for :func:`nnx.split` (exhaustive).
        """
        f = _Flattener(self._ids, True)
        tree = f.visit(node, ())
        self._ids = f.ids
        graphdef = GraphDef(tree, len(f.leaves), len(f.ids))
        items = list(zip(f.paths or [], f.leaves))
        if isinstance(node, Variable) and items:  # its state is the Variable itself
            if not filters:
                return graphdef, node
            groups, rest = group_by_filters([((), node)], filters)
            if not rest:
                return (graphdef, *(node if g else State() for g in groups))
            items = [(("<the Variable>",), node)]  # the error below names it
        if not filters:
            return graphdef, State.from_flat(items)
        groups, rest = group_by_filters(items, filters)
        if rest:
            path, leaf = rest[0]
            raise StructureError(
                f"TreeSplitContext.split: no filter matched the {type(leaf).__name__} at "
                f"{path_str(path)!r}; filters must be exhaustive: add `...` as the last one."
            )
        return (graphdef, *(State.from_flat(g) for g in groups))


class TreeMergeContext:
    """Merges that share one numbering of the objects (what :func:`from_tree` uses).

    The inverse of :class:`TreeSplitContext`: merge the GraphDefs of one context in
    the order they were split, and objects split twice come back as one.
    """

    __slots__ = ("_objs",)

    def __init__(self):
        self._objs: dict[int, Any] = {}

    def merge(
        self, graphdef: GraphDef, state: Any = None, /, *states: Any, copy: bool = False
    ) -> Any:
        """The object ``graphdef`` describes, with the States' Variables.

        Args:
            graphdef: a GraphDef from the matching :class:`TreeSplitContext`.
            state: the first State (or the Variable, for a Variable's GraphDef).
            *states: the other States.
            copy: give the new graph copies of the Variables.
        """
        all_states = () if state is None else (state, *states)
        if graphdef.paths == ((),):  # a Variable's GraphDef: its state is the Variable
            leaves = [x for x in all_states if isinstance(x, Variable)][:1]
            if len(leaves) != graphdef.num_leaves:
                raise StructureError(
                    "TreeMergeContext.merge: the GraphDef is a Variable's; pass that Variable."
                )
        else:  # the lookup nnx.merge uses: every path there, nothing else
            leaves = leaves_by_path(graphdef, all_states, "TreeMergeContext.merge")
        u = _Unflattener(leaves, None, copy)
        u.objs = self._objs
        return u.build(graphdef.tree)


class SplitContext:
    """What :func:`split_context` gives: :meth:`split` (and :meth:`flatten`) for one block.

    Attributes:
      ctxtag: the update context's tag, or None.
    """

    def __init__(self, ctxtag: Hashable | None):
        self.ctxtag = ctxtag
        self._ctx = current_update_context(ctxtag) if ctxtag is not None else None
        self._inner = self._ctx is not None and self._ctx._merged_inner
        self._calls: list = []
        # without a tag, the splits of one block share one numbering (Flax NNX's): an
        # object an earlier split reached is a reference in a later one, with no State
        # entry, and one merge_context block rebuilds it once
        self._shared = TreeSplitContext()

    def split(self, node: Any, *filters: Any) -> tuple:
        """``nnx.split(node, *filters)``, recorded for the update context.

        Without a tag, the splits of one block share their objects: a module or
        Variable that an earlier split reached is a reference in this one (no State
        entry); merge the results in one :func:`merge_context` block, in the same
        order, and it comes back as one object::

            with nnx.split_context() as ctx:
                g1, s1 = ctx.split(model)
                g2, s2 = ctx.split(model)      # a reference: s2 is empty
            with nnx.merge_context() as ctx:
                m1 = ctx.merge(g1, s1)
                m2 = ctx.merge(g2, s2)         # m2 is m1

        Args:
          node: the object graph to split.
          *filters: as in ``nnx.split``.
        """
        ctx = self._ctx
        if ctx is None:
            self._calls.append(node)  # keeps the objects (and so their ids) alive
            return self._shared.split(node, *filters)
        graphdef, *states = split(node, *filters)
        if self._inner:
            graphdef = ContextGraphDef(graphdef, ctx._inner_split(node))
        else:
            self._calls.append(node)
        return (graphdef, *states)

    def flatten(self, node: Any, *filters: Any, with_paths: bool = True) -> tuple:
        """As :meth:`split`, with each State as a flat list of ``(path, Variable)``
        (``with_paths=False``: of leaves, and no filters).

        Args:
          node: the object graph.
          *filters: as in ``nnx.split``.
          with_paths: False for the leaves alone.
        """
        if not with_paths and filters:
            raise ValueError("SplitContext.flatten: filters need with_paths=True.")
        graphdef, *states = self.split(node, *filters)
        if not with_paths:  # the stored values, as Flax NNX gives
            return graphdef, [
                v.get_raw_value() if isinstance(v, Variable) else v
                for _, v in states[0].flat_state()
            ]
        return (graphdef, *(s.flat_state() for s in states))

    def _end(self) -> None:
        if self._ctx is None:
            return
        if self._inner:
            self._ctx._end_inner_split()
        else:
            self._ctx._outer_split(self._calls)


@contextlib.contextmanager
def split_context(ctxtag: Hashable | None = None):
    """A block whose splits are call (1) or (3) of the :func:`update_context` ``ctxtag``.

    Outside the transform (before any inner merge) the splits are call (1);
    inside, after the inner merge, call (3). Without a tag, ``ctx.split`` is
    ``nnx.split``.

    Args:
      ctxtag: the tag of an active :func:`update_context`, or None.

    Yields:
      a :class:`SplitContext`.
    """
    ctx = SplitContext(ctxtag)
    yield ctx
    ctx._end()


class MergeContext:
    """What :func:`merge_context` gives: :meth:`merge` (and :meth:`unflatten`) for one block.

    Attributes:
      ctxtag: the update context's tag, or None.
      inner: True inside the transform (call 2), False outside (call 4).
    """

    def __init__(self, ctxtag: Hashable | None, inner: bool | None):
        self.ctxtag = ctxtag
        self.inner = inner
        self._ctx = current_update_context(ctxtag) if ctxtag is not None else None
        self._calls: list = []
        self._shared = TreeMergeContext()  # used without a tag: see SplitContext

    def merge(self, graphdef: GraphDef, state: Any, *states: Any) -> Any:
        """``nnx.merge``, recorded for the update context (call 2 or 4).

        Args:
          graphdef: from a split.
          state: the first State.
          *states: further States.
        """
        ctx = self._ctx
        if ctx is None:
            inner = graphdef.graphdef if isinstance(graphdef, ContextGraphDef) else graphdef
            return self._shared.merge(inner, state, *states)
        if self.inner:
            node = merge(graphdef, state, *states)
            self._calls.append(node)
            return node
        return ctx._outer_merge(graphdef, (state, *states))

    def unflatten(self, graphdef: GraphDef, flat_state: Any, *flat_states: Any) -> Any:
        """As :meth:`merge`, from the flat States :meth:`SplitContext.flatten` gives.

        Args:
          graphdef: from :meth:`SplitContext.flatten`.
          flat_state: a flat State (``(path, value)`` pairs) or a list of leaves.
          *flat_states: further flat States.
        """
        if type(flat_state) is list and not flat_states:  # leaves (FlatState is a list too)
            base = graphdef.graphdef if isinstance(graphdef, ContextGraphDef) else graphdef
            state = State.from_flat_path(list(zip(base.paths, flat_state)))
            return self.merge(graphdef, state)
        return self.merge(
            graphdef, *(State.from_flat_path(list(s)) for s in (flat_state, *flat_states))
        )

    def _end(self) -> None:
        if self._ctx is not None and self.inner:
            self._ctx._inner_merge(self._calls)


@contextlib.contextmanager
def merge_context(ctxtag: Hashable | None = None, inner: bool | None = None):
    """A block whose merges are call (2) (``inner=True``) or (4) (``inner=False``) of
    the :func:`update_context` ``ctxtag``. Without a tag, ``ctx.merge`` is ``nnx.merge``.

    Args:
      ctxtag: the tag of an active :func:`update_context`, or None.
      inner: required with a tag: True inside the transform, False outside.

    Yields:
      a :class:`MergeContext`.
    """
    if ctxtag is not None and inner is None:
        raise ValueError(
            f"merge_context({ctxtag!r}): pass inner=True inside the transform (call 2) "
            "or inner=False outside it (call 4)."
        )
    ctx = MergeContext(ctxtag, inner)
    yield ctx
    ctx._end()
