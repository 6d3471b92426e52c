"""Error types of nnx-transforms. Each message says what happened, where, and what to do.

The transforms also raise nnx-core's own types where they fit:
``nnx.TraceContextError`` (an outer Variable written inside a trace),
``nnx.AliasingError`` (one Variable reaching a boundary twice in conflicting
roles) and ``nnx.StructureError`` (an object graph changed shape).
"""

from __future__ import annotations

from nnx.core import AliasingError, NnxError, StructureError, TraceContextError


class TransformError(NnxError):
    """Base class of the errors that only nnx transforms raise."""


class AxisError(TransformError, ValueError):
    """``in_axes``/``out_axes`` of ``vmap``/``scan`` do not fit the arguments."""


class CarryError(TransformError, StructureError):
    """A loop carry changed structure, type or identity between iterations."""


class EscapeError(TransformError, ValueError):
    """An object created outside a transform was returned from inside it."""


class DonatedBufferError(TransformError, RuntimeError):
    """A Variable's array was deleted: its buffer was donated to a call that did not finish.

    With ``nnx.jit(..., donate_argnums=...)`` JAX hands the donated arrays to
    the compiled program; when that call fails, they are gone and the Variables
    that held them cannot be used again.
    """


__all__ = [
    "DonatedBufferError",
    "AliasingError",
    "AxisError",
    "CarryError",
    "EscapeError",
    "StructureError",
    "TraceContextError",
    "TransformError",
]
