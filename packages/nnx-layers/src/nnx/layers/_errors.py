"""Error types of nnx-layers. Every message names the layer, what it expected, and what to do."""

from __future__ import annotations

from nnx.core import NnxError


class LayerError(NnxError, ValueError):
    """A layer was built or called with arguments it cannot use."""


class ShapeError(LayerError):
    """An input or an initializer's output does not have the shape the layer expects."""


class MissingRngsError(LayerError):
    """A layer needs randomness at call time (Dropout) but has no random stream."""
