"""``nnx.transform_metadata``: a mapped axis leaves the Variables' metadata for a call.

For code that maps with a raw JAX transform (``jax.vmap``, ``jax.lax.map``,
``shard_map``) over stacked Variables: inside the wrapped function each Variable
is seen without the mapped axis (its ``sharding_names`` lose the entry at that
axis, or its ``on_remove_axis`` hook runs), as ``nnx.vmap(...,
transform_metadata={nnx.PARTITION_NAME: ...})`` does for its own axis.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import jax

from nnx.core import Variable, flatten, is_graph_node, iter_graph
from nnx.transforms._axes import PrefixAxes, StateAxes, _axis_of, _is_prefix
from nnx.transforms._jaxpr import PARTITION_NAME

F = TypeVar("F", bound=Callable[..., Any])
A = TypeVar("A")


def _bind(f: Callable, args: tuple, kwargs: dict, where: str) -> tuple:
    """Keyword arguments as positional ones (the axes are given per position)."""
    if not kwargs:
        return args
    try:
        bound = inspect.signature(f).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{where}: {e}") from None
    if bound.kwargs:
        raise TypeError(
            f"{where}: keyword-only arguments {sorted(bound.kwargs)} have no axis; pass "
            "them positionally or close over them."
        )
    return tuple(bound.args)


def _per_entry(spec: Any, n: int, what: str, where: str) -> list:
    if isinstance(spec, (tuple, list)) and not isinstance(spec, StateAxes):
        if len(spec) != n:
            raise ValueError(
                f"{where}: {what} has {len(spec)} entries for {n} values; give one axis "
                "per value (an int, None, nnx.StateAxes or an nnx.prefix tree) or one for all."
            )
        return list(spec)
    return [spec] * n


def _spec(axis: Any) -> Any:
    return PrefixAxes(axis) if _is_prefix(axis) else axis


def _variables_with_axes(node: Any, spec: Any, where: str, name: str):
    """``(Variable, axis)`` for each Variable reachable from ``node`` (once each)."""
    flat = flatten(node, with_paths=True)
    for path, x in zip(flat.paths, flat.leaves):
        if isinstance(x, Variable):
            axis = _axis_of(spec, path, x, where, name)
            if isinstance(axis, int) and not isinstance(axis, bool):
                yield x, axis


# -- the `transform_metadata=` of nnx.vmap and nnx.scan ---------------------------
def remove_mapped_axis(objs, axes) -> list:
    """transform_metadata: inside, a mapped Variable's ``sharding_names`` lose the mapped axis.

    Returns ``(Variable, names as entered)`` pairs, to put back after the call.
    """
    out = []
    for v, ax in zip(flatten(objs).leaves, axes):
        if not isinstance(v, Variable) or not isinstance(ax, int):
            continue
        names = v.get_metadata("out_sharding", None)
        if isinstance(names, (tuple, list)) and len(names) > ax:
            out.append((v, names))
            v.set_metadata(out_sharding=tuple(names[:ax]) + tuple(names[ax + 1 :]))
    return out


def _add_axis_names(out, out_axes, partition, inputs: set) -> None:
    """transform_metadata: new Variables returned get ``partition`` at their out axis."""

    def visit(ax, sub):
        if not isinstance(ax, int):
            return
        for top in jax.tree.leaves(sub, is_leaf=is_graph_node):
            if not is_graph_node(top):
                continue
            for _, x in iter_graph(top):
                if isinstance(x, Variable) and id(x) not in inputs and id(x) not in seen:
                    seen.add(id(x))
                    names = x.get_metadata("out_sharding", None)
                    if isinstance(names, (tuple, list)):
                        a = ax if ax >= 0 else len(names) + 1 + ax
                        x.set_metadata(
                            out_sharding=tuple(names[:a]) + (partition,) + tuple(names[a:])
                        )

    seen: set = set()
    try:
        jax.tree.map(visit, out_axes, out, is_leaf=lambda x: x is None)
    except (ValueError, TypeError):
        if isinstance(out_axes, int):
            visit(out_axes, out)


def restore_and_add_axis(renamed: list, out, out_axes, partition) -> None:
    """After the call: the inputs' names back as they entered (the structure compares),
    and ``partition`` inserted at the out axis of new Variables returned."""
    for v, names_before in renamed:
        v.set_metadata(out_sharding=names_before)
    _add_axis_names(out, out_axes, partition, {id(v) for v, _ in renamed})


# -- Flax NNX's nnx.spmd.add_axis / remove_axis: the same rule over a whole tree --------
def _tree_variables(tree: Any) -> list:
    """Every Variable reachable from ``tree`` (a pytree of graph nodes), each once."""
    return [x for x in flatten(tree).leaves if isinstance(x, Variable)]


def _axis_name(v: Variable, transform_metadata: Mapping, where: str) -> Any:
    if PARTITION_NAME in transform_metadata:
        return transform_metadata[PARTITION_NAME]
    if v.get_metadata("out_sharding", None) is not None:
        raise ValueError(
            f"{where}: the {type(v).__name__} has sharding_names "
            f"{v.get_metadata('out_sharding', None)} but transform_metadata {dict(transform_metadata)} "
            f"names no axis: pass {{nnx.PARTITION_NAME: name}} (None for an unnamed axis)."
        )
    return None


def add_axis_metadata(tree: A, index: int, transform_metadata: Mapping) -> A:
    """Record in every Variable of ``tree`` that an axis was added at ``index``, in place.

    Flax NNX's ``nnx.spmd.add_axis``: for code that stacks Variables with a raw JAX
    transform, what ``nnx.vmap(transform_metadata=...)`` does for its own axis. Each
    Variable's :meth:`~nnx.Variable.add_axis` runs with the name
    ``transform_metadata[nnx.PARTITION_NAME]``: its ``on_add_axis`` hook, or the name
    inserted into its ``sharding_names``. Returns ``tree``.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> state = nnx.State({"w": nnx.Param(jnp.ones((4, 2, 3)), sharding_names=("x", None))})
    >>> _ = nnx.add_axis_metadata(state, 0, {nnx.PARTITION_NAME: "layers"})
    >>> state["w"].get_metadata("sharding_names")
    ('layers', 'x', None)
    >>> _ = nnx.remove_axis_metadata(state, 0, {nnx.PARTITION_NAME: "layers"})
    >>> state["w"].get_metadata("sharding_names")
    ('x', None)

    A Variable with sharding names and no ``nnx.PARTITION_NAME`` entry is a ValueError.
    """
    return _each_axis(tree, index, transform_metadata, "nnx.add_axis_metadata", add=True)


def remove_axis_metadata(tree: A, index: int, transform_metadata: Mapping) -> A:
    """Undo :func:`add_axis_metadata` (Flax NNX's ``nnx.spmd.remove_axis``), in place."""
    return _each_axis(tree, index, transform_metadata, "nnx.remove_axis_metadata", add=False)


def _each_axis(tree: A, index: int, transform_metadata: Mapping, where: str, *, add: bool) -> A:
    """``add_axis``/``remove_axis`` on every Variable, all or nothing: the names are
    resolved first, and if one Variable refuses, the metadata of those already changed
    is put back before the error propagates."""
    plan = [(v, _axis_name(v, transform_metadata, where)) for v in _tree_variables(tree)]
    done = []
    try:
        for v, name in plan:
            done.append((v, v.get_metadata()))
            if add:
                v.add_axis(index, name)
            else:
                v.remove_axis(index, name)
    except Exception:
        for v, before in done:
            v.set_metadata(before)
        raise
    return tree


@overload
def transform_metadata(
    f: F, *, in_axes: Any = 0, out_axes: Any = 0, partition: str | None, graph: bool | None = None
) -> F: ...
@overload
def transform_metadata(
    *, in_axes: Any = 0, out_axes: Any = 0, partition: str | None, graph: bool | None = None
) -> Callable[[F], F]: ...
def transform_metadata(
    f: Any = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    partition: str | None,
    graph: bool | None = None,
) -> Any:
    """Remove a mapped axis from the Variables' metadata while ``f`` runs.

    ``f`` is meant to run under a raw JAX transform that maps over axis
    ``in_axes`` of its arguments' Variables: inside it, each Variable is seen
    as one member of the stack, so its ``sharding_names`` lose the entry
    ``partition`` at that axis (a Variable with an ``on_remove_axis`` hook has
    the hook called instead). On the way out the entry is put back on the
    input Variables, and new Variables returned get ``partition`` inserted at
    their ``out_axes`` axis (``on_add_axis`` hook, if any). Values written
    inside stay written.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import nnx
    >>> v = nnx.Param(jnp.ones((4, 3)), sharding_names=("layers", "model"))
    >>> @nnx.transform_metadata(partition="layers")
    ... def seen(v):
    ...     return v.sharding_names
    >>> seen(v), v.sharding_names
    (('model',), ('layers', 'model'))

    Args:
      f: the function; without it, a decorator is returned.
      in_axes: the mapped axis of each argument's Variables: an int or
        ``None`` for all arguments, or one entry per positional argument (an
        int, ``None``, ``nnx.StateAxes`` or an ``nnx.prefix`` tree).
      out_axes: the same, for the returned values (a prefix of the output).
      partition: the mesh axis name of the mapped axis (``None`` for an
        unsharded one), the name removed from and added to ``sharding_names``.
      graph: accepted for Flax NNX's signature; objects are walked as graphs
        (shared Variables once) either way.
    """
    if f is None:
        return functools.partial(
            transform_metadata,
            in_axes=in_axes,
            out_axes=out_axes,
            partition=partition,
            graph=graph,
        )
    del graph
    where = f"nnx.transform_metadata({getattr(f, '__name__', type(f).__name__)})"

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        args = _bind(f, args, kwargs, where)
        specs = _per_entry(in_axes, len(args), "in_axes", where)
        removed: list[tuple[Variable, int]] = []
        seen: set[int] = set()
        try:
            for k, (arg, axis) in enumerate(zip(args, specs)):
                for v, ax in _variables_with_axes(arg, _spec(axis), where, f"args[{k}]"):
                    if id(v) not in seen:
                        v.remove_axis(ax, partition)  # raises before changing v
                        seen.add(id(v))
                        removed.append((v, ax))
            out = f(*args)
        finally:
            for v, ax in reversed(removed):
                v.add_axis(ax, partition)
        _add_to_outputs(out, out_axes, partition, seen, where)
        return out

    return wrapper


def _add_to_outputs(out: Any, out_axes: Any, partition: Any, inputs: set[int], where: str):
    if isinstance(out_axes, (tuple, list)) and not isinstance(out_axes, StateAxes):
        if not isinstance(out, (tuple, list)):
            raise ValueError(
                f"{where}: out_axes has {len(out_axes)} entries but the function returned "
                f"a {type(out).__name__}, not a tuple."
            )
        pairs = zip(_per_entry(out_axes, len(out), "out_axes", where), out)
    else:
        pairs = [(out_axes, out)]
    for k, (axis, value) in enumerate(pairs):
        if value is None or not (is_graph_node(value) or _holds_nodes(value)):
            continue
        for v, ax in _variables_with_axes(value, _spec(axis), where, f"output[{k}]"):
            if id(v) not in inputs:
                inputs.add(id(v))
                v.add_axis(ax, partition)


def _holds_nodes(value: Any) -> bool:
    return any(
        is_graph_node(x) or isinstance(x, Variable)
        for x in jax.tree.leaves(
            value, is_leaf=lambda x: is_graph_node(x) or isinstance(x, Variable)
        )
    )
