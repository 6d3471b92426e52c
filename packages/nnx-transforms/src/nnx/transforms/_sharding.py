"""Sharding: ``nnx.shard_map`` and the per-leaf shardings of ``nnx.jit(in_shardings=...)``.

Both read a spec for each flat leaf of the nnx arguments from one spec per
argument: a single spec for all its arrays, a ``StateSharding`` (jit: by filter)
or a State/mapping of its paths (:func:`lookup_spec`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import jax

from nnx.core import StateSharding, Variable, storage_mode
from nnx.transforms._boundary import (
    PLAIN,
    PLAIN_ARG,
    ModeArgs,
    PrepareCache,
    at_top_level,
    graph_arg_index,
)
from nnx.transforms._crossing import lift

F = TypeVar("F", bound=Callable[..., Any])


def lookup_spec(mapping, path):
    """The spec at ``path`` in a State/mapping of specs (a Variable's value read), or None."""
    node = mapping
    for k in path:
        if isinstance(node, Variable):
            node = node.get_value()
        if not isinstance(node, Mapping) or k not in node:
            return None
        node = node[k]
    return node.get_value() if isinstance(node, Variable) else node


def leaf_shardings(spec, layout, prep) -> list:
    """``nnx.jit``'s in_shardings for each flat leaf (None for refs and cells: JAX
    places those itself)."""
    if prep is None:
        return []
    index = graph_arg_index(layout)
    per_arg = []
    for where in index:
        s = None
        if isinstance(where, int) and isinstance(spec, (tuple, list)) and where < len(spec):
            s = spec[where]
        elif isinstance(where, int) and not isinstance(spec, (tuple, list)):
            s = spec
        per_arg.append(s)
    owners = prep.owners()
    paths = prep.paths
    out = []
    for i, x in enumerate(prep.leaves):
        s = per_arg[owners[i]]
        if isinstance(s, StateSharding):  # by filter: the first that matches the leaf
            s = s.sharding_for(paths[i][1:], x)
        elif isinstance(s, Mapping):
            s = lookup_spec(s, paths[i][1:])
        if isinstance(x, Variable) and storage_mode(x) != PLAIN:
            s = None
        out.append(s)
    return out


def plain_shardings(spec, layout) -> tuple:
    """``nnx.jit``'s in_shardings for each plain positional argument."""
    pos, _ = layout
    plain_pos = [i for i, c in enumerate(pos) if c is PLAIN_ARG]
    if isinstance(spec, (tuple, list)):
        return tuple(spec[i] if i < len(spec) else None for i in plain_pos)
    return tuple(spec for _ in plain_pos)


# -- shard_map ----------------------------------------------------------------------------
@overload
def shard_map(
    fun: F,
    *,
    mesh: Any,
    in_specs: Any,
    out_specs: Any,
    **shard_map_kwargs: Any,
) -> F: ...
@overload
def shard_map(
    fun: None = None,
    *,
    mesh: Any,
    in_specs: Any,
    out_specs: Any,
    **shard_map_kwargs: Any,
) -> Callable[[F], F]: ...
def shard_map(
    fun: Callable | None = None,
    *,
    mesh: Any,
    in_specs: Any,
    out_specs: Any,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    **shard_map_kwargs,
) -> Any:
    """``jax.shard_map`` for functions of nnx objects.

    Example::

        P = jax.sharding.PartitionSpec
        mesh = jax.make_mesh((len(jax.devices()),), ("data",))
        @nnx.shard_map(mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"))
        def forward(model, x):       # model replicated, x split over "data"
            return model(x)

    For an nnx argument the spec is one ``PartitionSpec`` for all its arrays
    or a State/dict mapping its paths to specs. Written Variables come back
    with the spec they went in with.

    Args:
      fun: the function (or use ``@nnx.shard_map(...)`` with options).
      mesh: the mesh.
      in_specs: per positional argument, as described above.
      out_specs: as in ``jax.shard_map``.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
      **shard_map_kwargs: passed to ``jax.shard_map``.
    """
    mode_args = ModeArgs(graph, graph_updates)

    def wrap(f):
        cache = PrepareCache()

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            leaf_specs: list = []

            def in_spec(prep, layout, _graph):
                pos, _ = layout
                specs = in_specs if isinstance(in_specs, (tuple, list)) else (in_specs,) * len(pos)
                plain_specs = tuple(s for s, c in zip(specs, pos) if c is PLAIN_ARG)
                if prep is not None:
                    g_specs = [specs[i] for i in graph_arg_index(layout) if isinstance(i, int)]
                    owners, paths = prep.owners(), prep.paths
                    for i in range(len(prep.leaves)):
                        s = g_specs[owners[i]]
                        if isinstance(s, StateSharding):  # by filter, as for nnx.jit
                            s = s.sharding_for(paths[i][1:], prep.leaves[i])
                        elif isinstance(s, Mapping):
                            s = lookup_spec(s, paths[i][1:])
                        leaf_specs.append(s if s is not None else jax.sharding.PartitionSpec())
                return (list(leaf_specs), plain_specs, {})

            def out_spec(prep):  # noqa: ARG001
                return (list(leaf_specs), out_specs)

            def transform(g, ins, outs):
                sm = jax.shard_map(g, mesh=mesh, in_specs=ins, out_specs=outs, **shard_map_kwargs)
                if not (at_top_level() and isinstance(mesh, jax.sharding.Mesh)):
                    return sm

                def call(values, plain, plain_kw):
                    # values read from refs and hijax cells are committed to the device
                    # they live on: place them on the mesh as their specs say
                    values = [
                        jax.device_put(v, jax.sharding.NamedSharding(mesh, s))
                        for v, s in zip(values, ins[0])
                    ]
                    return sm(values, plain, plain_kw)

                return call

            return lift(
                transform,
                f,
                args,
                kwargs,
                where=f"nnx.shard_map({getattr(f, '__name__', 'f')})",
                all_updates=True,
                prep_cache=cache,
                in_spec=in_spec,
                out_spec=out_spec,
                mode=mode_args.mode(),
            )

        return wrapper

    return wrap if fun is None else wrap(fun)
