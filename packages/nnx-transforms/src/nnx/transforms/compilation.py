"""``nnx.transforms.compilation``: Flax NNX's module path for ``jit`` and ``shard_map``.

The same objects as ``nnx.jit``, ``nnx.jit_partial``, ``nnx.shard_map`` and
``nnx.StateSharding`` (one implementation; this module only re-exports them), and the
types of what they return: ``JitWrapped`` (``nnx.jit(f)``) and its ahead-of-time stages
``Traced``, ``Lowered`` and ``Compiled``::

    >>> import nnx
    >>> from nnx.transforms.compilation import JitWrapped, jit
    >>> jit is nnx.jit
    True
    >>> isinstance(jit(lambda x: x), JitWrapped)
    True
"""

from nnx.core import StateSharding
from nnx.transforms import jit, jit_partial, shard_map
from nnx.transforms._jit import JitWrapped
from nnx.transforms._stages import Compiled, Lowered, Traced

__all__ = [
    "Compiled",
    "JitWrapped",
    "Lowered",
    "StateSharding",
    "Traced",
    "jit",
    "jit_partial",
    "shard_map",
]
