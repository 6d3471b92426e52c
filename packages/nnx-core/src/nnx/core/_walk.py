"""Walks over an object graph that visit each Pytree and Variable once:
:func:`iter_graph`, :func:`find_duplicates`, and :func:`set_metadata` over a graph.

Their container rules differ from :func:`~nnx.core._flatten.flatten`'s on purpose.
``flatten`` encodes the graph for ``unflatten``, so it descends into every
registered JAX pytree node, tuples and namedtuples included, records static
values, and (for ``FlattenCache``) watches plain containers. These walks are
views of the graph for user code: they descend only into Pytrees, lists,
tuples and dicts (the containers ``iter_graph`` promises), by a snapshot of
each node's children (``_children``) so that a loop body may edit the graph.

The identity rule is the encoding's: Pytrees, Variables, ``nnx.List`` and
``nnx.Dict`` are visited once however many paths reach them (``_has_identity``);
plain lists, dicts and tuples are values, walked at every path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nnx.core._errors import AliasingError
from nnx.core._filters import to_predicate
from nnx.core._graph_mode import resolve_graph_mode
from nnx.core._graphdef import _ARRAY_TYPES
from nnx.core._paths import key_order
from nnx.core._pytree import Dict, List, Pytree, get_layout
from nnx.core._variables import Variable

# what the walks (and the encoding, _flatten.py) visit once: objects with identity
_IDENTITY = (Variable, Pytree, List, Dict)


def _has_identity(x) -> bool:
    return isinstance(x, _IDENTITY)


def _children(x, graph_refs: bool = True) -> list[tuple[Any, Any]]:
    """The ``(key, child)`` pairs of a node, as a list (a snapshot: callers may mutate).

    ``graph_refs=False`` leaves out a Pytree's :func:`nnx.graph_ref` attributes
    (static references in the JAX pytree view).
    """
    if isinstance(x, Pytree):
        d = x.__dict__
        layout = get_layout(x)
        return [(k, d[k]) for k in (layout.keys if graph_refs else layout.data_keys)]
    if isinstance(x, (list, tuple)):
        return list(enumerate(x))
    if isinstance(x, dict):
        return [(k, x[k]) for k in sorted(x, key=key_order)]
    return []


def require_tree(node: Any, where: str) -> None:
    """Check that ``node`` is a tree, as tree mode (``graph=False``) needs.

    The check that the graph helpers and the lifted transforms run before they
    treat an object as a pytree: an object (Variable, Pytree, ``nnx.List``, ...)
    reachable at two paths is an :class:`nnx.AliasingError` whose message starts
    with ``where`` (the caller's name, e.g. ``"nnx.iter_graph"``), names both paths
    and says how to keep the sharing. A tree passes and nothing is returned.
    Attributes held by :func:`nnx.graph_ref` (an optimizer's back-reference to
    its model) are static references in the pytree view, not children, so a
    model passed beside its optimizer is a tree.
    A library that adds its own ``graph=`` argument calls it the same way.

    Example::

        >>> import jax.numpy as jnp
        >>> import nnx
        >>> class Pair(nnx.Module):
        ...     def __init__(self, a, b):
        ...         self.a, self.b = a, b
        >>> w = nnx.Param(jnp.ones(2))
        >>> nnx.require_tree(Pair(w, nnx.Param(jnp.ones(2))), "mylib.step")
        >>> try:
        ...     nnx.require_tree(Pair(w, w), "mylib.step")
        ... except nnx.AliasingError as e:
        ...     print(str(e).split(",")[0])
        mylib.step: graph=False (tree mode) needs a tree
    """
    dups = find_duplicates(node, graph_refs=False)
    if dups:
        a, b = ("/".join(map(str, p)) or "<root>" for p in dups[0][:2])
        raise AliasingError(
            f"{where}: graph=False (tree mode) needs a tree, but the same object is "
            f"reachable at {a!r} and at {b!r}. Pass graph=True (or use "
            "nnx.set_graph_mode(True)) to keep the sharing, or pass the object once."
        )


def iter_graph(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple[tuple, Any]]:
    """Yield ``(path, value)`` for every Pytree, Variable and array in the graph, once each.

    ``nnx.List`` and ``nnx.Dict`` containers are yielded too (they have identity,
    as Flax NNX's are graph nodes); a shared one is walked once, at its first path.
    Children come before their parent; the root comes last with path ``()``.
    The walk is a snapshot taken when iteration starts: the loop body may
    change the graph (delete or replace attributes, append to lists) and the
    iteration still yields the graph as it was, never a ``KeyError`` or a mix
    of old and new.

    ``graph=False`` (tree mode, Flax NNX's argument; None: the current
    :func:`nnx.set_graph_mode` setting) first checks that ``node`` is a tree: an
    object reachable twice is an :class:`nnx.AliasingError` naming both paths.
    """
    if not resolve_graph_mode(graph).graph:
        require_tree(node, "nnx.iter_graph")
    seen: set[int] = set()
    out: list[tuple[tuple, Any]] = []

    def walk(x, path):
        if isinstance(x, _IDENTITY):
            if id(x) in seen:
                return
            seen.add(id(x))
        if isinstance(x, Variable):
            out.append((path, x))
            return
        for k, c in _children(x):
            walk(c, (*path, k))
        if isinstance(x, (Pytree, List, Dict, _ARRAY_TYPES)):
            out.append((path, x))

    walk(node, ())
    return iter(out)


def iter_modules(node: Any) -> Iterator[tuple[tuple, Any]]:
    """Yield ``(path, module)`` for every Pytree in the graph, the root last."""
    for path, x in iter_graph(node):
        if isinstance(x, Pytree):
            yield path, x


def find_duplicates(node: Any, /, *, only: Any = ..., graph_refs: bool = True) -> list[list[tuple]]:
    """Groups of paths that reach the same Variable, Pytree, ``nnx.List`` or ``nnx.Dict``.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> class Tied(nnx.Pytree):
    ...     def __init__(self):
    ...         self.a = nnx.Variable(jnp.array(0))
    ...         self.b = self.a
    ...         self.c = nnx.Dict(w=nnx.Param(jnp.ones(1)))
    ...         self.d = self.c
    >>> nnx.find_duplicates(Tied())
    [[('a',), ('b',)], [('c',), ('d',)]]
    >>> nnx.find_duplicates(Tied(), only=nnx.Variable)
    [[('a',), ('b',)]]

    A shared subtree is reported once, at its root (the shared Dict above, not
    the Param inside it, which is reached through its first path only).

    Args:
        node: the graph to search.
        only: a filter: only the objects it matches (at a later path) are
            reported; ``...`` (the default) reports every shared object.
        graph_refs: False: do not walk attributes held by :func:`nnx.graph_ref`
            (an optimizer's model), which the JAX pytree view, and so tree mode,
            sees as static references rather than children.
    """
    pred = None if only is ... else to_predicate(only)
    paths: dict[int, list] = {}
    order: list[int] = []

    def walk(x, path):
        if isinstance(x, _IDENTITY):
            if id(x) in paths:
                if pred is None or pred(path, x):
                    paths[id(x)].append(path)
                return
            paths[id(x)] = [path]
            order.append(id(x))
        for k, c in _children(x, graph_refs):
            walk(c, (*path, k))

    walk(node, ())
    return [paths[i] for i in order if len(paths[i]) > 1]


def set_metadata(node: Any, *args: Any, only: Any = ..., **metadata: Any) -> None:
    """Set metadata on every Variable of ``node`` that the filter ``only`` matches.

    The metadata forms are those of :meth:`Variable.set_metadata`: keywords, a
    ``(name, value)`` pair, or one dict that replaces the whole metadata.

    >>> import jax.numpy as jnp, nnx
    >>> class M(nnx.Module):
    ...     def __init__(self):
    ...         self.w = nnx.Param(jnp.ones(2))
    ...         self.s = nnx.BatchStat(jnp.zeros(2))
    >>> m = M()
    >>> nnx.set_metadata(m, only=nnx.Param, frozen=True)
    >>> m.w.frozen, m.s.get_metadata("frozen", None)
    (True, None)
    """
    pred = to_predicate(only)
    for path, x in iter_graph(node):
        if isinstance(x, Variable) and pred(path, x):
            x.set_metadata(*args, **metadata)
