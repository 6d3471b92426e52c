"""``nnx.transforms.transforms``: Flax NNX's module path for ``cond``, ``switch``, ``checkify``, ...

The same objects as ``nnx.cond``, ``nnx.switch``, ``nnx.checkify``,
``nnx.eval_shape`` and ``nnx.make_jaxpr`` (one implementation; this module only
re-exports them)::

    >>> import nnx
    >>> from nnx.transforms.transforms import cond
    >>> cond is nnx.cond
    True
"""

from nnx.core import Module
from nnx.transforms import checkify, cond, eval_shape, make_jaxpr, switch

__all__ = ["Module", "checkify", "cond", "eval_shape", "make_jaxpr", "switch"]
