"""What Pytree attribute writes are checked against, below ``_pytree``: the
``nnx.data``/``nnx.static`` markers, and the trace a Pytree was created in."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from jax.extend.core import get_opaque_trace_state

from nnx.core._errors import PytreeStaticError, TraceContextError


class _MissingType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _MissingType()  # "no value given" (None is a value)

GRAPH = "graph"


class _Marker:
    __slots__ = ("value", "is_data")

    def __init__(self, value, is_data):
        self.value = value
        self.is_data = is_data  # True (data), False (static) or GRAPH (graph_ref)


def holds_marker(x: Any, depth: int = 0) -> bool:
    """Whether an ``nnx.data``/``nnx.static`` marker sits inside the containers of ``x``."""
    if type(x) is _Marker:
        return True
    if depth > 20:
        return False
    if isinstance(x, (list, tuple)):
        return any(holds_marker(y, depth + 1) for y in x)
    if isinstance(x, dict):
        return any(holds_marker(y, depth + 1) for y in x.values())
    return False


def marker_inside_error(obj: Any, name: str) -> PytreeStaticError:
    return PytreeStaticError(
        f"Found an nnx.data(...) or nnx.static(...) marker inside {type(obj).__name__}.{name}: "
        "markers only work when assigned directly to an attribute "
        f"(`self.{name} = nnx.data([...])`), not inside lists, dicts or tuples."
    )


class _TraceChecks(threading.local):
    off = 0  # > 0 inside trace_checks_off(): writes that are undone before it ends


_TRACE_CHECKS = _TraceChecks()


@contextlib.contextmanager
def trace_checks_off():
    """Allow writes to Pytrees made outside the current trace, for code that undoes them
    before it returns (``nnx.capture`` plants and pops its Variables around a call)."""
    _TRACE_CHECKS.off += 1
    try:
        yield
    finally:
        _TRACE_CHECKS.off -= 1


def check_write(trace: Any, obj: Any, name: str) -> None:
    """Refuse a write, under a JAX transform, to a Pytree made outside it (a capture)."""
    if trace is None or _TRACE_CHECKS.off:
        return
    if trace != get_opaque_trace_state(convention="nnx"):
        raise TraceContextError(
            f"Cannot set {type(obj).__name__}.{name} from a different trace level: this "
            f"{type(obj).__name__} was created outside the JAX transform that is running and "
            "is written inside it (a capture), which would leak the transform's values. Pass "
            "it as an argument of the transform (`nnx.jit(f)(obj)`, `jax.jit(f)(obj)`) and "
            "return what should come out."
        )
