"""``nnx.vmap`` (with :class:`StateAxes` per kind of state) and ``nnx.split_rngs``."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import jax

from nnx.core import RngStream, TraceContextError, Variable, iter_graph, to_predicate
from nnx.transforms._axes import (
    StateAxes,
    check_plain_sizes,
    check_returned_axes,
    check_sizes,
    leaf_axes,
    per_arg_axes,
    size_source,
)
from nnx.transforms._boundary import (
    PrepareCache,
    assemble,
    call_without_cells,
    collect_updates,
    enter_values,
    export_output,
    graph_arg_names,
    import_output,
    split_call,
    write_back,
)
from nnx.transforms._errors import AxisError

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


class VmapWrapped(Generic[P, R]):
    """A function wrapped by :func:`vmap`."""

    def __init__(
        self, fun: Callable[P, R], *, in_axes, out_axes, axis_name, axis_size, spmd_axis_name
    ):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.in_axes = in_axes
        self.out_axes = out_axes
        self.axis_name = axis_name
        self.axis_size = axis_size
        self.spmd_axis_name = spmd_axis_name
        self._prep = PrepareCache()
        if isinstance(out_axes, StateAxes) or (
            isinstance(out_axes, (tuple, list)) and any(isinstance(a, StateAxes) for a in out_axes)
        ):
            raise AxisError(
                "nnx.vmap: nnx.StateAxes is accepted in in_axes only. Objects returned from "
                "vmap are stacked along their out_axes (an int); inputs that come back are "
                "the caller's objects, with the axes they went in with."
            )

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> VmapWrapped[P, R]: ...
    @overload
    def __get__(
        self: VmapWrapped[Concatenate[Any, P2], R], obj: object, objtype: type | None = None
    ) -> Callable[P2, R]: ...
    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fun = self.fun
        where = f"nnx.vmap({getattr(fun, '__name__', 'f')})"
        layout, graph, plain, plain_kw = split_call(args, kwargs)
        names = graph_arg_names(fun, layout)
        g_axes, p_axes = per_arg_axes(self.in_axes, layout, where)
        if graph:
            prep = self._prep(graph)
            key = ("vmap", layout, tuple(map(_axis_key, g_axes)))
            axes = prep.extra.get(key)
            if axes is None:
                axes = prep.extra[key] = leaf_axes(prep, graph, g_axes, names, where)
            values = prep.values()
            size = check_sizes(prep, values, axes, names, where, self.axis_size)
        else:
            prep, axes, values, size = None, [], [], self.axis_size
        check_plain_sizes(
            fun,
            layout,
            plain,
            p_axes,
            size,
            size_source(prep, values, axes, names, self.axis_size),
            where,
        )
        holder: dict = {}

        def inner(leaves, plain, plain_kw):
            if prep is not None:
                objs, gd = enter_values(prep, leaves)
            else:
                objs, gd = (), None
            a, kw = assemble(layout, objs, plain, plain_kw)
            out, as_hijax = call_without_cells(fun, a, kw)
            if gd is not None:
                idx, new, inner_flat = collect_updates(
                    objs, leaves, gd, where=where, names=names, values=True
                )
                nodes = inner_flat.nodes
                assert prep is not None  # gd comes from prep
                check_returned_axes(
                    out, self.out_axes, inner_flat.leaves, axes, prep.paths, names, where
                )
            else:
                idx, new, nodes = [], [], []
            updates: list = [None] * len(leaves)
            for i, v in zip(idx, new):
                updates[i] = v
            out, spec = export_output(out, nodes, where=where, as_hijax=as_hijax)
            holder["idx"], holder["spec"] = idx, spec
            return updates, out

        vmapped = jax.vmap(
            inner,
            in_axes=(list(axes), tuple(p_axes), 0),
            out_axes=(list(axes), self.out_axes),
            axis_name=self.axis_name,
            axis_size=self.axis_size,
            spmd_axis_name=self.spmd_axis_name,
        )
        try:
            updates, out = vmapped(values, plain, plain_kw)
        except Exception as e:
            better = _explain(e, prep, names, where)
            if better is e:
                raise
            raise better from e
        if prep is not None:
            idx = holder["idx"]
            write_back(prep.leaves, idx, [updates[i] for i in idx], values=True)
            return import_output(out, holder["spec"], prep.flat.nodes)
        return import_output(out, holder["spec"], None)


def _axis_key(a):
    return a if not isinstance(a, StateAxes) else ("StateAxes", hash(a))


_OUT_AXES_MSG = re.compile(r"out_axes\[0\]\[(\d+)\], got axis spec None but output was batched")
_CAPTURED_REF_MSG = "set/swap operation with vmapped value on an unbatched array reference"


def _explain(e: Exception, prep, names, where):
    if _CAPTURED_REF_MSG in str(e):
        return TraceContextError(
            f"{where}: a ref Variable (or jax.Ref) created outside the transform was written "
            "inside it. Every member would write its own value into one shared array, "
            "which JAX cannot do. Pass the object that holds it as an argument of nnx.vmap "
            "(in_axes None to share it, 0 to give each member its own), or return the new "
            "value and write it outside."
        )
    if not isinstance(e, ValueError):
        return e
    if str(e).startswith("vmap got inconsistent sizes"):
        detail = str(e).split("\n-----", 1)[0].split(":", 1)[1].strip()
        return AxisError(
            f"{where}: mismatched sizes along the mapped axis ('leaves' are the nnx "
            f"arguments' Variables, 'plain' the other arguments): {detail} Every mapped "
            "argument must have the same size; use in_axes None for what is shared."
        )
    m = _OUT_AXES_MSG.search(str(e))
    if m and prep is not None:
        path = prep.paths[int(m.group(1))]
        head = names[path[0]] if path[0] < len(names) else path[0]
        p = "/".join(str(c) for c in (head, *path[1:]))
        return AxisError(
            f"{where}: the Variable at {p!r} has in_axes None (one value shared by every "
            "member) but the function wrote a value that differs per member. Map it "
            "(in_axes 0, or nnx.StateAxes({...: 0})) so each member keeps its own, or write "
            "a value that does not depend on the mapped inputs."
        )
    return e


@overload
def vmap(
    fun: Callable[P, R],
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    axis_size: int | None = None,
    spmd_axis_name: Any = None,
) -> VmapWrapped[P, R]: ...
@overload
def vmap(
    fun: None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    axis_size: int | None = None,
    spmd_axis_name: Any = None,
) -> Callable[[Callable[P, R]], VmapWrapped[P, R]]: ...
def vmap(
    fun: Callable | None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    axis_size: int | None = None,
    spmd_axis_name: Any = None,
) -> Any:
    """``jax.vmap`` for functions of nnx objects.

    Example::

        @nnx.vmap(in_axes=0, out_axes=0)
        def create_model(key):
            return MLP(10, 32, 10, rngs=nnx.Rngs(key))

        models = create_model(jax.random.split(jax.random.key(0), 5))  # a stack of 5

        @nnx.vmap(in_axes=(0, None))
        def forward(model, x):          # each member on the same input
            return model(x)

    ``in_axes`` has one entry per positional argument (or one for all); for
    an nnx argument it is an int (all its state stacked on that axis),
    ``None`` (shared by every member) or :class:`StateAxes` (an axis per kind
    of state). Writes to the state of an nnx argument inside come out, stacked
    as they went in; new objects returned are stacked along ``out_axes``.
    """
    options = dict(
        in_axes=in_axes,
        out_axes=out_axes,
        axis_name=axis_name,
        axis_size=axis_size,
        spmd_axis_name=spmd_axis_name,
    )
    if fun is None:
        return lambda f: VmapWrapped(f, **options)
    return VmapWrapped(fun, **options)


# -- split_rngs ---------------------------------------------------------------------------
class split_rngs:  # noqa: N801 (used as a decorator and a context manager, like Flax)
    """Split random streams ``splits`` ways for the duration of a call.

    Example::

        @nnx.split_rngs(splits=5)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create_stack(rngs):
            return nnx.Linear(2, 2, rngs=rngs)

        stack = create_stack(nnx.Rngs(0))      # 5 members, different parameters

        with nnx.split_rngs(rngs, splits=5):   # context form
            ...

    Every ``RngStream`` reachable from the arguments (or from ``node``) gets a
    key of shape ``(splits,)`` derived from its next key, and count zero; when
    the call returns, the streams get back their previous key and a count
    advanced by one, so the next split differs. ``only`` (a filter on stream
    names, e.g. ``'dropout'``) limits which streams are split.
    """

    def __init__(self, node: Any = None, *, splits: int | tuple[int, ...], only: Any = ...):
        self.node = node
        self.splits = splits
        self.only = to_predicate(only)
        self._saved: list = []

    # decorator form
    def __call__(self, fun: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fun)
        def wrapper(*args, **kwargs):
            saved = _split_streams((args, kwargs), self.splits, self.only)
            try:
                return fun(*args, **kwargs)
            finally:
                _restore(saved)

        return wrapper

    # context-manager form
    def __enter__(self):
        self._saved.append(_split_streams(self.node, self.splits, self.only))
        return self.node

    def __exit__(self, *exc):
        _restore(self._saved.pop())


def _streams(node) -> list[RngStream]:
    out, seen = [], set()
    for _, x in iter_graph(node):
        if isinstance(x, RngStream) and id(x) not in seen:
            seen.add(id(x))
            out.append(x)
    return out


def _split_streams(node, splits, pred) -> list:
    saved = []
    for s in _streams(node):
        if not pred((s.tag,), s):
            continue
        key = s()  # advances the count: the next split differs
        saved.append((s.key, s.key.get_raw_value(), s.key.get_value()))
        saved.append((s.count, s.count.get_raw_value(), s.count.get_value()))
        new_key = jax.random.split(key, splits)
        _replace(s.key, new_key)
        _replace(s.count, jax.numpy.zeros(new_key.shape, jax.numpy.uint32))
    return saved


def _replace(v: Variable, value) -> None:
    if v.ref:
        v.set_raw_value(jax.tree.map(jax.new_ref, value))
    elif v.hijax:
        v.set_value(value)
    else:
        v.set_raw_value(value)


def _restore(saved) -> None:
    for v, raw, value in reversed(saved):
        if v.hijax:
            v.set_value(value)
        else:
            v.set_raw_value(raw)
