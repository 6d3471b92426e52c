"""Default storage mode of new Variables: ``var_defaults`` and its aliases.

Two layers of settings:

- the **process default**, changed by a plain call (``nnx.var_defaults(hijax=True)``);
  every thread that is not inside a ``with`` block sees it at once;
- a **thread override**, set by ``with nnx.var_defaults(...):`` for the block only;
  other threads never see it.

One call serves both uses: the call changes the process default, and
``__enter__`` (the start of a ``with`` block) moves the change from the process
default to the thread override before the block's body runs. Between those two
steps (the same statement) another thread may briefly see the new setting; no
thread ever sees a block's setting once its body runs, nor after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class _Mode:
    hijax: bool = False
    ref: bool = False


_lock = threading.Lock()
_process = [_Mode()]  # the process default; a list so that it is replaced in place
_local = threading.local()  # .mode: this thread's override, or None


def _current() -> _Mode:
    mode = getattr(_local, "mode", None)
    return _process[0] if mode is None else mode


class VarDefaults:
    """The Variable storage defaults, returned by :func:`var_defaults`.

    Example::

        nnx.var_defaults().hijax              # read the current setting
        with nnx.var_defaults(hijax=True):    # this thread, this block only
            v = nnx.Variable(jnp.zeros(3))    # a hijax Variable
        old = nnx.var_defaults(ref=True)      # every thread, until changed again
        old.previous                          # VarDefaults(hijax=False, ref=False)
        old.restore()                         # back to the previous setting

    ``hijax`` and ``ref`` are the settings in force after the call that made
    the object; ``previous`` are those before it.
    """

    __slots__ = ("_mode", "_previous", "_prev_local", "_prev_process", "_scoped", "_done")

    def __init__(self, mode: _Mode, previous: _Mode):
        self._mode = mode
        self._previous = previous
        self._prev_local: _Mode | None = None
        self._prev_process: _Mode | None = None
        self._scoped = False
        self._done = True  # a read: nothing to restore

    @classmethod
    def _change(cls, mode, previous, prev_local, prev_process, scoped) -> VarDefaults:
        d = cls(mode, previous)
        d._prev_local, d._prev_process, d._scoped, d._done = prev_local, prev_process, scoped, False
        return d

    @property
    def hijax(self) -> bool:
        return self._mode.hijax

    @property
    def ref(self) -> bool:
        return self._mode.ref

    @property
    def previous(self) -> VarDefaults:
        """The settings that were in force before the call that made this object."""
        return VarDefaults(self._previous, self._previous)

    def __enter__(self) -> VarDefaults:
        if not self._scoped and not self._done:
            # A `with` block: keep the change to this thread, as the block promises.
            prev_process = self._prev_process
            assert prev_process is not None  # set by _change whenever _done is False
            with _lock:
                if _process[0] is self._mode:
                    _process[0] = prev_process
            _local.mode = self._mode
            self._scoped = True
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the settings that were in force before the call that made this object.

        What a ``with`` block does on exit; after a global call
        (``old = nnx.var_defaults(hijax=True)``), ``old.restore()`` undoes it.
        """
        if self._done:
            return
        self._done = True
        if not self._scoped:
            prev_process = self._prev_process
            assert prev_process is not None  # set by _change whenever _done is False
            with _lock:
                _process[0] = prev_process
        _local.mode = self._prev_local

    def __iter__(self):
        yield self.hijax
        yield self.ref

    def __repr__(self) -> str:
        return f"VarDefaults(hijax={self.hijax}, ref={self.ref})"


def _change(hijax: bool | None, ref: bool | None) -> VarDefaults:
    previous = _current()
    if hijax is None and ref is None:
        return VarDefaults(previous, previous)
    if hijax and ref:
        raise ValueError(
            "var_defaults(hijax=True, ref=True): a Variable has one storage mode; "
            "choose hijax=True or ref=True."
        )
    if hijax:
        new = _Mode(hijax=True, ref=False)
    elif ref:
        new = _Mode(hijax=False, ref=True)
    else:
        new = _Mode(
            hijax=previous.hijax if hijax is None else False,
            ref=previous.ref if ref is None else False,
        )
    prev_local = getattr(_local, "mode", None)
    with _lock:
        prev_process = _process[0]
        _process[0] = new
    if prev_local is not None:  # inside a `with` block of this thread: effective here too
        _local.mode = new
    return VarDefaults._change(new, previous, prev_local, prev_process, False)


def var_defaults(*, hijax: bool | None = None, ref: bool | None = None) -> VarDefaults:
    """Read or change the storage mode of Variables created from now on.

    Example::

        nnx.var_defaults()                    # VarDefaults(hijax=False, ref=False)
        with nnx.var_defaults(hijax=True):    # scoped: this thread, this block
            model = MLP(2, 16, 1, rngs=nnx.Rngs(0))  # hijax Variables
        old = nnx.var_defaults(ref=True)      # global: every thread from now on
        old.restore()                         # or nnx.var_defaults(ref=False)

    A ``with`` block changes the setting for the current thread only and
    restores it on exit, also on an exception; other threads, including
    threads started inside the block, keep theirs. A plain call changes the
    process default, seen at once by every thread that is not inside such a
    block, and returns an object whose ``previous`` and ``restore()`` give
    back the setting from before.

    Args:
      hijax: new Variables are JAX hi-types that plain ``jax.jit`` can mutate.
      ref: new Variables keep their value in a ``jax.Ref``.
    """
    return _change(hijax, ref)


def use_refs(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(ref=flag)`` (the array-refs era name).

    Example::

        with nnx.use_refs(True):
            v = nnx.Variable(jnp.zeros(2))   # v.ref is True
    """
    return _change(False if flag else None, flag)


def use_hijax(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(hijax=flag)``.

    Example::

        with nnx.use_hijax(True):
            v = nnx.Variable(jnp.zeros(2))   # v.hijax is True
    """
    return _change(flag, False if flag else None)


def use_mutable_arrays(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(ref=flag)`` (the mutable-arrays era name).

    Example::

        with nnx.use_mutable_arrays(True):
            v = nnx.Variable(jnp.zeros(2))   # v.ref is True
    """
    return _change(False if flag else None, flag)
