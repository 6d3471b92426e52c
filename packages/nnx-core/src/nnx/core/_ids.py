"""Unique ids (Flax NNX's ``nnx.ids``): ``nnx.ids.uuid()`` returns a new :class:`UUID`."""

from __future__ import annotations

import itertools
import threading


class UUID:
    """A unique id; a copy (``copy.copy``/``deepcopy``) is a new id."""

    __slots__ = ("id",)

    def __init__(self, rawid: int):
        self.id = rawid

    def __eq__(self, other):
        return isinstance(other, UUID) and other.id == self.id

    def __hash__(self):
        return hash((UUID, self.id))

    def __repr__(self):
        return f"UUID({self.id})"

    def __copy__(self):
        return uuid()

    def __deepcopy__(self, memo):
        return uuid()


class UUIDManager:
    """A thread-safe counter that hands out new :class:`UUID` objects when called."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def __call__(self) -> UUID:
        with self._lock:
            return UUID(next(self._counter))


uuid = UUIDManager()
"""Call ``uuid()`` for a new :class:`UUID`."""
