"""The functional API over object graphs: ``split``/``merge``/``update``/``state``/
``pop``/``clone``/``graphdef``, and the path surgery they need (writing a value at
a path, removing the item at a path, through tuples that must be rebuilt).

All of it is built on :func:`~nnx.core._flatten.flatten` and
:func:`~nnx.core._flatten.unflatten`, which this module re-exports (with
:class:`~nnx.core._graphdef.GraphDef`) for the modules that take them from here.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast, overload

import jax

from nnx.core._errors import FilterError, StructureError
from nnx.core._filters import group_by_filters
from nnx.core._flatten import (
    FlatGraph,
    _key_name,
    flat_items,
    flatten,
    leaves_by_path,
    unflatten,
)
from nnx.core._graph_mode import graph_settings
from nnx.core._graphdef import GraphDef
from nnx.core._paths import path_str
from nnx.core._pytree import Pytree
from nnx.core._state import GraphState, State
from nnx.core._var_aux import PLAIN, REF, _to_ref
from nnx.core._variables import Variable
from nnx.core._walk import require_tree

# `_convert` and `_graph_api` take `flatten`, `unflatten` and `GraphDef` from here.

Node = TypeVar("Node")


def _group(flat: FlatGraph, filters: tuple, exhaustive: bool) -> list[list]:
    groups, rest = group_by_filters(zip(flat.paths, flat.leaves), filters)
    if exhaustive and rest:
        path, leaf = rest[0]
        raise FilterError(
            f"No filter matched the {type(leaf).__name__} at path "
            f"{path_str(path)!r}. Filters passed to split must be exhaustive: add "
            f"`...` as the last filter to collect the rest. Filters: {filters!r}"
        )
    return groups


@overload
def split(node: Node, /, *, graph: bool | None = None) -> tuple[GraphDef[Node], State]: ...
@overload
def split(
    node: Node, first: Any, /, *, graph: bool | None = None
) -> tuple[GraphDef[Node], State]: ...
@overload
def split(
    node: Node, first: Any, second: Any, /, *filters: Any, graph: bool | None = None
) -> tuple[GraphDef[Node], State, State, *tuple[State, ...]]: ...
def split(node: Any, *filters, graph: bool | None = None) -> tuple:
    """Split an object graph into a :class:`GraphDef` and one :class:`State` per filter.

    Example::

        graphdef, state = nnx.split(model)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        model2 = nnx.merge(graphdef, params, rest)

    The States hold the graph's own Variable objects (no copies), each once
    even when shared. Filters must be exhaustive. ``graph=False`` (tree mode;
    None: the :func:`nnx.set_graph_mode` setting) first checks that ``node`` is
    a tree: an object reachable twice is an :class:`nnx.AliasingError`.
    """
    flat = _flat(node, graph, "nnx.split")
    if not filters:
        return flat.graphdef, State.from_flat(zip(flat.paths, flat.leaves))
    groups = _group(flat, filters, exhaustive=True)
    return (flat.graphdef, *(State.from_flat(g) for g in groups))


def _flat(node: Any, graph: bool | None, where: str, with_paths: bool = True) -> FlatGraph:
    """``node``'s FlatGraph; in tree mode, after checking that it is a tree."""
    if not (graph if graph is not None else graph_settings().graph):
        require_tree(node, where)
    return flatten(node, with_paths=with_paths)


@overload
def unpack(node: Node, /, *, graph: bool | None = None) -> GraphState: ...
@overload
def unpack(node: Node, first: Any, /, *, graph: bool | None = None) -> GraphState: ...
@overload
def unpack(
    node: Node, first: Any, second: Any, /, *filters: Any, graph: bool | None = None
) -> tuple[GraphState, ...]: ...
def unpack(node: Any, *filters, graph: bool | None = None) -> GraphState | tuple[GraphState, ...]:
    """:func:`split`, with the GraphDef carried by each State (a :class:`GraphState`).

    Example::

        node = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        state = nnx.unpack(node)
        new_node = nnx.merge(state)
        params, rest = nnx.unpack(node, nnx.Param, ...)
        new_node = nnx.merge(params, rest)

    No filter or one: one GraphState; two or more: a tuple of them (filters
    must be exhaustive, as for :func:`split`). Nothing extra to carry through a
    ``jax.jit``: a GraphState is a pytree whose GraphDef is static.
    """
    graphdef, *states = split(node, *filters, graph=graph)
    out = tuple(GraphState(graphdef, s) for s in states)
    return out[0] if len(out) == 1 else out


def merge(graphdef: GraphDef[Node] | GraphState, *states, copy: bool = False) -> Node:
    """Build an object graph from a GraphDef and States (inverse of :func:`split`).

    Example::

        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        model2 = nnx.merge(graphdef, params, rest)
        model3 = nnx.merge(*nnx.unpack(model, nnx.Param, ...))   # GraphStates alone

    Shared Variables and modules are shared again. With ``copy=True`` the new
    graph gets copies of the States' Variables instead of the same objects.
    :class:`GraphState` arguments (from :func:`unpack`) carry their GraphDef:
    pass them alone, all unpacked from the same graph.
    """
    if isinstance(graphdef, GraphState):
        states = (graphdef, *states)
        graphdef = cast(GraphDef, graphdef.graphdef)
        for s in states:
            if not isinstance(s, GraphState):
                raise ValueError(
                    f"merge: the first argument is a GraphState, so every State must be "
                    f"one (from the same nnx.unpack call); got a {type(s).__name__}. Pass "
                    "a GraphDef first to merge plain States."
                )
            if s.graphdef != graphdef:
                raise ValueError(
                    "merge: the GraphStates were unpacked from graphs of different "
                    "structure (their GraphDefs differ); merge the GraphStates of one "
                    "nnx.unpack call."
                )
    elif not isinstance(graphdef, GraphDef):
        raise TypeError(
            f"merge: expected a GraphDef (from nnx.split) or a GraphState (from "
            f"nnx.unpack) first, got {type(graphdef).__name__}."
        )
    leaves = leaves_by_path(graphdef, states, "merge")
    return unflatten(graphdef, leaves, copy_variables=copy)


def update(node: Any, *states) -> None:
    """Write States into an existing graph, in place (Variables keep their identity).

    Example::

        @jax.jit
        def forward(graphdef, state, x):
            model = nnx.merge(graphdef, state)
            y = model(x)                          # BatchNorm updates its statistics
            return y, nnx.state(model)

        graphdef, state = nnx.split(model)
        y, state = forward(graphdef, state, x)
        nnx.update(model, state)                 # model's Variables now hold the new values

    All or nothing: every path, every shape and every target's mutability is
    checked before the first write, so an error leaves ``node`` exactly as it
    was. A path the graph lacks (a State of another model, an extra key) or a
    value whose shape differs from the one it replaces is a ``StructureError``
    naming the path (and both shapes); change a shape by assigning a new
    Variable instead (``model.linear.kernel = nnx.Param(new_value)``). The
    dtype may change: ``nnx.update(model, jax.tree.map(lambda x:
    x.astype(jnp.bfloat16), state))`` casts a model, as in Flax. Raw array
    attributes (and arrays in a Pytree's lists and dicts) are written back by
    assignment.
    """
    flat = flatten(node, with_paths=True)
    by_path = dict(zip(flat.paths, flat.leaves))
    plan: list[tuple[tuple, Any, Any]] = []
    for path, value in flat_items(states, "update").items():
        target = by_path.get(path, _MISSING)
        if target is _MISSING:
            raise StructureError(
                f"update: {type(node).__name__} has no Variable or array at "
                f"{path_str(path)!r}. The State comes from a graph of another structure; "
                "nothing was written."
            )
        if isinstance(target, Variable):
            if value is target:
                continue
            if not target._aux.mutable:
                target.set_value(value)  # raises ImmutableVariableError, before any write
            new = value.get_value() if isinstance(value, Variable) else value
            _check_shapes(target.get_value(), new, path, type(target).__name__)
        else:
            new = value.get_value() if isinstance(value, Variable) else value
            _check_shapes(target, new, path, "array")
        plan.append((path, target, new))
    done: list[tuple[tuple, Any, Any]] = []
    try:
        for path, target, new in plan:
            if isinstance(target, Variable):
                old = target._raw if target._aux.mode == PLAIN else target.get_value()
                _write_variable(target, new)
            else:
                old = target
                _set_path(node, path, new)
            done.append((path, target, old))
    except BaseException:
        for path, target, old in reversed(done):  # undo: nothing half-written
            if isinstance(target, Variable):
                if target._aux.mode == PLAIN:
                    target.set_raw_value(old)
                else:
                    target.set_value(old)
            else:
                _set_path(node, path, old)
        raise


_MISSING = object()


def _shape_of(x):
    shape = getattr(x, "shape", None)
    return None if shape is None else tuple(shape)


def _check_shapes(old, new, path, what: str) -> None:
    """A StructureError naming ``path`` and both shapes where an array would change shape."""
    a, b = _shape_of(old), _shape_of(new)
    if a is not None and b is not None:
        if a != b:
            _shape_error(path, what, b, a)
        return
    old_keyed, old_tree = jax.tree_util.tree_flatten_with_path(old)
    new_leaves, new_tree = jax.tree.flatten(new)
    if old_tree != new_tree:
        return  # a value of another structure (a sow accumulator) is written as given
    for (kp, x), y in zip(old_keyed, new_leaves):
        a, b = _shape_of(x), _shape_of(y)
        if a is not None and b is not None and a != b:
            _shape_error((*path, *(_key_name(k) for k in kp)), what, b, a)


def _shape_error(path, what, new_shape, old_shape):
    raise StructureError(
        f"update: the value for {path_str(path)!r} has shape {new_shape}, but the {what} "
        f"there holds {old_shape}. nnx.update writes values into the existing Variables; "
        "to change a shape (model surgery), assign a new Variable instead, e.g. "
        "`model.layer.kernel = nnx.Param(new_value)`. Nothing was written."
    )


def _write_variable(target: Variable, value) -> None:
    if isinstance(value, Variable):  # kinds may differ after vars_as; the value is what counts
        if value is target:
            return
        value = value.get_value()
    if target._aux.mode == PLAIN:
        if not target._aux.mutable:
            target.set_value(value)  # raises with the standard message
        target.set_raw_value(value)
    elif target._aux.mode == REF and _dtypes(target.get_raw_value()) != _dtypes(value):
        target.set_raw_value(_to_ref(value))  # a jax.Ref has a fixed dtype: a new one
    else:
        target.set_value(value)


def _dtypes(x) -> list:
    return [getattr(y, "dtype", None) for y in jax.tree.leaves(x, is_leaf=_is_ref)]


def _is_ref(x) -> bool:
    return isinstance(x, jax.Ref)


def _set_path(node, path, value) -> None:
    _replace_at(node, path, value)


def _child(container, k):
    if isinstance(container, dict) or not isinstance(k, str):
        return container[k]
    return getattr(container, k)  # Pytree, namedtuple, dataclass attributes


def _replace_at(container, path, value):
    """``container`` with ``value`` at ``path``: written in place, except that tuples
    (immutable) on the way are rebuilt and assigned to their parent."""
    k = path[0]
    old = _child(container, k)
    new = value if len(path) == 1 else _replace_at(old, path[1:], value)
    if new is old:
        return container
    if isinstance(container, tuple):
        items = list(container)
        if isinstance(k, str):  # a namedtuple field
            k = cast(Any, container)._fields.index(k)
        items[k] = new
        return type(container)(*items) if hasattr(container, "_fields") else type(container)(items)
    if isinstance(container, Pytree) or (isinstance(k, str) and not isinstance(container, dict)):
        setattr(container, k, new)
    else:
        container[k] = new
    return container


@overload
def state(node: Any, /, *, graph: bool | None = None) -> State: ...
@overload
def state(node: Any, first: Any, /, *, graph: bool | None = None) -> State: ...
@overload
def state(
    node: Any, first: Any, second: Any, /, *filters: Any, graph: bool | None = None
) -> tuple[State, ...]: ...
def state(node: Any, *filters, graph: bool | None = None) -> State | tuple[State, ...]:
    """The State of ``node`` (all of it, or the part each filter matches).

    Unlike :func:`split`, the filters need not be exhaustive::

        params = nnx.state(model, nnx.Param)

    ``graph=False`` checks that ``node`` is a tree first, as :func:`split` does.
    """
    flat = _flat(node, graph, "nnx.state")
    if not filters:
        return State.from_flat(zip(flat.paths, flat.leaves))
    groups = _group(flat, filters, exhaustive=False)
    states = tuple(State.from_flat(g) for g in groups)
    return states[0] if len(states) == 1 else states


variables = state


def graphdef(node: Node, /, *, graph: bool | None = None) -> GraphDef[Node]:
    """The :class:`GraphDef` of ``node`` (``graph=False``: check it is a tree first)."""
    return _flat(node, graph, "nnx.graphdef", with_paths=False).graphdef


def clone(node: Node) -> Node:
    """A deep copy of an object graph: new objects, new Variables, same sharing."""
    flat = flatten(node)
    return unflatten(flat.graphdef, flat.leaves, copy_variables=True)


@overload
def pop(node: Any, first: Any, /) -> State: ...
@overload
def pop(node: Any, first: Any, second: Any, /, *filters: Any) -> tuple[State, ...]: ...
def pop(node: Any, *filters) -> State | tuple[State, ...]:
    """Remove the Variables each filter matches from ``node`` and return them.

    Example::

        model(x)                                   # sows Intermediates
        intermediates = nnx.pop(model, nnx.Intermediate)
    """
    flat = flatten(node, with_paths=True)
    groups = _group(flat, filters, exhaustive=False)
    # Later siblings first, so that removing an item of a list does not shift the
    # index of another one still to be removed.
    order = {path: i for i, path in enumerate(flat.paths)}
    doomed = sorted((path for g in groups for path, _ in g), key=order.__getitem__)
    for path in doomed:  # check all before removing any: nothing half-popped
        _check_removable(node, path)
    for path in reversed(doomed):
        _remove_at(node, path)
    states = tuple(State.from_flat(g) for g in groups)
    return states[0] if len(states) == 1 else states


def _check_removable(node, path) -> None:
    parent = node
    for k in path[:-1]:
        parent = _child(parent, k)
    if parent is node and isinstance(node, tuple):
        raise StructureError(
            f"nnx.pop: the Variable at {path_str(path)} is an item of the tuple passed as "
            "the root, which cannot lose an item in place. Pass the objects that hold the "
            "Variables (or a list of them) instead."
        )
    if isinstance(parent, tuple) and hasattr(parent, "_fields"):
        raise StructureError(
            f"nnx.pop: the Variable at {path_str(path)} is a field of the namedtuple "
            f"{type(parent).__name__}, which cannot be removed. Hold it in a dict, a list "
            "or a Module attribute to pop it."
        )


def _remove_at(container, path):
    """``container`` without the item at ``path``: removed in place, except that tuples
    (immutable) on the way are rebuilt without it and assigned to their parent."""
    k = path[0]
    if len(path) > 1:
        old = _child(container, k)
        new = _remove_at(old, path[1:])
        return container if new is old else _replace_at(container, (k,), new)
    if isinstance(container, tuple):  # not a namedtuple: _check_removable
        return type(container)(x for i, x in enumerate(container) if i != k)
    if isinstance(container, Pytree) or (isinstance(k, str) and not isinstance(container, dict)):
        delattr(container, k)
    else:
        del container[k]
    return container
