"""``nnx.split_rngs``: the random streams of a graph split into one key per member of a
map (``nnx.vmap``, ``nnx.scan``), as a call or a decorator, and restored afterwards."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

import jax

from nnx.core import (
    RngStream,
    SplitBackups,
    Variable,
    clone,
    iter_graph,
    new_ref,
    require_tree,
    to_predicate,
)
from nnx.transforms._boundary import ModeArgs


class _Missing:
    def __repr__(self) -> str:
        return "<no node>"


_NO_NODE: Any = _Missing()
F = TypeVar("F", bound=Callable[..., Any])
A = TypeVar("A")


@overload
def split_rngs(
    node: Any,
    /,
    *,
    splits: int | tuple[int, ...],
    only: Any = ...,
    squeeze: bool = False,
    graph: Literal[True] | None = None,
    graph_updates: Literal[True] | None = None,
) -> SplitBackups: ...
@overload
def split_rngs(
    node: A,
    /,
    *,
    splits: int | tuple[int, ...],
    only: Any = ...,
    squeeze: bool = False,
    graph: bool | None = None,
    graph_updates: Literal[False],
) -> A: ...
@overload
def split_rngs(
    node: A,
    /,
    *,
    splits: int | tuple[int, ...],
    only: Any = ...,
    squeeze: bool = False,
    graph: Literal[False],
    graph_updates: bool | None = None,
) -> A: ...
@overload
def split_rngs(
    *,
    splits: int | tuple[int, ...],
    only: Any = ...,
    squeeze: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[F], F]: ...
def split_rngs(
    node: Any = _NO_NODE,
    /,
    *,
    splits: int | tuple[int, ...],
    only: Any = ...,
    squeeze: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """Split the random streams of ``node`` now, or of a function's arguments per call.

    >>> import nnx
    >>> rngs = nnx.Rngs(params=0, dropout=1)
    >>> backups = nnx.split_rngs(rngs, splits=5, only="params")
    >>> rngs.params.key.shape, rngs.dropout.key.shape
    ((5,), ())
    >>> nnx.restore_rngs(backups)
    >>> rngs.params.key.shape, int(rngs.params.count[...])
    ((), 1)
    >>> with nnx.split_rngs(rngs, splits=(2, 3)):
    ...     rngs.params.key.shape
    (2, 3)
    >>> rngs.params.key.shape
    ()

    Each matching ``RngStream`` draws one key (its count advances by one) and
    gets that key split to shape ``splits``, with a count of zeros of the same
    shape, ready to be mapped over by :func:`vmap`. Called with ``node`` it
    splits at once and returns a :class:`nnx.SplitBackups`: pass it to
    :func:`nnx.restore_rngs` (or use it as a ``with`` block) to give the
    streams back their previous key, with the advanced count, so the next split
    differs. Called without ``node`` it is a decorator: the streams in the
    function's arguments are split for each call and restored when it returns::

        @nnx.split_rngs(splits=5)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create_stack(rngs):
            return nnx.Linear(2, 2, rngs=rngs)

    Args:
      node: the object (a Module, an ``Rngs``, a list or dict of them) whose
        streams are split; leave it out for the decorator form.
      splits: the shape of the split keys: an int or a tuple of ints.
      only: a filter choosing the streams (e.g. ``'params'``, a stream's name);
        it is matched against each stream's key and count Variables, at their
        paths. Default: every stream.
      squeeze: with ``splits=1``, give each stream one new key of the original
        shape instead of a leading axis of size 1.
      graph: False for tree mode: an object reachable twice is an
        ``AliasingError``, and a copy is returned (see below); None for the
        current :func:`nnx.set_graph_mode` setting.
      graph_updates: False: ``node`` is left as it is (but for the counts of the
        streams split) and a copy with split streams is returned, as in Flax NNX;
        the decorator then calls the function with copies. None: the current
        :func:`nnx.set_graph_updates` setting.

    >>> rngs = nnx.Rngs(params=0, dropout=1)
    >>> batch = nnx.split_rngs(rngs, splits=5, only="params", graph_updates=False)
    >>> batch.params.key.shape, batch.dropout.key.shape, rngs.params.key.shape
    ((5,), (), ())

    Returns:
      With ``node``: a :class:`nnx.SplitBackups` (in place: graph mode with graph
      updates) or the split copy; without: a decorator.
    """
    if squeeze and splits != 1:
        raise ValueError(
            f"nnx.split_rngs: squeeze=True needs splits=1 (one key per stream, with the "
            f"leading axis removed), got splits={splits!r}. Pass squeeze=False to keep "
            "the split axis."
        )
    mode = ModeArgs(graph, graph_updates)
    resolved = mode.mode()
    in_place = resolved.graph and resolved.graph_updates
    pred = to_predicate(only)
    if node is _NO_NODE:

        def decorator(fun: F) -> F:
            @functools.wraps(fun)
            def wrapper(*args, **kwargs):
                tree = (args, kwargs)
                _check_tree(mode, tree)
                if not in_place:
                    args, kwargs = _split_copy(tree, splits, pred, squeeze)
                    return fun(*args, **kwargs)
                saved = _split_streams(tree, splits, pred, squeeze)
                try:
                    return fun(*args, **kwargs)
                finally:
                    _restore(saved)

            return wrapper  # type: ignore[return-value]

        return decorator
    _check_tree(mode, node)
    if not in_place:
        return _split_copy(node, splits, pred, squeeze)
    backups: list = []
    for s, new_key in _split_keys(node, splits, pred, squeeze):
        backups.append((s, s.key, s.count))  # the advanced count comes back on restore
        # new Variables of the same kind and storage mode: the old ones stay untouched
        # (but for the count) until nnx.restore_rngs puts them back
        s.key = s.key.replace(new_key)  # pyright: ignore[reportAttributeAccessIssue]
        s.count = s.count.replace(  # pyright: ignore[reportAttributeAccessIssue]
            jax.numpy.zeros(new_key.shape, jax.numpy.uint32)
        )
    return SplitBackups(backups)


def _check_tree(mode: ModeArgs, node) -> None:
    if not mode.mode().graph:
        require_tree(node, "nnx.split_rngs")


def _split_keys(node, splits, pred, squeeze) -> list[tuple[RngStream, Any]]:
    """The matching streams of ``node``, each with its new split key (drawn now)."""
    out, seen = [], set()
    for path, s in iter_graph(node):
        if not isinstance(s, RngStream) or id(s) in seen:
            continue
        seen.add(id(s))
        if not (pred((*path, "key"), s.key) and pred((*path, "count"), s.count)):
            continue
        key = jax.random.split(s(), splits)  # s() advances the count: the next split differs
        out.append((s, key[0] if squeeze else key))
    return out


def _split_copy(node, splits, pred, squeeze) -> Any:
    """A copy of ``node`` with the matching streams split (graph_updates=False)."""
    copy = clone(node)
    dest = {id(s): d for (_, s), (_, d) in zip(_rng_streams(node), _rng_streams(copy))}
    for s, new_key in _split_keys(node, splits, pred, squeeze):
        d = dest[id(s)]
        d.key = d.key.replace(new_key)  # pyright: ignore[reportAttributeAccessIssue]
        d.count = d.count.replace(  # pyright: ignore[reportAttributeAccessIssue]
            jax.numpy.zeros(new_key.shape, jax.numpy.uint32)
        )
    return copy


def _rng_streams(node) -> list:
    return [(p, x) for p, x in iter_graph(node) if isinstance(x, RngStream)]


def _split_streams(node, splits, pred, squeeze=False) -> list:
    """Split in place (the same Variables, new values); return what :func:`_restore` needs."""
    saved = []
    for s, new_key in _split_keys(node, splits, pred, squeeze):
        saved.append((s.key, s.key.get_raw_value(), s.key.get_value()))
        saved.append((s.count, s.count.get_raw_value(), s.count.get_value()))
        _replace(s.key, new_key)
        _replace(s.count, jax.numpy.zeros(new_key.shape, jax.numpy.uint32))
    return saved


def _replace(v: Variable, value) -> None:
    if v.ref:
        v.set_raw_value(new_ref(value))
    elif v.hijax:
        v.set_value(value)
    else:
        v.set_raw_value(value)


def _restore(saved) -> None:
    for v, raw, value in reversed(saved):
        if v.hijax:
            v.set_value(value)
        else:
            v.set_raw_value(raw)
