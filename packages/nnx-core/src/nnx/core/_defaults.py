"""Default storage mode of new Variables: ``var_defaults`` and its aliases."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class _Mode:
    hijax: bool = False
    ref: bool = False


_lock = threading.Lock()
_process_default = _Mode()
_local = threading.local()


def _current() -> _Mode:
    mode = getattr(_local, "mode", None)
    if mode is None:
        mode = _local.mode = _process_default
    return mode


def _set(mode: _Mode) -> None:
    global _process_default
    with _lock:
        _process_default = mode
    _local.mode = mode


class VarDefaults:
    """The Variable storage defaults, returned by :func:`var_defaults`.

    Reading: ``nnx.var_defaults().hijax``. The object also works as a context
    manager that restores the settings that were in force before the call that
    created it::

        with nnx.var_defaults(hijax=True):
            v = nnx.Variable(jnp.zeros(3))   # hijax Variable
        # previous defaults restored here
    """

    __slots__ = ("_mode", "_previous")

    def __init__(self, mode: _Mode, previous: _Mode):
        self._mode = mode
        self._previous = previous

    @property
    def hijax(self) -> bool:
        return self._mode.hijax

    @property
    def ref(self) -> bool:
        return self._mode.ref

    def __enter__(self) -> VarDefaults:
        return self

    def __exit__(self, *exc) -> None:
        _set(self._previous)

    def __iter__(self):
        yield self.hijax
        yield self.ref

    def __repr__(self) -> str:
        return f"VarDefaults(hijax={self.hijax}, ref={self.ref})"


def var_defaults(*, hijax: bool | None = None, ref: bool | None = None) -> VarDefaults:
    """Read or change the storage mode of Variables created from now on.

    ``var_defaults()`` returns the current setting. ``var_defaults(hijax=True)``
    changes it at once (for this thread and for threads started later) and
    returns an object whose context manager restores the previous setting::

        nnx.var_defaults(hijax=True)          # global setter
        with nnx.var_defaults(ref=True):      # scoped
            ...

    Args:
      hijax: new Variables are JAX hi-types that plain ``jax.jit`` can mutate.
      ref: new Variables keep their value in a ``jax.Ref``.
    """
    previous = _current()
    if hijax is None and ref is None:
        return VarDefaults(previous, previous)
    new = _Mode(
        hijax=previous.hijax if hijax is None else bool(hijax),
        ref=previous.ref if ref is None else bool(ref),
    )
    if hijax and ref is None:
        new = _Mode(hijax=True, ref=False)
    if ref and hijax is None:
        new = _Mode(hijax=False, ref=True)
    _set(new)
    return VarDefaults(new, previous)


def use_refs(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(ref=flag)`` (the array-refs era name)."""
    return var_defaults(ref=flag, hijax=False if flag else None)


def use_hijax(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(hijax=flag)``."""
    return var_defaults(hijax=flag, ref=False if flag else None)


def use_mutable_arrays(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(ref=flag)`` (the mutable-arrays era name)."""
    return use_refs(flag)
