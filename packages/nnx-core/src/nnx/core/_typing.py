"""Type variables and aliases that Flax NNX exports for annotations.

``class Count(nnx.Variable[nnx.A])`` and ``def f(m: nnx.M) -> nnx.M`` work as they
do with ``from flax import nnx``.
"""

from __future__ import annotations

from typing import TypeVar

from nnx.core._module import Module
from nnx.core._variables import A, Variable

M = TypeVar("M", bound=Module)
"""A type variable bound to :class:`Module` (``def f(m: nnx.M) -> nnx.M``)."""

VariableState = Variable
"""Alias of :class:`Variable` (Flax NNX removed ``VariableState``; old code still names it)."""

__all__ = ["A", "M", "VariableState"]
