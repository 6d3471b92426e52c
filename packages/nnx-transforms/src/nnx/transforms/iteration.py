"""``nnx.transforms.iteration``: Flax NNX's module path for the mapping and looping transforms.

The same objects as ``nnx.vmap``, ``nnx.pmap``, ``nnx.scan``, ``nnx.fori_loop``,
``nnx.while_loop``, ``nnx.StateAxes``, ``nnx.Carry`` and ``nnx.transform_metadata``
(one implementation; this module only re-exports them)::

    >>> import nnx
    >>> from nnx.transforms.iteration import vmap
    >>> vmap is nnx.vmap
    True
"""

from nnx.core import Carry, Module, State
from nnx.transforms import (
    StateAxes,
    fori_loop,
    pmap,
    scan,
    transform_metadata,
    vmap,
    while_loop,
)

__all__ = [
    "Carry",
    "Module",
    "State",
    "StateAxes",
    "fori_loop",
    "pmap",
    "scan",
    "transform_metadata",
    "vmap",
    "while_loop",
]
