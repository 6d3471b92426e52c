"""nnx.transforms: JAX transforms that understand nnx objects.

Each transform is a superset of its JAX counterpart: modules, Variables, Rngs
and containers of them may appear in any argument and in the output;
Variables written inside are updated outside; shared objects stay shared.
All of them are built on one mechanism (``_boundary.py``).
"""

from nnx.transforms._autodiff import DiffState, grad, value_and_grad
from nnx.transforms._axes import Carry, StateAxes  # Carry: nnx-core's, kept importable here
from nnx.transforms._control import cond, fori_loop, switch, while_loop
from nnx.transforms._custom_vjp import custom_vjp
from nnx.transforms._errors import (
    AxisError,
    CarryError,
    DonatedBufferError,
    EscapeError,
    TransformError,
)
from nnx.transforms._jaxpr import PARTITION_NAME, make_jaxpr
from nnx.transforms._jit import jit
from nnx.transforms._lifted import checkify, eval_shape, remat
from nnx.transforms._linearize import jvp, vjp
from nnx.transforms._metadata import add_axis_metadata, remove_axis_metadata, transform_metadata
from nnx.transforms._partial import cached_partial, jit_partial
from nnx.transforms._scan import scan
from nnx.transforms._sharding import shard_map
from nnx.transforms._split_rngs import split_rngs
from nnx.transforms._summary import CallInfo, filter_rng_streams, tabulate
from nnx.transforms._version import __version__
from nnx.transforms._vmap import pmap, vmap

__all__ = [
    "jit",
    "grad",
    "value_and_grad",
    "vmap",
    "pmap",
    "scan",
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
    "DonatedBufferError",
    "EscapeError",
    "jit_partial",
    "cached_partial",
    "make_jaxpr",
    "PARTITION_NAME",
    "transform_metadata",
    "add_axis_metadata",
    "remove_axis_metadata",
    "tabulate",
]

# Flax's module paths under `nnx` that hold transform names (nnx/__init__.py turns
# each entry into a module: `import nnx.compat`, `nnx.summary.tabulate`). Values are
# names of attributes of this package (`alias=target` renames).
# `nnx.compat` keeps the older graph-mode spellings; here they are the transforms
# themselves (graph mode is how every nnx transform treats objects).
__nnx_paths__ = {
    "compat": (
        "jit shard_map grad value_and_grad custom_vjp vjp jvp remat vmap pmap scan "
        "while_loop fori_loop eval_shape cond switch checkify cached_partial split_rngs"
    ),
    "summary": "tabulate CallInfo filter_rng_streams",
    "graph": "cached_partial",
    "graphlib": "cached_partial",
    "rnglib": "split_rngs",
    "spmd": "eval_shape PARTITION_NAME add_axis=add_axis_metadata remove_axis=remove_axis_metadata",
}
