"""``nnx.transforms.compilation``: Flax NNX's module path for ``jit`` and ``shard_map``.

The same objects as ``nnx.jit``, ``nnx.jit_partial``, ``nnx.shard_map`` and
``nnx.StateSharding`` (one implementation; this module only re-exports them)::

    >>> import nnx
    >>> from nnx.transforms.compilation import jit
    >>> jit is nnx.jit
    True
"""

from nnx.core import StateSharding
from nnx.transforms import jit, jit_partial, shard_map

__all__ = ["StateSharding", "jit", "jit_partial", "shard_map"]
