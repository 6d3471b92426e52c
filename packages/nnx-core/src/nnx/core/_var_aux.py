"""A Variable's static part and its storage: ``VarAux``, the three modes, and the
conversions between a value and what a Variable of each mode stores.

``VarAux`` (mode, mutability, metadata) is the pytree auxiliary data of a
Variable and part of every GraphDef. The stored object is the value itself
(``PLAIN``), the value with each array in a ``jax.Ref`` (``REF``), or a hijax
cell (``HIJAX``, see :mod:`nnx.core._hijax`).
"""

from __future__ import annotations

import jax
import numpy as np

from nnx.core._defaults import _current
from nnx.core._hijax import cells_allowed, new_cell
from nnx.core._refs import new_ref

PLAIN, REF, HIJAX = 0, 1, 2
_MODE_NAMES = ("plain", "ref", "hijax")

# Metadata keys that other libraries spell differently; all map to one key.
_METADATA_ALIASES = {"sharding_names": "out_sharding", "sharding": "out_sharding"}


def _freeze(x):
    """A hashable stand-in for a metadata value (lists become tuples, ...)."""
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(y) for y in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    try:
        hash(x)
    except TypeError:
        return ("<id>", id(x))
    return x


class VarAux:
    """The static part of a Variable: storage mode, mutability and metadata.

    It is the pytree auxiliary data of a Variable and part of every GraphDef,
    so it is immutable and hashable; writing metadata replaces it.
    """

    __slots__ = ("mode", "mutable", "metadata", "_hash", "_key")

    def __init__(self, mode: int, mutable: bool, metadata: dict):
        self.mode = mode
        self.mutable = mutable
        self.metadata = metadata
        self._key = (mode, mutable, _freeze(metadata))
        self._hash = hash(self._key)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (type(other) is VarAux and self._key == other._key)

    def replace(self, **changes) -> VarAux:
        mode = changes.pop("mode", self.mode)
        mutable = changes.pop("mutable", self.mutable)
        return VarAux(mode, mutable, {**self.metadata, **changes})

    def __repr__(self):
        return f"VarAux({_MODE_NAMES[self.mode]}, mutable={self.mutable}, {self.metadata})"


def _canonical_metadata(metadata: dict) -> dict:
    return {_METADATA_ALIASES.get(k, k): v for k, v in metadata.items()}


def _to_ref(value):
    return new_ref(value)


def _from_ref(raw):
    return jax.tree.map(lambda r: r[...], raw, is_leaf=lambda r: isinstance(r, jax.Ref))


def _resolve_mode(hijax, ref, mutable) -> tuple[int, bool]:
    if mutable is False:
        return PLAIN, False
    if hijax is None and ref is None:
        # From the defaults: where JAX cannot make a cell (inside jax.vmap, jax.grad,
        # ...), hijax means plain, as inside the nnx transforms.
        defaults = _current()
        hijax = defaults.hijax and cells_allowed()
        if mutable is True:  # the mutable-arrays era: mutable means ref-backed
            return (HIJAX if hijax else REF), True
        ref = defaults.ref
    if hijax:
        return HIJAX, True
    if ref:
        return REF, True
    return PLAIN, True


def _store(mode: int, value):
    if mode == PLAIN:
        return value
    if mode == REF:
        return _to_ref(value)
    return new_cell(value)


def _describe(value) -> str:
    """``float32[2,3]`` for an array, the leaf types for a pytree (for messages)."""
    leaves = jax.tree_util.tree_leaves(value)
    parts = [f"{getattr(x, 'dtype', type(x).__name__)}{list(np.shape(x))}" for x in leaves[:3]]
    return ", ".join(parts) + (", ..." if len(leaves) > 3 else "") or "empty"
