"""Sharding metadata: PartitionSpecs and NamedShardings from Variables' ``sharding_names``.

Variables carry the mesh axis name of each dimension as ``sharding_names``
metadata (set directly, or by an initializer wrapped with
:func:`with_partitioning`). These helpers turn a model or State into the
matching tree of ``PartitionSpec``/``NamedSharding`` for ``jax.jit``'s
``in_shardings``/``out_shardings`` or ``jax.device_put``.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec

from nnx.core._state import State
from nnx.core._variables import Variable


def _spec(v: Variable) -> PartitionSpec:
    names = v.get_metadata("sharding_names")
    return PartitionSpec() if names is None else PartitionSpec(*names)


def _map_variables(f, tree: Any) -> Any:
    from nnx.core._graph import flatten, unflatten

    if isinstance(tree, Variable):
        return tree.replace(f(tree))
    flat = flatten(tree)
    leaves = [x.replace(f(x)) if isinstance(x, Variable) else PartitionSpec() for x in flat.leaves]
    return unflatten(flat.graphdef, leaves)


def get_partition_spec(tree: Any) -> Any:
    """The same tree with each Variable's value replaced by its ``PartitionSpec``.

    Example::

        init = nnx.with_partitioning(jax.nn.initializers.ones, (None, "model"))
        state = nnx.State({"w": nnx.Param(init(jax.random.key(0), (4, 8)))})
        nnx.get_partition_spec(state)["w"][...]   # PartitionSpec(None, 'model')

    Variables without ``sharding_names`` get ``PartitionSpec()`` (replicated).
    """
    return _map_variables(_spec, tree)


def get_named_sharding(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """Like :func:`get_partition_spec`, with ``NamedSharding(mesh, spec)`` values.

    Example::

        mesh = jax.make_mesh((1, len(jax.devices())), ("data", "model"))
        shardings = nnx.get_named_sharding(nnx.state(model), mesh)
        state = jax.device_put(nnx.state(model), shardings)
    """
    return _map_variables(lambda v: NamedSharding(mesh, _spec(v)), tree)


def shard_state(state: State, mesh: jax.sharding.Mesh) -> State:
    """Put every Variable of ``state`` on ``mesh`` as its ``sharding_names`` say, in place.

    Example::

        mesh = jax.make_mesh((1, len(jax.devices())), ("data", "model"))
        nnx.shard_state(nnx.state(model), mesh)   # the model's Variables now live sharded
    """
    for _, v in state.flat_state():
        if isinstance(v, Variable):
            v.set_value(jax.device_put(v.get_value(), NamedSharding(mesh, _spec(v))))
    return state
