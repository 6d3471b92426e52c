"""``vars_as``: convert every Variable of a tree to another storage mode."""

from __future__ import annotations

from typing import Any

from nnx.core._filters import to_predicate
from nnx.core._graph import flatten, unflatten
from nnx.core._variables import HIJAX, PLAIN, REF, Variable

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


def vars_as(
    tree: Any,
    *,
    mutable: bool | None = None,
    ref: bool | None = None,
    hijax: bool | None = None,
    only: Any = ...,
) -> Any:
    """A copy of ``tree`` with every Variable converted to another storage mode.

    Example::

        frozen = nnx.vars_as(model, mutable=False)   # plain values, writes raise
        refs = nnx.vars_as(model, ref=True)          # values in jax.Ref
        hi = nnx.vars_as(model, hijax=True)          # hijax Variables

    ``mutable=False`` gives immutable plain Variables (what ``jax.grad``
    needs); ``mutable=True`` makes them mutable again, in the mode they had
    before freezing (``ref`` if they were plain). Shared Variables stay shared
    in the copy. ``tree`` may be a Variable, a module, a State or any pytree
    of them; ``only`` (a filter) limits which Variables are converted.
    """
    if isinstance(tree, Variable):
        return _convert(tree, mutable, ref, hijax)
    flat = flatten(tree, with_paths=only is not ...)
    pred = to_predicate(only) if only is not ... else None
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


def as_immutable_vars(tree: Any) -> Any:
    """Alias of ``vars_as(tree, mutable=False)``."""
    return vars_as(tree, mutable=False)


def as_mutable_vars(tree: Any) -> Any:
    """Alias of ``vars_as(tree, mutable=True)``."""
    return vars_as(tree, mutable=True)


def as_hijax_vars(tree: Any) -> Any:
    """Alias of ``vars_as(tree, hijax=True)``."""
    return vars_as(tree, hijax=True)


def as_pytree_vars(tree: Any) -> Any:
    """Alias of ``vars_as(tree, hijax=False)``."""
    return vars_as(tree, hijax=False)


def as_ref_vars(tree: Any) -> Any:
    """Alias of ``vars_as(tree, ref=True)``."""
    return vars_as(tree, ref=True)


def as_array_vars(tree: Any) -> Any:
    """Alias of ``vars_as(tree, ref=False)``."""
    return vars_as(tree, ref=False)
