"""Default storage mode of new Variables: ``var_defaults`` and its aliases.

Two layers of settings:

- the **process default**, changed by a plain call (``nnx.var_defaults(hijax=True)``);
  every thread that is not inside a ``with`` block sees it at once;
- a **thread override**, set by ``with nnx.var_defaults(...):`` for the block only;
  other threads never see it.

One call serves three uses: a statement (the process default), the
expression of a ``with`` statement (this thread, the block) and a decorator
(this thread, each call of the function). The call tells them apart by the
instruction its result goes to (``BEFORE_WITH``, or the function definition a
decorator applies to): for those two it never touches the process default, so
no other thread can see the setting at any moment. Where the call cannot tell
(the object is stored first, ``d = nnx.var_defaults(...)``, then entered), it
changes the process default and ``__enter__`` (or the decorator) moves the
change to the thread; only then may another thread briefly see it.
"""

from __future__ import annotations

import dis
import functools
import sys
import threading
from dataclasses import dataclass
from types import CodeType


@dataclass(frozen=True)
class _Mode:
    hijax: bool = False
    ref: bool = False


_lock = threading.Lock()
_process = [_Mode()]  # the process default; a list so that it is replaced in place


class _Local(threading.local):
    # A class default, so that reading a thread's unset override is a plain attribute
    # read: getattr(local, name, None) on a bare threading.local raises and catches an
    # AttributeError inside, which cost ~1 µs on every transform call.
    mode: _Mode | None = None


_local = _Local()  # .mode: this thread's override, or None


def _current() -> _Mode:
    mode = _local.mode
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

    __slots__ = (
        "_mode",
        "_previous",
        "_prev_local",
        "_prev_process",
        "_scoped",
        "_done",
        "_request",
        "_pending",
    )

    def __init__(self, mode: _Mode, previous: _Mode):
        self._mode = mode
        self._previous = previous
        self._prev_local: _Mode | None = None
        self._prev_process: _Mode | None = None
        self._scoped = False
        self._done = True  # a read: nothing to restore
        self._request: tuple[bool | None, bool | None] = (None, None)
        self._pending = False  # a `with`/decorator call: nothing applied yet

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
        if self._pending:  # the call saw the `with`: the process default was never changed
            self._pending = False
            self._prev_local = getattr(_local, "mode", None)
            _local.mode = self._mode
            self._scoped, self._done = True, False
            return self
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

    def __call__(self, fn):
        """Decorator form: ``@nnx.var_defaults(hijax=True)`` applies the setting
        to this thread during each call of ``fn`` only."""
        if not callable(fn):
            raise TypeError(
                f"var_defaults(...) used as a decorator needs a function, got "
                f"{type(fn).__name__}. Write `@nnx.var_defaults(hijax=True)` above a def."
            )
        if not self._pending and not self._done and not self._scoped:
            self.restore()  # stored first, then applied: take the process change back
        self._pending = False
        hijax, ref = self._request

        @functools.wraps(fn)
        def with_var_defaults(*args, **kwargs):
            with _change(hijax, ref, scoped=True):
                return fn(*args, **kwargs)

        return with_var_defaults

    def __iter__(self):
        yield self.hijax
        yield self.ref

    def __repr__(self) -> str:
        return f"VarDefaults(hijax={self.hijax}, ref={self.ref})"


def _change(hijax: bool | None, ref: bool | None, scoped: bool = False) -> VarDefaults:
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
    if scoped:  # for a `with` block or a decorated call: applied on __enter__, this thread only
        d = VarDefaults(new, previous)
        d._pending, d._request = True, (hijax, ref)
        return d
    prev_local = getattr(_local, "mode", None)
    with _lock:
        prev_process = _process[0]
        _process[0] = new
    if prev_local is not None:  # inside a `with` block of this thread: effective here too
        _local.mode = new
    d = VarDefaults._change(new, previous, prev_local, prev_process, False)
    d._request = (hijax, ref)
    return d


# -- telling `with f(...):` and `@f(...)` from a plain call -----------------------
_use_cache: dict[tuple[CodeType, int], bool] = {}
_PASSIVE = frozenset(
    ("BUILD_TUPLE", "BUILD_MAP", "BUILD_CONST_KEY_MAP", "KW_NAMES", "PUSH_NULL", "NOP")
)


def _scoped_use(depth: int) -> bool:
    """Whether the call ``depth`` frames up feeds its result straight into a ``with``
    statement or a decorator (so it must not change the process default)."""
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:
        return False
    key = (frame.f_code, frame.f_lasti)
    found = _use_cache.get(key)
    if found is None:
        try:
            found = _classify(frame.f_code, frame.f_lasti)
        except Exception:  # an unknown bytecode layout: the plain-call meaning
            found = False
        _use_cache[key] = found
    return found


def _classify(code: CodeType, lasti: int) -> bool:
    ins = [i for i in dis.get_instructions(code) if i.opname != "CACHE"]
    at = {i.offset: n for n, i in enumerate(ins)}
    # the instruction that covers `lasti` (3.11 may report one of its CACHE entries)
    n = max((k for k, i in enumerate(ins) if i.offset <= lasti), default=None)
    if n is None:
        return False
    if ins[n].opname == "PRECALL":  # 3.11 reports the PRECALL of a PRECALL/CALL pair
        n += 1
    if n >= len(ins) or not ins[n].opname.startswith("CALL"):
        return False
    n += 1
    while n < len(ins) and ins[n].opname in ("JUMP_FORWARD", "JUMP", "JUMP_NO_INTERRUPT"):
        target = at.get(ins[n].argval)  # `with (a if c else b):` jumps to the with
        if target is None or target <= n:
            return False
        n = target
    if n >= len(ins):
        return False
    op = ins[n].opname
    if op in ("BEFORE_WITH", "BEFORE_ASYNC_WITH"):
        return True
    if op == "COPY" and n + 1 < len(ins) and ins[n + 1].opname == "LOAD_SPECIAL":  # 3.14
        return True
    # a decorator: the function is defined, then the decorators are called on it
    while n < len(ins) and (ins[n].opname.startswith("LOAD_") or ins[n].opname in _PASSIVE):
        n += 1
    if n >= len(ins) or ins[n].opname != "MAKE_FUNCTION":
        return False
    n += 1
    while n < len(ins) and ins[n].opname == "SET_FUNCTION_ATTRIBUTE":
        n += 1
    while n < len(ins) and ins[n].opname in ("PRECALL", "CALL") and ins[n].arg == 0:
        n += 1
        if n < len(ins) and ins[n].opname.startswith("STORE_"):
            return True
    return False


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

    As a decorator, ``@nnx.var_defaults(hijax=True)`` applies the setting to
    the current thread during each call of the decorated function only.

    Which form a call is, is read from the statement it is written in: written
    straight in a ``with`` statement or above a ``def``, it changes nothing
    until the block or call starts, and then only for its thread. A result
    kept in a name first (``d = nnx.var_defaults(hijax=True)``) is a global
    call: every thread sees the change from that line on; a later ``with d:``
    takes it back from the other threads on entry and restores on exit. Write
    the call inside the ``with`` statement to keep other threads unaffected
    throughout.
    """
    return _change(hijax, ref, _scoped_use(1))


def use_refs(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(ref=flag)`` (the array-refs era name).

    Example::

        with nnx.use_refs(True):
            v = nnx.Variable(jnp.zeros(2))   # v.ref is True
    """
    return _change(False if flag else None, flag, _scoped_use(1))


def use_hijax(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(hijax=flag)``.

    Example::

        with nnx.use_hijax(True):
            v = nnx.Variable(jnp.zeros(2))   # v.hijax is True
    """
    return _change(flag, False if flag else None, _scoped_use(1))


def using_hijax() -> bool:
    """Whether new Variables are hijax by default: ``nnx.var_defaults().hijax``.

    Flax NNX's name; its guides save it before ``nnx.use_hijax(True)`` and restore it
    after.

    >>> import nnx
    >>> before = nnx.using_hijax()
    >>> with nnx.use_hijax(True):
    ...     inside = nnx.using_hijax()
    >>> before, inside, nnx.using_hijax()
    (False, True, False)
    """
    return bool(_current().hijax)


def use_mutable_arrays(flag: bool = True) -> VarDefaults:
    """Alias of ``var_defaults(ref=flag)`` (the mutable-arrays era name).

    Example::

        with nnx.use_mutable_arrays(True):
            v = nnx.Variable(jnp.zeros(2))   # v.ref is True
    """
    return _change(False if flag else None, flag, _scoped_use(1))
