"""What Pytree attribute writes are checked against, below ``_pytree``: the
``nnx.data``/``nnx.static`` markers, the ``nnx.Data``/``nnx.Static`` class
annotations, and the trace a Pytree was created in."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from typing import Annotated, Any, TypeVar

from jax.extend.core import get_opaque_trace_state

from nnx.core._errors import PytreeStaticError, TraceContextError

A = TypeVar("A")
_DATA_TAG = "__nnx_data__"
_STATIC_TAG = "__nnx_static__"

Data = Annotated[A, _DATA_TAG]
Data.__doc__ = """Annotation that marks a class attribute as data (a pytree child).

``x: nnx.Data[int]`` on a Pytree subclass makes ``self.x = 3`` data, as
``self.x = nnx.data(3)`` would, for every instance::

    @dataclasses.dataclass
    class Foo(nnx.Pytree):
        a: nnx.Data[int]   # data: jax.tree.leaves(Foo(1, "x")) == [1]
        b: str             # static
"""

Static = Annotated[A, _STATIC_TAG]
Static.__doc__ = """Annotation that marks a class attribute as static (part of the tree structure).

``cfg: nnx.Static[dict]`` makes ``self.cfg = {...}`` static, as ``nnx.static(...)``
would, for every instance; a value holding arrays is a :class:`PytreeStaticError`.
"""

# `from __future__ import annotations` keeps annotations as strings.
_STR_TAG = re.compile(r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*\.)*(Data|Static)\s*(\[|$)")


def _annotation_status(ann) -> bool | None:
    """True for ``Data[...]``, False for ``Static[...]``, None for other annotations."""
    meta = getattr(ann, "__metadata__", None)
    if meta:
        if _DATA_TAG in meta:
            return True
        if _STATIC_TAG in meta:
            return False
        return None
    if ann is Data:
        return True
    if ann is Static:
        return False
    if isinstance(ann, str):
        m = _STR_TAG.match(ann)
        if m:
            return m.group(1) == "Data"
    return None


def _class_annotations(cls: type) -> dict[str, bool]:
    """``{name: is_data}`` for the attributes the class (and its bases) annotate."""
    out: dict[str, bool] = {}
    for base in reversed(cls.__mro__):
        out.update(base.__dict__.get("_nnx_annotated", {}) if base is not cls else {})
    for name, ann in cls.__dict__.get("__annotations__", {}).items():
        status = _annotation_status(ann)
        if status is not None:
            out[name] = status
    for name, value in cls.__dict__.items():
        # dataclass fields from `nnx.data(...)` / `nnx.static(...)` or with
        # `dataclasses.field(metadata={"static": ...})`
        if isinstance(value, dataclasses.Field) and "static" in value.metadata:
            out[name] = not value.metadata["static"]
    return out


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
