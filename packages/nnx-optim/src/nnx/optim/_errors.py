"""Error types of nnx-optim. Every message says what happened, where, and what to do."""

from __future__ import annotations

from nnx.core import NnxError, StructureError


class OptimError(NnxError):
    """Base class of the errors raised by nnx-optim."""


class GradientStructureError(OptimError, StructureError):
    """Gradients (or EMA sources) do not match the Variables selected by ``wrt``."""


class MetricArgumentError(OptimError, TypeError):
    """A metric's ``update`` did not receive the keyword argument it reads."""
