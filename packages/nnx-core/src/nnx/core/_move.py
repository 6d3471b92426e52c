"""Moving a rebuilt graph into the objects it stands for, in place.

A graph changed somewhere else (inside a JAX transform, or on the other side
of a ``split``/``merge``) comes back as *fresh* objects. :func:`move_into`
makes the caller's own objects take the fresh objects' contents, so every
reference the caller holds sees the change: an attribute added inside is
there, one deleted is gone, a submodule swapped is swapped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nnx.core import _epoch
from nnx.core._pytree import Dict, List, Pytree
from nnx.core._state import State
from nnx.core._variables import Variable


def move_into(pairs: Iterable[tuple[Any, Any]], rest: Iterable[Any] = ()) -> dict[int, Any]:
    """Give each target the contents of its fresh object, in place.

    Example::

        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        fresh = nnx.clone(model)
        fresh.note = "changed"          # a change made to another copy
        del fresh.bias
        nnx.move_into([(fresh, model)])
        model.note, hasattr(model, "bias")   # ('changed', False)

    ``pairs`` holds ``(fresh, target)`` of the same type: Pytrees (a target
    takes the fresh object's attributes), Variables (the value and metadata;
    the target keeps its type, storage mode and identity), ``nnx.List`` and
    ``nnx.Dict`` (their items). A fresh object met as a child of another one
    in ``pairs`` becomes its target there, so shared structure stays shared.

    ``rest``: the other fresh objects of the same graph (they stay themselves,
    and their children that have a target are replaced by it).

    Returns ``{id(fresh): target}``, to substitute targets elsewhere (an
    output built together with the fresh objects).

    Raises:
      TypeError: a fresh object and its target are of different types.
    """
    pairs = list(pairs)
    moved: dict[int, Any] = {}
    for fresh, target in pairs:
        if type(fresh) is not type(target):
            raise TypeError(
                f"move_into: cannot move a {type(fresh).__name__} into a "
                f"{type(target).__name__}; each pair needs two objects of one type."
            )
        moved[id(fresh)] = target
    pairs.extend((x, x) for x in rest if id(x) not in moved)
    for fresh, target in pairs:
        if isinstance(fresh, Variable):
            if fresh is not target:
                target.update_from_state(fresh)
        elif isinstance(fresh, Pytree):
            d, forced = fresh.__getstate__()
            new = {k: substitute(v, moved) for k, v in d.items()}
            target.__dict__.clear()
            target.__setstate__((new, dict(forced) if forced else None))
        elif isinstance(fresh, List):
            items = [substitute(v, moved) for v in fresh]
            list.clear(target)
            list.extend(target, items)
        elif isinstance(fresh, Dict):
            entries = {k: substitute(v, moved) for k, v in fresh.items()}
            dict.clear(target)
            dict.update(target, entries)
        else:
            raise TypeError(
                f"move_into: a {type(fresh).__name__} has no identity in a graph; pairs "
                "hold Pytrees, Variables, nnx.List or nnx.Dict."
            )
    _epoch.bump()
    return moved


def substitute(x: Any, moved: dict[int, Any]) -> Any:
    """``x`` with every object whose id is in ``moved`` replaced by ``moved[id]``
    (through lists, dicts and tuples; other objects as they are)."""
    hit = moved.get(id(x))
    if hit is not None:
        return hit
    if isinstance(x, (Pytree, Variable, List, Dict, State)):
        return x
    t = type(x)
    if isinstance(x, list):
        return t([substitute(v, moved) for v in x])
    if isinstance(x, dict):
        return t({k: substitute(v, moved) for k, v in x.items()})
    if isinstance(x, tuple):
        items = [substitute(v, moved) for v in x]
        return t(*items) if hasattr(x, "_fields") else t(items)
    return x
