"""The structure epoch: a counter that moves whenever any object graph may
have changed shape (an attribute set or deleted on a Pytree, a tracked
container mutated, Variable metadata written).

Transforms cache the flattened form of their arguments and reuse it while the
epoch has not moved, which makes the per-call boundary cost proportional to
the number of Variables rather than to the size of the object graph.
"""

from __future__ import annotations

_counter = [0]


def bump() -> None:
    """Record that some object graph may have changed structure."""
    _counter[0] += 1


def current() -> int:
    """The current structure epoch."""
    return _counter[0]
