"""``vars_as``: convert every Variable of a tree to another storage mode."""

from __future__ import annotations

from typing import Any, TypeVar

from nnx.core._errors import AliasingError
from nnx.core._filters import to_predicate
from nnx.core._flatten import flatten, unflatten
from nnx.core._variables import HIJAX, PLAIN, REF, Variable
from nnx.core._walk import find_duplicates

A = TypeVar("A")

_PREV = "_nnx_prev_mode"  # metadata: the mode a frozen Variable had before


def _target(v: Variable, mutable, ref, hijax) -> tuple[int, bool, dict]:
    aux = v._aux
    mode, is_mutable = aux.mode, aux.mutable
    extra: dict = {}
    if mutable is False:
        if is_mutable:
            extra[_PREV] = mode
        mode, is_mutable = PLAIN, False
    elif mutable is True:
        if not is_mutable:
            mode = aux.metadata.get(_PREV, REF)
            if mode == PLAIN:
                mode = REF
        elif mode == PLAIN:
            mode = REF
        is_mutable = True
    if ref is True:
        mode, is_mutable = REF, True
    elif ref is False and mode == REF:
        mode = PLAIN
    if hijax is True:
        mode, is_mutable = HIJAX, True
    elif hijax is False and mode == HIJAX:
        mode = PLAIN
    return mode, is_mutable, extra


def _convert(v: Variable, mutable, ref, hijax) -> Variable:
    mode, is_mutable, extra = _target(v, mutable, ref, hijax)
    new = v.to_mode(mode=mode, mutable=is_mutable)
    meta = dict(new._aux.metadata)
    if extra:
        meta.update(extra)
    elif is_mutable and _PREV in meta:
        del meta[_PREV]
    if meta != new._aux.metadata:
        from nnx.core._variables import VarAux, _set_aux

        _set_aux(new, VarAux(new._aux.mode, new._aux.mutable, meta))
    return new


def _changes(v: Variable, mutable, ref, hijax) -> bool:
    """Whether converting ``v`` gives another storage mode or mutability."""
    mode, is_mutable, _ = _target(v, mutable, ref, hijax)
    return mode != v._aux.mode or is_mutable != v._aux.mutable


def _format_path(path: tuple) -> str:
    return "/".join(map(str, path)) or "<root>"


def _check_no_duplicates(tree: Any, flat, pred, mutable, ref, hijax) -> None:
    """Flax's ``allow_duplicates=False``: no converted Variable at two paths."""
    first = {tuple(p): x for p, x in zip(flat.paths, flat.leaves) if isinstance(x, Variable)}
    groups = []
    for paths in find_duplicates(tree):
        at = next((tuple(p) for p in paths if tuple(p) in first), None)
        if at is None:  # a shared Module or list: its Variables are reached once
            continue
        v = first[at]
        if (pred is None or pred(at, v)) and _changes(v, mutable, ref, hijax):
            groups.append((v, paths))
    if not groups:
        return
    listing = "\n  ---"
    for _, paths in groups:
        listing += "".join(f"\n  {_format_path(tuple(p))}" for p in paths) + "\n  ---"
    v, paths = groups[0]
    raise AliasingError(
        f"Found duplicate at paths:{listing}\n"
        f"vars_as(..., allow_duplicates=False): the {type(v).__name__} at "
        f"{_format_path(tuple(paths[0]))!r} is also reachable at "
        f"{', '.join(repr(_format_path(tuple(p))) for p in paths[1:])}. nnx converts a "
        "shared Variable once and keeps it shared: pass allow_duplicates=True (or leave "
        "it unset) to allow that, or give each path its own Variable first."
    )


def vars_as(
    tree: A,
    *,
    mutable: bool | None = None,
    ref: bool | None = None,
    hijax: bool | None = None,
    only: Any = ...,
    allow_duplicates: bool | None = None,
) -> A:
    """A copy of ``tree`` with its Variables converted to another storage mode.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> m = nnx.Dict(w=nnx.Param(jnp.ones(2)), s=nnx.BatchStat(jnp.zeros(2)))
    >>> refs = nnx.vars_as(m, ref=True, only=nnx.Param)
    >>> refs["w"].ref, refs["s"].ref
    (True, False)
    >>> frozen = nnx.vars_as(m, mutable=False)
    >>> frozen["w"].mutable
    False

    ``mutable=False`` gives immutable plain Variables (what ``jax.grad``
    needs); ``mutable=True`` makes them mutable again, in the mode they had
    before freezing (``ref`` if they were plain). ``ref=True`` / ``hijax=True``
    select that mode; ``ref=False`` / ``hijax=False`` turn a Variable of that
    mode into a plain one and leave the others as they are. ``tree`` may be a
    Variable, a module, a State or any pytree of them; ``tree`` itself is not
    changed.

    A Variable reachable at several paths (tied weights) is converted once and
    stays shared in the copy. Flax NNX refuses such a tree unless
    ``allow_duplicates=True`` (its conversion would give each path its own
    copy); nnx accepts it by default and checks it only when asked with
    ``allow_duplicates=False``.

    Args:
        tree: the Variables to convert: a Variable, a module, a State or a pytree.
        mutable: True or False to make the Variables mutable or immutable; None
            leaves it.
        ref: True for ``jax.Ref``-backed Variables, False to make ref Variables
            plain; None leaves it.
        hijax: True for hijax Variables, False to make hijax Variables plain;
            None leaves it.
        only: a filter (as for :func:`nnx.state`): only the Variables it matches
            are converted, the others are copied as they are. ``...`` (the
            default) matches every Variable.
        allow_duplicates: False raises an ``AliasingError`` (a ``ValueError``)
            naming the paths when a Variable to convert is reachable at more
            than one path, as Flax NNX does by default; True or None (the
            default) allow it, the Variable staying shared.

    Returns:
        The converted copy, of the same structure as ``tree``.
    """
    pred = to_predicate(only) if only is not ... else None
    if isinstance(tree, Variable):
        if pred is None or pred((), tree):
            return _convert(tree, mutable, ref, hijax)  # type: ignore[return-value]
        return tree.copy()  # type: ignore[return-value]
    check = allow_duplicates is False
    flat = flatten(tree, with_paths=pred is not None or check)
    if check:
        _check_no_duplicates(tree, flat, pred, mutable, ref, hijax)
    leaves = []
    for i, x in enumerate(flat.leaves):
        if isinstance(x, Variable) and (pred is None or pred(flat.paths[i], x)):
            leaves.append(_convert(x, mutable, ref, hijax))
        elif isinstance(x, Variable):
            leaves.append(x.copy())
        else:
            leaves.append(x)
    return unflatten(flat.graphdef, leaves)


def with_vars(tree: Any, **kwargs) -> Any:
    """Alias of :func:`vars_as`."""
    return vars_as(tree, **kwargs)


def to_refs(tree: Any) -> Any:
    """Alias of ``vars_as(tree, ref=True)``: Variables backed by ``jax.Ref``."""
    return vars_as(tree, ref=True)


def to_arrays(tree: Any) -> Any:
    """Alias of ``vars_as(tree, ref=False, hijax=False)``: plain Variables."""
    return vars_as(tree, ref=False, hijax=False)


def mutable(tree: Any) -> Any:
    """Alias of ``vars_as(tree, mutable=True)`` (the mutable-arrays era name)."""
    return vars_as(tree, mutable=True)


def freeze(tree: Any) -> Any:
    """Alias of ``vars_as(tree, mutable=False)`` (the mutable-arrays era name)."""
    return vars_as(tree, mutable=False)


def as_immutable_vars(tree: A, /, *, only: Any = ..., allow_duplicates: bool | None = None) -> A:
    """Alias of ``vars_as(tree, mutable=False)``: immutable plain Variables.

    What ``jax.grad`` takes.

    Args:
        tree: the Variables to convert: a Variable, a module, a State or a pytree.
        only: a filter: only the Variables it matches are converted (see :func:`vars_as`).
        allow_duplicates: False raises when a Variable to convert is reachable at
            several paths, as Flax NNX does; True or None keep it shared.

    Returns:
        The converted copy.
    """
    return vars_as(tree, mutable=False, only=only, allow_duplicates=allow_duplicates)


def as_mutable_vars(tree: A, /, *, only: Any = ..., allow_duplicates: bool | None = None) -> A:
    """Alias of ``vars_as(tree, mutable=True)``: mutable Variables again.

    Each gets back the mode it had before freezing (ref if it was plain).

    Args:
        tree: the Variables to convert: a Variable, a module, a State or a pytree.
        only: a filter: only the Variables it matches are converted (see :func:`vars_as`).
        allow_duplicates: False raises when a Variable to convert is reachable at
            several paths, as Flax NNX does; True or None keep it shared.

    Returns:
        The converted copy.
    """
    return vars_as(tree, mutable=True, only=only, allow_duplicates=allow_duplicates)


def as_hijax_vars(tree: A, /, *, only: Any = ..., allow_duplicates: bool | None = None) -> A:
    """Alias of ``vars_as(tree, hijax=True)``: hijax Variables.

    Args:
        tree: the Variables to convert: a Variable, a module, a State or a pytree.
        only: a filter: only the Variables it matches are converted (see :func:`vars_as`).
        allow_duplicates: False raises when a Variable to convert is reachable at
            several paths, as Flax NNX does; True or None keep it shared.

    Returns:
        The converted copy.
    """
    return vars_as(tree, hijax=True, only=only, allow_duplicates=allow_duplicates)


def as_pytree_vars(tree: A, /, *, only: Any = ..., allow_duplicates: bool | None = None) -> A:
    """Alias of ``vars_as(tree, hijax=False)``: hijax Variables made plain.

    Ref and plain Variables stay as they are, as in Flax NNX.

    Args:
        tree: the Variables to convert: a Variable, a module, a State or a pytree.
        only: a filter: only the Variables it matches are converted (see :func:`vars_as`).
        allow_duplicates: False raises when a Variable to convert is reachable at
            several paths, as Flax NNX does; True or None keep it shared.

    Returns:
        The converted copy.
    """
    return vars_as(tree, hijax=False, only=only, allow_duplicates=allow_duplicates)


def as_ref_vars(tree: A, /, *, only: Any = ..., allow_duplicates: bool | None = None) -> A:
    """Alias of ``vars_as(tree, ref=True)``: Variables backed by ``jax.Ref``.

    Args:
        tree: the Variables to convert: a Variable, a module, a State or a pytree.
        only: a filter: only the Variables it matches are converted (see :func:`vars_as`).
        allow_duplicates: False raises when a Variable to convert is reachable at
            several paths, as Flax NNX does; True or None keep it shared.

    Returns:
        The converted copy.
    """
    return vars_as(tree, ref=True, only=only, allow_duplicates=allow_duplicates)


def as_array_vars(tree: A, /, *, only: Any = ..., allow_duplicates: bool | None = None) -> A:
    """Alias of ``vars_as(tree, ref=False)``: ref Variables made plain.

    Hijax Variables stay hijax, as in Flax NNX; :func:`to_arrays` makes every
    Variable plain.

    Args:
        tree: the Variables to convert: a Variable, a module, a State or a pytree.
        only: a filter: only the Variables it matches are converted (see :func:`vars_as`).
        allow_duplicates: False raises when a Variable to convert is reachable at
            several paths, as Flax NNX does; True or None keep it shared.

    Returns:
        The converted copy.
    """
    return vars_as(tree, ref=False, only=only, allow_duplicates=allow_duplicates)
