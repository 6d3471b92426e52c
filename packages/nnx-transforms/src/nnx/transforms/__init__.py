"""nnx.transforms: JAX transforms that understand nnx objects.

Each transform is a superset of its JAX counterpart: modules, Variables, Rngs
and containers of them may appear in any argument and in the output;
Variables written inside are updated outside; shared objects stay shared.
"""

from nnx.transforms._autodiff import DiffState, grad, value_and_grad
from nnx.transforms._axes import Carry, StateAxes
from nnx.transforms._jit import jit
from nnx.transforms._scan import scan
from nnx.transforms._vmap import split_rngs, vmap

__all__ = [
    "jit",
    "grad",
    "value_and_grad",
    "DiffState",
    "vmap",
    "StateAxes",
    "split_rngs",
    "Carry",
    "scan",
]
