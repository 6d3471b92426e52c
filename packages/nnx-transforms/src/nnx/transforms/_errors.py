"""Error types of nnx-transforms. Each message says what happened, where, and what to do.

The transforms also raise nnx-core's own types where they fit:
``nnx.TraceContextError`` (an outer Variable written inside a trace),
``nnx.AliasingError`` (one Variable reaching a boundary twice in conflicting
roles) and ``nnx.StructureError`` (an object graph changed shape).
"""

from __future__ import annotations

import jax
import jax.core  # Tracer; jax does not list `core` among its attributes for type checkers

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


class DonatedAttributeError(DonatedBufferError, AttributeError):
    """:class:`DonatedBufferError` for an attribute of a deleted array (``hasattr`` is False)."""


def deleted_array(a) -> bool:
    return isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer) and a.is_deleted()


class DonatedArray:
    """Stands in for an array that a failed donating call deleted.

    Keeps ``shape`` and ``dtype`` (for reprs and shape checks, so that ``nnx.update``
    can restore the Variable); every other use raises :class:`DonatedBufferError`.
    """

    __slots__ = ("shape", "dtype", "message", "where")

    def __init__(self, deleted: jax.Array, message: str, where: str):
        self.shape = deleted.shape
        self.dtype = deleted.dtype
        self.message = message
        self.where = where

    def is_deleted(self) -> bool:
        """True, as for the deleted ``jax.Array`` this stands in for."""
        return True

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _raise(self, *args, **kwargs):  # noqa: ARG002
        raise DonatedBufferError(self.message)

    def __getattr__(self, name: str):
        raise DonatedAttributeError(self.message)

    def __repr__(self) -> str:
        return f"<deleted {self.dtype}{list(self.shape)}: donated to {self.where}, which failed>"

    __array__ = __getitem__ = __iter__ = __len__ = _raise
    __bool__ = __float__ = __int__ = __index__ = __complex__ = _raise
    __neg__ = __pos__ = __abs__ = __invert__ = _raise
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _raise
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _raise
    __mod__ = __rmod__ = __pow__ = __rpow__ = __matmul__ = __rmatmul__ = _raise
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _raise
    __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = _raise
    __lt__ = __le__ = __gt__ = __ge__ = _raise


def _refuse(x: DonatedArray):
    raise DonatedBufferError(x.message)


# JAX looks a value's type up in these two tables before it reports "not a valid JAX
# type" (private tables of JAX 0.10; hijax support reads JAX privates too). With the
# stand-in registered, jnp functions, lax primitives and JAX transforms given a donated
# array raise DonatedBufferError. Should a JAX release move them, JAX's own TypeError
# still shows the stand-in's repr, which says the array was donated.
try:
    from jax._src import core as _jcore
    from jax._src import dtypes as _jdtypes

    _jcore.pytype_aval_mappings[DonatedArray] = _refuse
    _jdtypes.canonicalize_value_handlers[DonatedArray] = _refuse
except (ImportError, AttributeError):  # pragma: no cover
    pass


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
