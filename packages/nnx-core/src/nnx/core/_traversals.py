"""Nested mappings to flat ones and back (Flax NNX's ``nnx.traversals``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax


class _EmptyNode:
    """The value that stands for an empty mapping in a flat mapping (a leafless pytree)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "empty_node"

    def __reduce__(self):
        return (_empty, ())


def _empty() -> _EmptyNode:
    return empty_node


jax.tree_util.register_pytree_node(_EmptyNode, lambda x: ((), None), lambda aux, ch: empty_node)  # noqa: ARG005

empty_node = _EmptyNode()
"""Stands for an empty mapping in the output of ``flatten_mapping(..., keep_empty_nodes=True)``;
:func:`unflatten_mapping` turns it back into ``{}``."""


def flatten_mapping(
    xs: Mapping,
    /,
    *,
    keep_empty_nodes: bool = False,
    is_leaf: Callable[[tuple, Any], bool] | None = None,
    sep: str | None = None,
) -> dict:
    """A flat dict from a nested mapping: ``{('a', 'b'): x}`` for ``{'a': {'b': x}}``.

    >>> import nnx
    >>> nnx.traversals.flatten_mapping({"foo": 1, "bar": {"a": 2, "b": {}}})
    {('foo',): 1, ('bar', 'a'): 2}
    >>> nnx.traversals.flatten_mapping({"bar": {"a": 2}}, sep="/")
    {'bar/a': 2}

    Args:
      xs: a nested mapping.
      keep_empty_nodes: keep empty sub-mappings, as :data:`empty_node` (they are
        dropped otherwise, so ``unflatten_mapping`` cannot restore them).
      is_leaf: ``(path, value) -> bool``; a sub-mapping it accepts is not flattened.
      sep: join the keys of each path with ``sep`` into one string key.
    """
    if not isinstance(xs, Mapping):
        raise TypeError(f"flatten_mapping expects a Mapping, got {type(xs).__qualname__}")
    out: dict = {}

    def key(path: tuple):
        return path if sep is None else sep.join(path)

    def walk(x, path: tuple) -> None:
        if not isinstance(x, Mapping) or (is_leaf is not None and is_leaf(path, x)):
            out[key(path)] = x
            return
        if not x:
            if keep_empty_nodes and path:
                out[key(path)] = empty_node
            return
        for k, v in x.items():
            walk(v, (*path, k))

    walk(xs, ())
    return out


def flatten_to_sequence(
    xs: Mapping, /, *, is_leaf: Callable[[tuple, Any], bool] | None = None
) -> list[tuple[tuple, Any]]:
    """``flatten_mapping`` as a list of ``(path, value)`` pairs (empty mappings dropped).

    >>> import nnx
    >>> nnx.traversals.flatten_to_sequence({"foo": 1, "bar": {"a": 2, "b": {}}})
    [(('foo',), 1), (('bar', 'a'), 2)]
    """
    return list(flatten_mapping(xs, is_leaf=is_leaf).items())


def unflatten_mapping(xs: Mapping | Iterable, /, *, sep: str | None = None) -> dict:
    """The nested dict of a flat mapping (or of ``(path, value)`` pairs).

    >>> import nnx
    >>> nnx.traversals.unflatten_mapping({("foo",): 1, ("bar", "a"): 2})
    {'foo': 1, 'bar': {'a': 2}}
    >>> nnx.traversals.unflatten_mapping({"bar/a": 2}, sep="/")
    {'bar': {'a': 2}}
    """
    items = xs.items() if isinstance(xs, Mapping) else xs
    if not isinstance(items, Iterable):
        raise TypeError(
            f"unflatten_mapping expects a Mapping or (path, value) pairs, got "
            f"{type(xs).__qualname__}"
        )
    out: dict = {}
    for path, value in items:
        parts = path.split(sep) if sep is not None else tuple(path)
        if not parts:
            raise ValueError("unflatten_mapping: an empty path has no place in a mapping")
        node = out
        for i, k in enumerate(parts[:-1]):
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ValueError(
                    f"unflatten_mapping: path {tuple(parts)!r} goes through "
                    f"{tuple(parts[: i + 1])!r}, which holds a value, not a mapping"
                )
            node = child
        node[parts[-1]] = {} if value is empty_node else value
    return out
