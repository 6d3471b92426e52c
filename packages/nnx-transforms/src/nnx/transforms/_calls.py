"""Splitting a transform's call into static, graph and plain arguments (boundary step 1).

Static arguments become part of a cache key (:class:`Static`), *graph*
arguments (those holding Pytrees or Variables) are flattened jointly, *plain*
arguments go to JAX untouched; :func:`assemble` puts the call back together
inside the transform.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from nnx.core import Pytree, Variable, is_graph_node

_SCALARS = (int, float, bool, complex, str, type(None), jax.Array, np.ndarray, np.generic)


def _short(value) -> str:
    r = repr(value)
    return r if len(r) < 80 else r[:77] + "..."


_KIND_BY_TYPE: dict[type, bool | None] = {}
_UNKNOWN: Any = object()  # a sentinel; Any keeps is_graph_arg's lookup typed bool | None


def _kind_of_type(t: type) -> bool | None:
    if issubclass(t, (Pytree, Variable)):
        k: bool | None = True
    elif issubclass(t, _SCALARS):
        k = False
    else:
        k = None  # a container or another pytree: look inside each time
    _KIND_BY_TYPE[t] = k
    return k


def is_graph_arg(x) -> bool:
    """Whether ``x`` is, or contains, a Pytree or Variable."""
    k = _KIND_BY_TYPE.get(type(x), _UNKNOWN)
    if k is _UNKNOWN:
        k = _kind_of_type(type(x))
    if k is not None:
        return k
    leaves = jax.tree.leaves(x, is_leaf=is_graph_node)
    return any(isinstance(leaf, (Pytree, Variable)) for leaf in leaves)


class Static:
    """A static argument inside a cache key, compared by value (or identity)."""

    __slots__ = ("value", "_hash")

    def __init__(self, value):
        self.value = value
        try:
            self._hash = hash(value)
        except TypeError:
            raise TypeError(
                f"Static arguments must be hashable, got {type(value).__name__}: "
                f"{_short(value)}. Pass it as a regular argument, or make it hashable "
                "(a tuple instead of a list)."
            ) from None

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return type(other) is Static and (self.value is other.value or self.value == other.value)


GRAPH, PLAIN_ARG = 1, 0


def split_call(args: tuple, kwargs: dict, static_argnums=(), static_argnames=()):
    """Split a call into ``(layout, graph_nodes, plain_args, plain_kwargs)``.

    ``layout`` (hashable) records, per positional argument and per keyword,
    whether it is plain (0), graph (1) or static (a :class:`Static`), so that
    :func:`assemble` can put the call back together inside the transform.
    """
    graph: list = []
    plain: list = []
    pos: list = []
    for i, a in enumerate(args):
        if static_argnums and i in static_argnums:
            pos.append(Static(a))
        elif is_graph_arg(a):
            pos.append(GRAPH)
            graph.append(a)
        else:
            pos.append(PLAIN_ARG)
            plain.append(a)
    if kwargs:
        kw: list = []
        plain_kw = {}
        for k in sorted(kwargs):
            a = kwargs[k]
            if static_argnames and k in static_argnames:
                kw.append((k, Static(a)))
            elif is_graph_arg(a):
                kw.append((k, GRAPH))
                graph.append(a)
            else:
                kw.append((k, PLAIN_ARG))
                plain_kw[k] = a
        return (tuple(pos), tuple(kw)), tuple(graph), tuple(plain), plain_kw
    return (tuple(pos), ()), tuple(graph), tuple(plain), {}


def assemble(layout, graph_objs, plain_args, plain_kwargs) -> tuple[list, dict]:
    """Inverse of :func:`split_call`."""
    pos, kw = layout
    g = iter(graph_objs)
    p = iter(plain_args)
    args = []
    for code in pos:
        if code is GRAPH:
            args.append(next(g))
        elif code is PLAIN_ARG:
            args.append(next(p))
        else:
            args.append(code.value)
    kwargs = {}
    for k, code in kw:
        if code is GRAPH:
            kwargs[k] = next(g)
        elif code is PLAIN_ARG:
            kwargs[k] = plain_kwargs[k]
        else:
            kwargs[k] = code.value
    return args, kwargs


def _positional_names(f: Callable) -> list[str]:
    try:
        return [
            p.name
            for p in inspect.signature(f).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return []


def graph_arg_names(f: Callable, layout) -> list[str]:
    """Human names of the graph arguments (``model``, ``args[2]``), for messages."""
    params = _positional_names(f)
    pos, kw = layout
    names = [
        (params[i] if i < len(params) else f"args[{i}]")
        for i, code in enumerate(pos)
        if code is GRAPH
    ]
    names += [k for k, code in kw if code is GRAPH]
    return names


def plain_arg_names(f: Callable, layout) -> list[str]:
    """Human names of the plain positional arguments (``x``, ``args[1]``), for messages."""
    params = _positional_names(f)
    pos, _ = layout
    return [
        (params[i] if i < len(params) else f"args[{i}]")
        for i, code in enumerate(pos)
        if code is PLAIN_ARG
    ]


def graph_arg_index(layout) -> list:
    """For each graph argument, its position (int) or keyword (str)."""
    pos, kw = layout
    return [i for i, c in enumerate(pos) if c is GRAPH] + [k for k, c in kw if c is GRAPH]


def wrap(cls: Callable[..., Any], fun: Callable | None, **options: Any) -> Any:
    """``cls(fun, **options)``; with ``fun=None`` the decorator that makes it.

    Every transform's public function ends here, so that ``@nnx.jit``,
    ``@nnx.jit(...)`` and ``nnx.jit(f, ...)`` are one code path.
    """
    if fun is None:
        return lambda f: cls(f, **options)
    return cls(fun, **options)
