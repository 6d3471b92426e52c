"""Error types of nnx-core. Every message says what happened, where, and what to do."""

from __future__ import annotations


class NnxError(Exception):
    """Base class of every error raised by nnx."""


class ImmutableVariableError(NnxError, AttributeError):
    """A write to a Variable whose ``mutable`` is False."""


class TraceContextError(NnxError):
    """A Variable created outside a JAX trace was mutated inside it."""


class FilterError(NnxError, ValueError):
    """A filter list did not cover a Variable, or a filter is malformed."""


class StructureError(NnxError, ValueError):
    """A State does not match the structure of the graph it is applied to."""


class PytreeStaticError(NnxError, TypeError, ValueError):
    """An array or Variable was put in an attribute declared static.

    It is a ``ValueError`` (what Flax NNX raises, and what its guides catch) and,
    as in earlier nnx releases, a ``TypeError``.
    """


class HijaxError(NnxError, ValueError):
    """An operation that JAX forbids on hijax or ref Variables."""


class AliasingError(NnxError, ValueError):
    """The same Variable reached a JAX boundary twice where JAX forbids aliasing."""
