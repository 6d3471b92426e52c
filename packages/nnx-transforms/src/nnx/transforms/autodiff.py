"""``nnx.transforms.autodiff``: Flax NNX's module path for the differentiation transforms.

The same objects as ``nnx.grad``, ``nnx.value_and_grad``, ``nnx.vjp``, ... (one
implementation; this module only re-exports them)::

    >>> import nnx
    >>> from nnx.transforms.autodiff import grad
    >>> grad is nnx.grad
    True
"""

from nnx.core import State
from nnx.transforms import DiffState, custom_vjp, grad, jvp, remat, value_and_grad, vjp

__all__ = ["DiffState", "State", "custom_vjp", "grad", "jvp", "remat", "value_and_grad", "vjp"]
