"""Paths inside object graphs: their order and their text forms.

A path is a tuple of keys: attribute names, dict keys and list indices. Every
ordering of keys in nnx (the leaves of a State, of ``nnx.split``, of an
Optimizer's state) uses :func:`key_order`, and every message names a path in
one of the two forms below. This module imports no nnx type.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeAlias

Key: TypeAlias = str | int | Hashable
"""One key of a path in a graph or State: an attribute name, a list index or a dict key
(Flax NNX's ``nnx.graph.Key``)."""

PathParts: TypeAlias = tuple[Key, ...]
"""A path in a graph or State, ``('layers', 0, 'kernel')`` (Flax NNX's ``PathParts``)."""


def key_order(key: object) -> tuple:
    """The sort key nnx orders the keys of one level of a graph or State by.

    Integers (list indices) come first, in numeric order, then every other key
    by its string form. ``sorted(keys, key=nnx.key_order)`` is the order of the
    leaves of ``nnx.split``, ``nnx.state`` and ``State.flat_state()``, so a
    package that lays out per-leaf data beside a State (an optimizer's state, a
    checkpoint) sorts with it to agree leaf for leaf.

    Args:
      key: one path component (an attribute name, a dict key or a list index).

    >>> import nnx
    >>> tuple(sorted(["b", 10, "a", 2], key=nnx.key_order))
    (2, 10, 'a', 'b')
    """
    return (0, key, "") if isinstance(key, int) else (1, 0, str(key))


def path_order(path: tuple) -> tuple:
    """The sort key of a whole path: :func:`key_order` of each component."""
    return tuple([key_order(k) for k in path])


def path_str(path: tuple) -> str:
    """``"a/b/0"``: the form messages and flat dicts use (``"<root>"`` when empty)."""
    return "/".join([str(k) for k in path]) or "<root>"


def attr_path_str(path: tuple) -> str:
    """``".a.b[0]"``: the form of a JAX key path (attributes, then ``[key]`` items)."""
    return "".join([f".{k}" if isinstance(k, str) else f"[{k!r}]" for k in path])
