"""``jit_partial`` and ``cached_partial``: bind long-lived objects to a step function.

Both are built on :func:`nnx.jit` (whose call path already caches the flattening
of its arguments), so they share its correctness rules: a change to anything the
bound objects reach is seen by the next call.

``cached_partial`` follows Flax's documented contract: the function receives
*clones* of the cached objects that share their Variables, and the clones must
keep their structure from call to call. Unlike Flax, the clones are rebuilt when
the caller changes the originals (a submodule swapped, an item of a plain dict or
list replaced), so a cached call never computes with stale objects.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from nnx.core import (
    FlattenCache,
    Pytree,
    StructureError,
    Variable,
    flatten,
    state,
    unflatten,
    update,
)
from nnx.transforms._jit import jit
from nnx.transforms._lifted import eval_shape

__all__ = ["jit_partial", "cached_partial", "JitPartial", "CachedPartial"]


def _fn_name(f) -> str:
    return getattr(f, "__name__", None) or type(f).__name__


def _jit_accepts(name: str) -> bool:
    try:
        return name in inspect.signature(jit).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


# -- jit_partial ------------------------------------------------------------------------
class JitPartial:
    """What :func:`jit_partial` returns: call it with the remaining arguments."""

    def __init__(self, fun: Callable, partial_args: tuple, options: dict):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.partial_args = partial_args
        self._jitted: Any = jit(fun, **options)

    def __call__(self, *args, **kwargs):
        return self._jitted(*self.partial_args, *args, **kwargs)

    def lower(self, *args, **kwargs):
        """``jax.jit(...).lower`` for the bound and the given arguments."""
        return self._jitted.lower(*self.partial_args, *args, **kwargs)

    def eval_shape(self, *args, **kwargs):
        """The output's shapes and dtypes (:func:`nnx.eval_shape`; nothing is written)."""
        return eval_shape(self.fun, *self.partial_args, *args, **kwargs)

    def __repr__(self) -> str:
        return f"nnx.jit_partial({_fn_name(self.fun)!r}, {len(self.partial_args)} bound)"


def jit_partial(
    fun: Callable,
    *partial_args: Any,
    in_shardings: Any = None,
    out_shardings: Any = None,
    donate_argnums: int | tuple[int, ...] | None = None,
    donate_argnames: str | tuple[str, ...] | None = None,
    keep_unused: bool = False,
    device: Any = None,
    backend: str | None = None,
    inline: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> JitPartial:
    """JIT-compile ``fun`` with its first arguments bound.

    Example:

    >>> import jax.numpy as jnp, nnx
    >>> class Count(nnx.Module):
    ...     def __init__(self):
    ...         self.n = nnx.Variable(jnp.array(0))
    >>> def step(counter, x):
    ...     counter.n[...] += 1
    ...     return x * counter.n[...]
    >>> counter = Count()
    >>> fast_step = nnx.jit_partial(step, counter)
    >>> float(fast_step(2.0)), float(fast_step(2.0)), int(counter.n[...])
    (2.0, 4.0, 2)

    The bound objects are passed to ``fun`` as its first positional arguments
    on every call. Their Variables may change between calls (no recompilation)
    and every write ``fun`` makes to them reaches the originals after the call.
    Any other change to them (a submodule or a static setting replaced) is seen
    by the next call too, like with :func:`jit`.

    Args:
      fun: the function to compile.
      *partial_args: the objects to bind (``fun``'s first positional arguments).
      in_shardings: as in :func:`jit`; positions count the bound
        arguments first.
      out_shardings: as ``in_shardings``.
      donate_argnums: as in :func:`jit`; positions count the
        bound arguments first (``donate_argnums=(0, 1)`` donates ``model`` and
        ``optimizer`` above).
      donate_argnames: as ``donate_argnums``.
      keep_unused: passed to ``jax.jit``.
      device: as ``keep_unused``.
      backend: as ``keep_unused``.
      inline: as ``keep_unused``.
      graph: accepted for Flax compatibility; passed to
        :func:`jit` when it takes them.
      graph_updates: as ``graph``.
    """
    options: dict[str, Any] = dict(
        in_shardings=in_shardings,
        out_shardings=out_shardings,
        donate_argnums=donate_argnums,
        donate_argnames=donate_argnames,
    )
    if keep_unused:
        options["keep_unused"] = keep_unused
    if device is not None:
        options["device"] = device
    if backend is not None:
        options["backend"] = backend
    if inline:
        options["inline"] = inline
    for name, value in (("graph", graph), ("graph_updates", graph_updates)):
        if value is not None and _jit_accepts(name):
            options[name] = value
    return JitPartial(fun, partial_args, options)


# -- cached_partial ---------------------------------------------------------------------
def _plain_containers(roots) -> list:
    """Every plain list, dict and tuple reachable from ``roots`` (not inside Variables).

    Their content is not watched by the structure epoch, so a cached call
    checks them itself.
    """
    out: list = []
    seen: set[int] = set()

    def walk(x):
        if isinstance(x, Variable) or id(x) in seen:
            return
        if isinstance(x, Pytree):
            seen.add(id(x))
            for v in vars(x).values():
                walk(v)
            return
        t = type(x)
        if t is list or t is tuple:
            seen.add(id(x))
            out.append(x)
            for v in x:
                walk(v)
        elif t is dict:
            seen.add(id(x))
            out.append(x)
            for v in x.values():
                walk(v)

    for r in roots:
        walk(r)
    return out


def _snapshot(container) -> tuple:
    if type(container) is dict:
        return tuple((k, id(v)) for k, v in container.items())
    return tuple(map(id, container))


def _first_difference(before, after) -> str:
    old, new = set(before.paths), set(after.paths)
    for label, paths in (("appeared", new - old), ("disappeared", old - new)):
        if paths:
            p = sorted(paths, key=repr)[0]
            where = "/".join(map(str, p[1:]))
            return f"in cached argument {p[0]}, the entry at {where!r} {label}"
    return "a static attribute (or the kind or metadata of a Variable) changed"


class CachedPartial:
    """What :func:`cached_partial` returns: call it with the remaining arguments."""

    def __init__(self, f: Callable, cached_args: tuple):
        functools.update_wrapper(self, f)
        self.f = f
        self.cached_args = cached_args
        self._cache = FlattenCache()  # over the caller's objects
        self._clone_cache = FlattenCache()  # over the clones the function sees
        self._flat: Any = None
        self._clones: tuple = ()
        self._clone_flat: Any = None
        self._clone_leaves: tuple = ()
        self._containers: list = []
        self._snapshots: list = []

    def __repr__(self) -> str:
        return f"nnx.cached_partial({_fn_name(self.f)!r}, {len(self.cached_args)} cached)"

    def _stale(self) -> bool:
        flat = self._cache.flatten(self.cached_args)
        if flat is not self._flat:
            return True
        return any(_snapshot(c) != snap for c, snap in zip(self._containers, self._snapshots))

    def _rebuild(self) -> None:
        # A fresh flatten (not the cache's): a plain container may have changed
        # without moving the structure epoch.
        flat = flatten(self.cached_args)
        old = self._flat
        # Compare with the leaves the clones were built from: the FlattenCache updates
        # a cached flattening's leaves in place when an array in a plain container is
        # replaced, so `old.leaves` may already show the new array.
        if (
            old is None
            or flat.graphdef != old.graphdef
            or len(flat.leaves) != len(self._clone_leaves)
            or any(a is not b for a, b in zip(flat.leaves, self._clone_leaves))
        ):
            # new objects around the same Variables (and arrays): writes reach the originals
            self._clone_leaves = tuple(flat.leaves)
            self._clones = unflatten(flat.graphdef, list(flat.leaves))
            self._clone_flat = self._clone_cache.flatten(self._clones)
        self._cache = FlattenCache()
        self._flat = self._cache.flatten(self.cached_args)
        self._containers = _plain_containers(self.cached_args)
        self._snapshots = [_snapshot(c) for c in self._containers]

    def _check_clones(self) -> None:
        flat = self._clone_cache.flatten(self._clones)
        if flat is self._clone_flat:
            return
        before = self._clone_flat
        if flat.graphdef != before.graphdef:
            self._clone_cache = FlattenCache()
            self._clone_flat = None
            self._flat = None  # rebuild the clones from the originals next time
            raise StructureError(
                f"nnx.cached_partial({_fn_name(self.f)}): the call changed the structure of "
                f"the cached arguments ({_first_difference(before.graphdef, flat.graphdef)}). "
                "The cached objects must have the same structure after each call: undo "
                "temporary changes before returning (e.g. `nnx.pop(model, nnx.Intermediate)` "
                "after `sow`), or call the function without cached_partial. The change was "
                "not applied to the original objects."
            )
        self._clone_flat = flat
        if len(flat.leaves) == len(before.leaves) and all(
            a is b for a, b in zip(flat.leaves, before.leaves)
        ):
            return  # only the structure epoch moved (elsewhere): nothing to do
        # Same structure, other raw arrays (an array attribute reassigned): the
        # originals get them too.
        update(self.cached_args, state(self._clones))
        self._rebuild()

    def __call__(self, *args, **kwargs):
        if self._flat is None or self._stale():
            self._rebuild()
        out = self.f(*self._clones, *args, **kwargs)
        self._check_clones()
        return out


def cached_partial(f: Callable, *cached_args: Any) -> CachedPartial:
    """Bind ``cached_args`` to ``f`` (usually an :func:`jit`-compiled step) once.

    Example:

    >>> import jax.numpy as jnp, nnx
    >>> class Count(nnx.Module):
    ...     def __init__(self):
    ...         self.n = nnx.Variable(jnp.array(0))
    >>> @nnx.jit
    ... def step(counter, x):
    ...     counter.n[...] += 1
    ...     return x * counter.n[...]
    >>> counter = Count()
    >>> cached_step = nnx.cached_partial(step, counter)
    >>> float(cached_step(2.0)), float(cached_step(2.0)), int(counter.n[...])
    (2.0, 4.0, 2)

    (A training step is the usual case:
    ``nnx.cached_partial(train_step, model, optimizer)(x, y)``.)

    As in Flax, ``f`` receives clones of the cached objects that share their
    Variables, so every write reaches the originals, and the clones must keep
    their structure: a call that leaves them changed (an attribute added or
    removed, a static setting replaced) raises a ``StructureError``. Temporary
    changes undone before returning (``sow`` then ``nnx.pop``) are fine.

    A change the caller makes to the originals between calls (a submodule
    swapped, a new Variable assigned, an item of a plain dict or list replaced)
    is seen by the next call: the clones are rebuilt from the originals.
    """
    return CachedPartial(f, cached_args)
