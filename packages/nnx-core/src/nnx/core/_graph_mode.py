"""How nnx transforms treat objects: ``set_graph_mode`` and ``set_graph_updates``.

Two settings, read by every transform whose ``graph=`` / ``graph_updates=``
argument is left at ``None``:

- **graph mode** (``graph=True``, the default): object graphs cross a
  transform with their sharing kept; ``graph=False`` is *tree mode*: the
  arguments are trees, an object reachable twice is an error;
- **graph updates** (``graph_updates=True``, the default): what the
  transform does with structural changes made inside it (see the
  transforms' docstrings); ``False`` leaves them inside.

They are kept the way :func:`nnx.var_defaults` keeps the Variable defaults: a
plain call changes the process default (every thread not inside a block), a
``with`` block or a decorated function changes it for the current thread only.
"""

from __future__ import annotations

import functools
import threading

from nnx.core._defaults import _scoped_use


class GraphMode:
    """The two transform settings, as returned by :func:`graph_settings`.

    There are four instances, one per combination, so they compare (and hash)
    by identity; ``GraphMode(graph, graph_updates)`` returns one of them.

    >>> import nnx
    >>> nnx.GraphMode(False, True) is nnx.resolve_graph_mode(graph=False, graph_updates=True)
    True

    Attributes:
      graph: True in graph mode, False in tree mode.
      graph_updates: True when graph updates are on.
    """

    __slots__ = ("graph", "graph_updates")

    graph: bool
    graph_updates: bool

    def __new__(cls, graph: bool = True, graph_updates: bool = True) -> GraphMode:
        return _MODES[(bool(graph), bool(graph_updates))]

    def __setattr__(self, name, value):
        raise AttributeError(
            "GraphMode is immutable; change the settings with nnx.set_graph_mode / "
            "nnx.set_graph_updates."
        )

    def __reduce__(self):
        return (GraphMode, (self.graph, self.graph_updates))

    def __repr__(self) -> str:
        return f"GraphMode(graph={self.graph}, graph_updates={self.graph_updates})"


def _make(graph: bool, updates: bool) -> GraphMode:
    m = object.__new__(GraphMode)
    object.__setattr__(m, "graph", graph)
    object.__setattr__(m, "graph_updates", updates)
    return m


_MODES = {(g, u): _make(g, u) for g in (True, False) for u in (True, False)}
DEFAULT_MODE = _MODES[(True, True)]

_lock = threading.Lock()
_process = [DEFAULT_MODE]


class _Local(threading.local):
    # A class default, so that reading a thread's unset override is a plain attribute
    # read: getattr(local, name, None) on a bare threading.local raises and catches an
    # AttributeError inside, which cost ~1 µs on every transform call.
    mode: GraphMode | None = None


_local = _Local()  # .mode: this thread's override, or None


def graph_settings() -> GraphMode:
    """The transform settings in force in this thread.

    >>> import nnx
    >>> nnx.graph_settings().graph
    True
    >>> with nnx.set_graph_mode(False):
    ...     nnx.graph_settings().graph
    False

    Returns:
      A :class:`GraphMode`; ``graph_settings().graph`` is False in tree mode,
      ``graph_settings().graph_updates`` is False when graph updates are off.
    """
    mode = _local.mode
    return _process[0] if mode is None else mode


def resolve_graph_mode(graph: bool | None = None, graph_updates: bool | None = None) -> GraphMode:
    """The :class:`GraphMode` a transform uses for its ``graph``/``graph_updates`` arguments.

    >>> import nnx
    >>> mode = nnx.resolve_graph_mode(graph=False)  # graph_updates: the current setting
    >>> mode.graph, mode.graph_updates
    (False, True)

    Args:
      graph: True (graph mode), False (tree mode) or None (the current setting).
      graph_updates: True, False or None (the current setting).

    Returns:
      The current settings with the arguments that are not None in their place.
    """
    cur = graph_settings()
    if graph is None and graph_updates is None:
        return cur
    return _MODES[
        (
            cur.graph if graph is None else bool(graph),
            cur.graph_updates if graph_updates is None else bool(graph_updates),
        )
    ]


class GraphSetting:
    """The result of :func:`set_graph_mode` / :func:`set_graph_updates`.

    A plain call has already changed the process default; ``restore()`` undoes
    it. Used as ``with`` (or as a decorator), the change applies to the current
    thread for the block (or for each call of the decorated function) only.
    Made by those two functions, not directly.

    >>> import nnx
    >>> old = nnx.set_graph_updates(False)  # a plain call: the process default
    >>> old.previous.graph_updates, nnx.graph_settings().graph_updates
    (True, False)
    >>> old.restore()
    >>> nnx.graph_settings().graph_updates
    True

    Args:
      field: ``"graph"`` or ``"graph_updates"``.
      value: the new value of that setting.
      scoped: True when the call feeds a ``with`` statement or a decorator (then
        nothing changes until the block is entered or the function is called).
    """

    __slots__ = ("_field", "_value", "_previous", "_prev_local", "_prev_process", "_state")

    def __init__(self, field: str, value: bool, scoped: bool):
        self._field = field
        self._value = bool(value)
        self._previous: GraphMode = graph_settings()
        self._prev_local: GraphMode | None = getattr(_local, "mode", None)
        self._prev_process: GraphMode | None = None
        if scoped:
            self._state = "pending"  # applied on __enter__ / per decorated call
            return
        new = self._apply(self._previous)
        with _lock:
            self._prev_process = _process[0]
            _process[0] = new
        if self._prev_local is not None:  # inside a block of this thread: effective here too
            _local.mode = new
        self._state = "global"

    def _apply(self, base: GraphMode) -> GraphMode:
        if self._field == "graph":
            return _MODES[(self._value, base.graph_updates)]
        return _MODES[(base.graph, self._value)]

    @property
    def previous(self) -> GraphMode:
        """The settings in force before the call that made this object."""
        return self._previous

    @property
    def graph(self) -> bool:
        """Whether graph mode is on after the call (False: tree mode)."""
        return self._apply(self._previous).graph

    @property
    def graph_updates(self) -> bool:
        """Whether graph updates are on after the call."""
        return self._apply(self._previous).graph_updates

    def __enter__(self) -> GraphSetting:
        if self._state == "global":  # stored first, then entered: move it to this thread
            with _lock:
                if self._prev_process is not None:
                    _process[0] = self._prev_process
            before = self._prev_process if self._prev_local is None else self._prev_local
            assert before is not None  # a global call recorded the process default
            self._previous = before
        else:
            self._prev_local = getattr(_local, "mode", None)
            self._previous = graph_settings()
        _local.mode = self._apply(self._previous)
        self._state = "scoped"
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the settings from before the call (what a ``with`` block does on exit)."""
        if self._state == "global":
            with _lock:
                if self._prev_process is not None:
                    _process[0] = self._prev_process
            if self._prev_local is not None:
                _local.mode = self._prev_local
        elif self._state == "scoped":
            _local.mode = self._prev_local
        self._state = "done"

    def __call__(self, fn):
        """Decorator form: the setting applies to this thread during each call of ``fn``."""
        if not callable(fn):
            self.restore()
            raise TypeError(
                f"set_{self._field if self._field == 'graph_updates' else 'graph_mode'}(...) "
                f"used as a decorator needs a function, got {type(fn).__name__}."
            )
        if self._state == "global":  # stored first, then applied: take the process change back
            self.restore()
        self._state = "done"
        field, value = self._field, self._value

        @functools.wraps(fn)
        def with_graph_setting(*args, **kwargs):
            with GraphSetting(field, value, scoped=True):
                return fn(*args, **kwargs)

        return with_graph_setting

    def __repr__(self) -> str:
        return f"GraphSetting({self._field}={self._value})"


def set_graph_mode(flag: bool) -> GraphSetting:
    """Turn graph mode on (``True``) or tree mode on (``False``) for nnx transforms.

    A plain call changes the process default; ``with nnx.set_graph_mode(False):``
    and ``@nnx.set_graph_mode(False)`` (above a def) change it for the current
    thread only, for the block or for each call of the function. Transforms
    read it at each call when their ``graph=`` argument is None.

    In tree mode, arguments cross a transform as trees: an object (Variable or
    module) reachable twice is an ``nnx.AliasingError`` naming both paths;
    Variable values written inside are propagated; structural changes of the
    arguments are not; objects returned are new objects.

    The default is graph mode, as in Flax NNX 0.12.8.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> m = nnx.Dict(w=nnx.Param(jnp.ones(2)))
    >>> @nnx.set_graph_mode(False)
    ... def step(a, b):  # tree mode for each call: the same Variable twice is refused
    ...     return nnx.jit(lambda a, b: a["w"].value + b["w"].value)(a, b)
    >>> try:
    ...     step(m, m)
    ... except nnx.AliasingError:
    ...     print("shared")
    shared
    >>> float(nnx.jit(lambda a, b: (a["w"].value + b["w"].value).sum())(m, m))
    4.0

    Args:
      flag: True for graph mode, False for tree mode.

    Returns:
      A :class:`GraphSetting` (``restore()``, ``previous``; a context manager
      and a decorator).
    """
    return GraphSetting("graph", flag, _scoped_use(1))


def set_graph_updates(flag: bool) -> GraphSetting:
    """Turn the propagation of graph updates out of nnx transforms on or off.

    With ``False``, a transform in graph mode keeps sharing and propagates
    Variable values written inside, and leaves structural changes made to its
    arguments (new or removed attributes, static attribute changes) inside:
    the caller's objects keep their structure. With ``True`` (the default, as
    in Flax NNX 0.12.8) nnx raises ``nnx.StructureError`` for such a change
    (do model surgery outside the transform) instead of propagating it as
    Flax does; later Flax releases turn graph updates off by default. Same
    scoping rules as :func:`set_graph_mode`.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> m = nnx.Dict(w=nnx.Param(jnp.ones(2)))
    >>> @nnx.jit(graph_updates=False)
    ... def grow(m):
    ...     m["extra"] = nnx.Param(jnp.zeros(1))  # a structural change stays inside
    ...     m["w"].value = m["w"].value * 3.0        # a Variable write comes out
    >>> grow(m)
    >>> sorted(m), m["w"].value.tolist()
    (['w'], [3.0, 3.0])

    Args:
      flag: True to propagate graph updates (nnx: to report them), False to
        leave them inside the transform.

    Returns:
      A :class:`GraphSetting` (``restore()``, ``previous``; a context manager
      and a decorator).
    """
    return GraphSetting("graph_updates", flag, _scoped_use(1))
