"""nnx.transforms: JAX transforms that understand nnx objects.

Each transform is a superset of its JAX counterpart: modules, Variables, Rngs
and containers of them may appear in any argument and in the output;
Variables written inside are updated outside; shared objects stay shared.
All of them are built on one mechanism (``_boundary.py``).
"""

from nnx.transforms._autodiff import DiffState, grad, value_and_grad
from nnx.transforms._axes import Carry, StateAxes
from nnx.transforms._control import cond, fori_loop, switch, while_loop
from nnx.transforms._errors import AxisError, CarryError, EscapeError, TransformError
from nnx.transforms._jit import jit
from nnx.transforms._misc import (
    checkify,
    custom_vjp,
    eval_shape,
    jvp,
    remat,
    shard_map,
    vjp,
)
from nnx.transforms._scan import scan
from nnx.transforms._version import __version__
from nnx.transforms._vmap import split_rngs, vmap

__all__ = [
    "jit",
    "grad",
    "value_and_grad",
    "vmap",
    "scan",
    "Carry",
    "StateAxes",
    "DiffState",
    "split_rngs",
    "remat",
    "cond",
    "switch",
    "fori_loop",
    "while_loop",
    "eval_shape",
    "custom_vjp",
    "shard_map",
    "jvp",
    "vjp",
    "checkify",
    "TransformError",
    "AxisError",
    "CarryError",
    "EscapeError",
]
