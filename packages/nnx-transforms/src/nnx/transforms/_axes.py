"""Axis markers shared by ``vmap`` and ``scan``: :class:`StateAxes`, ``Carry`` (defined
in nnx-core, re-exported here: one object whichever package is imported), and the
per-leaf axes of a call's nnx arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from nnx.core import (
    AliasingError,
    Carry,
    Variable,
    flatten,
    is_graph_node,
    iter_graph,
    to_predicate,
)
from nnx.transforms._boundary import NodeLeaves
from nnx.transforms._errors import AxisError


class StateAxes:
    """Different axes for different kinds of state of one argument.

    Example::

        # parameters stacked on axis 0, batch statistics shared (broadcast)
        state_axes = nnx.StateAxes({nnx.Param: 0, nnx.BatchStat: None})
        @nnx.vmap(in_axes=(state_axes, 0))
        def forward(model, x): ...

    Keys are filters (Variable types, path strings, predicates, ``...``),
    tried in order; values are axes (an int, ``None`` for broadcast, or
    ``nnx.Carry`` in ``nnx.scan``). Every Variable of the argument must match
    one filter. In ``nnx.vmap``'s ``out_axes`` it places the Variables of a new
    object returned the same way, and for ``self`` of a vmapped ``__init__``
    (Flax NNX's ``nnx.vmap(in_axes=(state_axes, state_axes))``) it places the
    Variables the constructor creates.
    """

    __slots__ = ("items", "_preds")

    def __init__(self, mapping: Mapping[Any, Any] | Any):
        items = tuple(mapping.items()) if isinstance(mapping, Mapping) else tuple(mapping)
        self.items = items
        self._preds = tuple((to_predicate(f), axis) for f, axis in items)

    def axis_for(self, path, leaf, where: str):
        for pred, axis in self._preds:
            if pred(path, leaf):
                return axis
        raise AxisError(
            f"{where}: no filter of {self!r} matches the {type(leaf).__name__} at "
            f"{'/'.join(map(str, path)) or '<root>'!r}. Add a filter for it, or `...: axis` "
            "as the last entry to cover the rest."
        )

    def __repr__(self) -> str:
        inner = ", ".join(f"{getattr(f, '__name__', f)!r}: {a!r}" for f, a in self.items)
        return f"StateAxes({{{inner}}})"

    def __eq__(self, other):
        return isinstance(other, StateAxes) and self.items == other.items

    def __hash__(self):
        return hash(tuple((repr(f), repr(a)) for f, a in self.items))


class _Nothing:
    def __repr__(self) -> str:
        return "<nothing>"


_NOTHING: Any = _Nothing()


class PrefixAxes(StateAxes):
    """An ``in_axes`` entry shaped like its argument (what :func:`nnx.prefix` builds).

    Each Variable's axis is read from the prefix at the Variable's path: a
    Variable there holds the axis as its value, an int or ``None`` there covers
    everything below it. Not public: ``vmap``/``scan`` wrap such entries in it.
    """

    __slots__ = ("tree", "key", "side")

    def __init__(self, tree: Any, side: str = "in_axes"):
        self.tree = tree
        self.items = ()
        self._preds = ()
        self.key = _prefix_key(tree, {})
        self.side = side

    def axis_for(self, path, leaf, where: str, arg: str | None = None):
        node = self.tree
        for i, part in enumerate(path):
            if _is_axis(node):
                return node  # one axis for the whole subtree
            child = _NOTHING if isinstance(node, Variable) else _prefix_child(node, part)
            if child is _NOTHING:
                raise self._misfit(path, leaf, path[:i], node, where, arg, missing=part)
            node = child
        if isinstance(node, Variable):
            node = _var_axis(node)
        if _is_axis(node):
            return node
        raise self._misfit(path, leaf, path, node, where, arg)

    def _misfit(self, path, leaf, at, node, where, arg, missing: Any = _NOTHING) -> AxisError:
        head = () if arg is None else (arg,)
        p = "/".join(map(str, (*head, *path))) or "<root>"
        q = "/".join(map(str, (*head, *at))) or "<root>"
        if missing is not _NOTHING:
            found = f"a {type(node).__name__} with no entry {missing!r}"
        else:
            found = f"a {type(node).__name__}, not an axis"
        what = "argument" if self.side == "in_axes" else "output"
        return AxisError(
            f"{where}: the {self.side} prefix does not fit the {what}: for the "
            f"{type(leaf).__name__} at {p!r} it has {found} at {q!r}. Each Variable's "
            "axis (an int or None) must be at its path in the prefix: build the prefix "
            f"from the {what} itself, `nnx.prefix({what[:3]}, {{filter: axis, ...}})`, or give one "
            f"int/None{' (or nnx.StateAxes)' if self.side == 'in_axes' else ''} for the "
            f"whole {what}."
        )

    def __repr__(self) -> str:
        return f"PrefixAxes({self.key!r})"  # content-based: scan caches by repr

    def __eq__(self, other):
        return isinstance(other, PrefixAxes) and self.key == other.key

    def __hash__(self):
        return hash(self.key)


def _is_axis(x) -> bool:
    return x is None or x is Carry or (isinstance(x, int) and not isinstance(x, bool))


def _prefix_child(node, part):
    if isinstance(node, Mapping):
        return node.get(part, _NOTHING)
    if isinstance(node, (list, tuple)):
        ok = isinstance(part, int) and 0 <= part < len(node)
        return node[part] if ok else _NOTHING
    if is_graph_node(node) and isinstance(part, str):
        return vars(node).get(part, _NOTHING)
    return _NOTHING


def _prefix_key(x, memo: dict) -> Any:
    """A hashable summary of a prefix's axes, for the transforms' caches."""
    if _is_axis(x):
        return x
    if isinstance(x, Variable):
        v = _var_axis(x)
        return ("var", v if _is_axis(v) else type(v).__name__)
    if isinstance(x, Mapping):
        return ("map", tuple((k, _prefix_key(c, memo)) for k, c in x.items()))
    if isinstance(x, (list, tuple)):
        return ("seq", tuple(_prefix_key(c, memo) for c in x))
    if is_graph_node(x):
        if id(x) in memo:
            return ("ref", memo[id(x)])
        memo[id(x)] = len(memo)
        items = tuple((k, _prefix_key(c, memo)) for k, c in vars(x).items())
        return ("node", type(x).__name__, items)
    return ("other", type(x).__name__)


def _is_prefix(axis) -> bool:
    if isinstance(axis, StateAxes):
        return False
    return isinstance(axis, (Mapping, list, tuple, Variable)) or is_graph_node(axis)


def per_arg_axes(spec, layout, where: str) -> tuple[list, list]:
    """Split an ``in_axes`` spec into (axes of graph args, axes of plain args).

    Keyword arguments get axis 0, as in ``jax.vmap``.
    """
    from nnx.transforms._boundary import GRAPH, PLAIN_ARG

    pos, kw = layout
    if isinstance(spec, (tuple, list)):
        if len(spec) != len(pos):
            raise AxisError(
                f"{where}: in_axes has {len(spec)} entries but the function was called with "
                f"{len(pos)} positional arguments. Give one axis per positional argument "
                "(an int, None, nnx.StateAxes or nnx.Carry), or a single axis for all."
            )
        per = list(spec)
    else:
        per = [spec] * len(pos)
    g, p = [], []
    for code, axis in zip(pos, per):
        if code is GRAPH:
            g.append(PrefixAxes(axis) if _is_prefix(axis) else axis)
        elif code is PLAIN_ARG:
            if isinstance(axis, StateAxes):
                raise AxisError(
                    f"{where}: nnx.StateAxes was given for an argument that holds no nnx "
                    "objects; use an int or None for arrays."
                )
            p.append(axis)
    for code in kw:
        if code[1] is GRAPH:
            g.append(0)
    return g, p


def leaf_axes(prep, graph: tuple, arg_axes: list, names: list[str], where: str) -> list:
    """The axis of each leaf of the joint flattening, from its argument's spec.

    A Variable reachable from several arguments must get the same axis from
    each of them; otherwise it would be mapped in two ways at once.
    """
    n = len(prep.leaves)
    axes: list = [None] * n
    seen: dict[int, tuple] = {}
    index = {id(x): i for i, x in enumerate(prep.leaves) if isinstance(x, Variable)}
    owners = prep.owners()
    paths = prep.paths
    for k, (node, spec) in enumerate(zip(graph, arg_axes)):
        sub = flatten(node, with_paths=True)
        for path, x in zip(sub.paths, sub.leaves):
            axis = _axis_of(spec, path, x, where, names[k])
            if isinstance(x, Variable):
                i = index[id(x)]
                if i in seen and seen[i][0] != axis:
                    other_k, other_path = seen[i][1], seen[i][2]
                    raise AliasingError(
                        f"{where}: the {type(x).__name__} at {_p(names[k], path)} is also "
                        f"reachable as {_p(names[other_k], other_path)}, with a different "
                        f"axis ({axis!r} vs {seen[i][0]!r}). A shared Variable can be mapped "
                        "in one way only: give both arguments the same axis for it "
                        "(nnx.StateAxes), or pass it once."
                    )
                seen.setdefault(i, (axis, k, path))
                axes[i] = axis
    for i, x in enumerate(prep.leaves):
        if not isinstance(x, Variable):
            k = owners[i]
            spec = arg_axes[k]
            axes[i] = _axis_of(spec, paths[i][1:], x, where, names[k])
    return axes


def check_sizes(prep, values, axes, names, where: str, axis_size=None, what="axis") -> int | None:
    """All mapped leaves must have the same size along their axis; return it."""
    size, first = axis_size, None
    for i, (v, a) in enumerate(zip(values, axes)):
        if not isinstance(a, int):
            continue
        shape = np.shape(v)
        path = prep.paths[i]
        if not -len(shape) <= a < len(shape) or not shape:
            raise AxisError(
                f"{where}: the value at {_p(names[path[0]], path[1:])} has shape {shape}, "
                f"which has no {what} {a}. Use in_axes=None (or nnx.StateAxes) for state "
                "that is shared, not stacked."
            )
        n = shape[a]
        if size is None:
            size, first = n, (i, path)
        elif n != size:
            ref = (
                f"{_p(names[first[1][0]], first[1][1:])} has {size}"
                if first
                else f"axis_size is {size}"
            )
            raise AxisError(
                f"{where}: mismatched sizes along the mapped {what}: "
                f"{_p(names[path[0]], path[1:])} has {n} along axis {a}, but {ref}. "
                "Every mapped argument must have the same size."
            )
    return size


def size_source(prep, values, axes, names, axis_size) -> str | None:
    """What fixed the mapped size, for messages: ``axis_size`` or the first mapped path."""
    if axis_size is not None:
        return f"axis_size is {axis_size}"
    for i, (v, a) in enumerate(zip(values, axes)):
        if isinstance(a, int):
            path = prep.paths[i]
            return f"{_p(names[path[0]], path[1:])} has {np.shape(v)[a]}"
    return None


def check_plain_sizes(
    fun, layout, plain, p_axes, size, first: str | None, where: str, what="axis"
) -> None:
    """Plain positional arguments mapped on an int axis must match ``size`` too.

    ``first`` names what set ``size`` (a Variable's path, or ``axis_size``). Only
    arguments whose axis is a single int are checked here; nested axis specs are
    left to JAX. The message names the argument and the path inside it.
    """
    from nnx.transforms._boundary import plain_arg_names

    names = plain_arg_names(fun, layout)
    for name, arg, a in zip(names, plain, p_axes):
        if not isinstance(a, int):
            continue
        for kp, leaf in jax.tree_util.tree_flatten_with_path(arg)[0]:
            shape = np.shape(leaf)
            where_leaf = _p(name, [_key_name(k) for k in kp])
            if not -len(shape) <= a < len(shape):
                raise AxisError(
                    f"{where}: the argument {where_leaf} has shape {shape}, which has no "
                    f"{what} {a}. Use in_axes None for an argument that is shared."
                )
            n = shape[a]
            if size is None:
                size, first = n, f"{where_leaf} has {n}"
            elif n != size:
                raise AxisError(
                    f"{where}: mismatched sizes along the mapped {what}: {where_leaf} has "
                    f"{n} along axis {a}, but {first}. Every mapped argument must have the "
                    "same size; use in_axes None for what is shared."
                )


def _key_name(k):
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def _p(name, path) -> str:
    return repr("/".join(str(c) for c in (name, *path)))


def check_returned_axes(out, out_axes, inner_leaves, axes, paths, names, where: str) -> None:
    """An input Variable that is returned must come out on the axis it went in with.

    It comes back as the caller's own object, unchanged in shape, so returning
    it on another axis (or stacking state that went in shared) would say one
    thing and do another.
    """
    axis_of = None

    def check(ax, sub):
        nonlocal axis_of
        for top in jax.tree.leaves(sub, is_leaf=is_graph_node):
            if not is_graph_node(top):
                continue
            if axis_of is None:
                axis_of = {
                    id(x): (i, a)
                    for i, (x, a) in enumerate(zip(inner_leaves, axes))
                    if isinstance(x, Variable)
                }
            for vpath, x in iter_graph(top):
                hit = axis_of.get(id(x)) if isinstance(x, Variable) else None
                want = ax.axis_for(vpath, x, where) if isinstance(ax, StateAxes) else ax
                if hit is None or hit[1] == want:
                    continue
                i, a = hit
                path = paths[i]
                went = "nnx.Carry" if a is not None and not isinstance(a, int) else repr(a)
                raise AliasingError(
                    f"{where}: the function returned the {type(x).__name__} at "
                    f"{_p(names[path[0]], path[1:])}, an input that went in with axis {went}, "
                    f"at out_axes {want!r}. A returned input comes back as the caller's own "
                    f"object, unchanged, so it must come out on the axis it went in with: "
                    f"return it where out_axes is {went}, or do not return it (the caller "
                    "holds it, and its updates come out anyway), or return a new object "
                    "(`nnx.clone(...)`) to get a stacked copy."
                )

    try:
        jax.tree.map(check, out_axes, out, is_leaf=lambda x: x is None)
    except (ValueError, TypeError) as e:
        if isinstance(e, AliasingError):
            raise
        # out_axes does not fit the output: the JAX transform reports it


def _axis_of(spec, path, leaf, where: str, arg: str):
    if isinstance(spec, PrefixAxes):
        return spec.axis_for(path, leaf, where, arg)
    if isinstance(spec, StateAxes):
        return spec.axis_for(path, leaf, where)
    return spec


def _var_axis(v: Variable):
    """The value a prefix's Variable holds. ``nnx.prefix`` of a ref or hijax Variable
    makes one of that mode holding a bare int or None (not a ref or cell)."""
    raw = v.get_raw_value()
    return raw if _is_axis(raw) else v.get_value()


def _stop_at_node(x) -> bool:
    return x is None or is_graph_node(x)


def _is_node_leaves(x) -> bool:
    return isinstance(x, NodeLeaves)


def _per_leaf(a) -> bool:
    """An out_axes entry that gives each Variable of a returned object its own axis."""
    return is_graph_node(a) or isinstance(a, StateAxes)


class OutPrefix:
    """An ``out_axes`` with entries shaped like the objects returned (:func:`nnx.prefix`),
    or :class:`StateAxes` entries (an axis per kind of state of a returned object).

    JAX sees the objects' leaves only after the trace, so it cannot place them by
    such an entry. Inside, :meth:`split` takes each such object's leaves out of
    its :class:`NodeLeaves`, by the axis the prefix gives at the leaf's path:
    mapped leaves leave on axis 0 (:meth:`join` moves them to their axis
    outside), unmapped ones with out_axes None (JAX checks that they are).
    ``jax_axes`` is ``out_axes`` with those entries as 0 (over an empty list).
    """

    __slots__ = ("out_axes", "jax_axes")

    def __init__(self, out_axes):
        self.out_axes = out_axes
        self.jax_axes = jax.tree.map(
            lambda a: 0 if _per_leaf(a) else a, out_axes, is_leaf=_stop_at_node
        )

    @staticmethod
    def wanted(out_axes) -> bool:
        """Whether ``out_axes`` has an object-shaped or StateAxes entry."""
        return any(_per_leaf(a) for a in jax.tree.leaves(out_axes, is_leaf=_stop_at_node))

    def split(self, out, where: str) -> tuple[list, list, tuple, list]:
        """Inside: ``(mapped leaves, unmapped leaves, plan, unmapped leaves' places)``.

        Empties those NodeLeaves; a place reads ``"'kernel' of the Linear returned"``.
        """
        specs, treedef = jax.tree.flatten(self.out_axes, is_leaf=_stop_at_node)
        try:
            subs = treedef.flatten_up_to(out)
        except (ValueError, TypeError) as e:
            detail = re.sub(r"<[\w.]*NodeLeaves object at \w+>", "an nnx object", str(e))
            raise AxisError(
                f"{where}: out_axes is not a prefix of what the function returned "
                f"({detail.rstrip('.')}). Give out_axes the structure of the output, with "
                "an nnx.prefix(obj, ...) entry where an object is returned (or one int for "
                "all of it)."
            ) from None
        tops = jax.tree.leaves(out, is_leaf=_is_node_leaves)
        mapped: list = []
        unmapped: list = []
        plan = []
        places: list = []
        for spec, sub in zip(specs, subs):
            if not _per_leaf(spec):
                continue
            shaped = isinstance(spec, StateAxes)
            if not isinstance(sub, NodeLeaves):
                what = repr(spec) if shaped else f"an entry shaped like a {type(spec).__name__}"
                raise AxisError(
                    f"{where}: out_axes has {what}{'' if shaped else ' (nnx.prefix)'} where "
                    f"the function returned {type(sub).__name__}; such an entry places the "
                    "Variables of an object that the function returns. Give that output an "
                    "int or None."
                )
            prefix = spec if shaped else PrefixAxes(spec, side="out_axes")
            axes = tuple(
                prefix.axis_for(p, x, where) if shaped else prefix.axis_for(p, x, where, "<output>")  # pyright: ignore[reportCallIssue]
                for p, x in zip(sub.paths or (), sub.sources or ())
            )
            for a in axes:
                if a is not None and not isinstance(a, int):
                    raise AxisError(
                        f"{where}: out_axes places a returned Variable with {a!r}; an output "
                        "axis is an int or None."
                    )
            plan.append((next(i for i, t in enumerate(tops) if t is sub), axes))
            for x, a, p in zip(sub.leaves, axes, sub.paths or ()):
                (unmapped if a is None else mapped).append(x)
                if a is None:
                    kind = "object" if shaped else type(spec).__name__
                    places.append(f"{_p('', p)[2:-1]!r} of the {kind} returned")
            sub.leaves = []
        return mapped, unmapped, tuple(plan), places

    @staticmethod
    def join(out, plan: tuple, mapped: list, unmapped: list):
        """Outside: put the leaves back, each mapped one on its axis."""
        tops, treedef = jax.tree.flatten(out, is_leaf=_is_node_leaves)
        m, u = iter(mapped), iter(unmapped)
        for index, axes in plan:
            leaves = []
            for a in axes:
                if a is None:
                    leaves.append(next(u))
                    continue
                x = next(m)
                if a != 0:
                    x = jax.tree.map(lambda y, a=a: jax.numpy.moveaxis(y, 0, a), x)
                leaves.append(x)
            tops[index] = NodeLeaves(leaves)
        return jax.tree.unflatten(treedef, tops)
