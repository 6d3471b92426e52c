"""``nnx.scan``: ``jax.lax.scan`` with vmap-style axes per argument and a carry anywhere.

The nnx arguments are flattened jointly; each leaf gets an axis from its
argument's spec:

- an int: the leaf is scanned over that axis (a stack of layers); what the
  function writes into it comes out stacked again;
- ``None`` (broadcast) or ``nnx.Carry``: the leaf rides in the ``lax.scan``
  carry, so writes made in one step are seen by the next and come out at the
  end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import jax
import jax.numpy as jnp

from nnx.transforms._axes import (
    Carry,
    check_returned_axes,
    check_sizes,
    leaf_axes,
    per_arg_axes,
)
from nnx.transforms._boundary import (
    GRAPH,
    PLAIN_ARG,
    ModeArgs,
    PrepareCache,
    call_without_cells,
)
from nnx.transforms._calls import wrap
from nnx.transforms._crossing import Crossing
from nnx.transforms._errors import AxisError, CarryError
from nnx.transforms._jaxpr import PARTITION_NAME
from nnx.transforms._metadata import remove_mapped_axis, restore_and_add_axis


def _positions(spec, n: int, what: str, where: str) -> list:
    if isinstance(spec, (tuple, list)):
        if len(spec) != n:
            raise AxisError(f"{where}: {what} has {len(spec)} entries, expected {n}.")
        return list(spec)
    return [spec] * n


P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


class ScanWrapped(Generic[P, R]):
    """A function wrapped by :func:`scan`."""

    def __init__(
        self,
        fun: Callable[P, R],
        *,
        length,
        reverse,
        unroll,
        in_axes,
        out_axes,
        _split_transpose,
        transform_metadata=None,
        graph=None,
        graph_updates=None,
    ):
        functools.update_wrapper(self, fun)
        self.transform_metadata = dict(transform_metadata or {})
        self._mode = ModeArgs(graph, graph_updates)
        self.fun: Callable[..., Any] = fun
        self.length = length
        self.reverse = reverse
        self.unroll = unroll
        self.in_axes = in_axes
        self.out_axes = out_axes
        self._split_transpose = _split_transpose
        self._prep = PrepareCache()

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> ScanWrapped[P, R]: ...
    @overload
    def __get__(
        self: ScanWrapped[Concatenate[Any, P2], R], obj: object, objtype: type | None = None
    ) -> Callable[P2, R]: ...
    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fun = self.fun
        where = f"nnx.scan({getattr(fun, '__name__', 'f')})"
        mode = self._mode.mode()
        c = Crossing(
            fun, args, kwargs, where=where, mode=mode, prep_cache=self._prep, what="nnx.scan"
        )
        layout, graph, plain, plain_kw, prep = c.layout, c.graph, c.plain, c.plain_kw, c.prep
        pos, _ = layout
        names = c.names
        arg_axes = _positions(self.in_axes, len(pos), "in_axes", where)
        carry_pos = [i for i, a in enumerate(arg_axes) if a is Carry]
        out_is_tuple = isinstance(self.out_axes, (tuple, list))
        out_axes = list(self.out_axes) if out_is_tuple else [self.out_axes]
        out_carry = [i for i, a in enumerate(out_axes) if a is Carry]
        if len(carry_pos) > 1 or len(out_carry) > 1:
            raise AxisError(f"{where}: nnx.Carry may appear at most once in in_axes and out_axes.")
        if bool(carry_pos) != bool(out_carry):
            raise AxisError(
                f"{where}: nnx.Carry must appear in both in_axes and out_axes (the carry goes "
                f"in and comes out), got in_axes={self.in_axes!r}, out_axes={self.out_axes!r}."
            )
        carry_i = carry_pos[0] if carry_pos else None
        carry_is_graph = carry_i is not None and pos[carry_i] is GRAPH
        g_axes, _ = per_arg_axes(arg_axes, layout, where)
        # plain arguments: their axis (int: scanned, None: broadcast, Carry)
        plain_axes = [a for code, a in zip(pos, arg_axes) if code is PLAIN_ARG]

        if prep is not None:
            key = ("scan", layout, tuple(map(repr, g_axes)))
            axes = prep.extra.get(key)
            if axes is None:
                axes = prep.extra[key] = leaf_axes(prep, graph, g_axes, names, where)
            values = c.values()
            length = check_sizes(prep, values, axes, names, where, self.length)
        else:
            axes, values, length = [], [], self.length
        c_idx = [i for i, a in enumerate(axes) if not isinstance(a, int)]
        s_idx = [i for i, a in enumerate(axes) if isinstance(a, int)]
        c_vals = [values[i] for i in c_idx]
        s_vals = [jnp.moveaxis(values[i], axes[i], 0) for i in s_idx]
        c_plain = None
        s_plain, b_plain = [], []
        for j, (a, ax) in enumerate(zip(plain, plain_axes)):
            if ax is Carry:
                c_plain = a
            elif ax is None:
                b_plain.append((j, a))
            else:
                s_plain.append((j, jax.tree.map(lambda x, ax=ax: jnp.moveaxis(x, ax, 0), a)))
        s_plain_vals = [a for _, a in s_plain]
        s_plain_pos = [j for j, _ in s_plain]
        holder: dict = {}
        carry_in_avals = [jax.typeof(v) for v in c_vals] if c_vals else []
        # a partition of None is a partition too: the new axis is unsharded (Flax NNX)
        named = PARTITION_NAME in self.transform_metadata
        partition = self.transform_metadata.get(PARTITION_NAME)
        ys_axes = tuple(ax for ax in out_axes if ax is not Carry)

        def body(carry, xs):
            c_leaves, c_pl = carry
            s_leaves, s_pl = xs
            leaves: list = [None] * len(values)
            for i, v in zip(c_idx, c_leaves):
                leaves[i] = v
            for i, v in zip(s_idx, s_leaves):
                leaves[i] = v
            plain_now: list = [None] * len(plain)
            for j, a in b_plain:
                plain_now[j] = a
            for j, a in zip(s_plain_pos, s_pl):
                plain_now[j] = a
            if carry_i is not None and not carry_is_graph:
                plain_now[plain_axes.index(Carry)] = c_pl
            a, kw, state = c.enter(leaves, tuple(plain_now), plain_kw)
            renamed = remove_mapped_axis(state[0], axes) if named else []
            out, new_mode = call_without_cells(fun, a, kw)
            if named:
                outs0 = list(out) if out_is_tuple and isinstance(out, tuple) else [out]
                ys0 = tuple(o for o, ax in zip(outs0, out_axes) if ax is not Carry)
                restore_and_add_axis(renamed, ys0, ys_axes, partition)
            idx, new, inner_flat = c.changes(state)
            changed = dict(zip(idx, new))
            # split the output into carry and stacked parts
            if out_is_tuple and (not isinstance(out, tuple) or len(out) != len(out_axes)):
                raise AxisError(
                    f"{where}: out_axes has {len(out_axes)} entries, so the function must "
                    f"return a tuple of {len(out_axes)}; it returned {_describe(out)}."
                )
            outs = list(out) if out_is_tuple else [out]
            carry_out_pl = None
            ys_user = []
            for o, ax in zip(outs, out_axes):
                if ax is Carry:
                    if carry_is_graph:
                        assert carry_i is not None  # carry_is_graph implies it
                        inner_carry = a[carry_i]
                        if o is not inner_carry:
                            raise CarryError(
                                f"{where}: the carry holds nnx objects, so the function must "
                                "return the same carry object it received (update its "
                                "Variables in place); it returned "
                                f"{_describe(o)}. Keep arrays that change in Variables."
                            )
                    else:
                        _check_plain_carry(c_pl, o, where)
                        carry_out_pl = o
                else:
                    if not isinstance(ax, int):
                        raise AxisError(
                            f"{where}: out_axes entries must be ints or nnx.Carry, got {ax!r}."
                        )
                    if inner_flat is not None and mode.graph:
                        assert prep is not None  # changes come from prep's leaves
                        check_returned_axes(
                            o, ax, inner_flat.leaves, axes, prep.paths, names, where
                        )
                    ys_user.append(o)
            c_new = [changed.get(i, leaves[i]) for i in c_idx]
            for i, old_aval, v in zip(c_idx, carry_in_avals, c_new):
                _check_leaf_carry(prep, names, i, old_aval, v, where)
            s_changed = [i for i in s_idx if i in changed]
            s_new = [changed[i] for i in s_changed]
            ys_conv = c.export(tuple(ys_user), inner_flat, new_mode=new_mode)
            holder.update(c_changed=[i for i in c_idx if i in changed], s_changed=s_changed)
            return (c_new, carry_out_pl), (s_new, ys_conv)

        xs = (s_vals, s_plain_vals)
        if not s_vals and not s_plain_vals and length is None:
            raise AxisError(
                f"{where}: nothing is scanned over (no argument has an int axis), so the "
                "number of steps is unknown: pass length=..."
            )
        (c_final, c_pl_final), (s_stacked, ys) = jax.lax.scan(
            body,
            (c_vals, c_plain),
            xs,
            length=length,
            reverse=self.reverse,
            unroll=self.unroll,
            _split_transpose=self._split_transpose,
        )
        pos_c = {i: k for k, i in enumerate(c_idx)}
        c_changed, s_changed = holder.get("c_changed", []), holder.get("s_changed", [])
        new = [c_final[pos_c[i]] for i in c_changed]
        new += [jnp.moveaxis(v, 0, axes[i]) for i, v in zip(s_changed, s_stacked)]
        ys = c.finish(c_changed + s_changed, new, ys)
        ys_iter = iter(ys)
        results = []
        for ax in out_axes:
            if ax is Carry:
                if carry_is_graph:
                    assert carry_i is not None  # carry_is_graph implies it
                    results.append(args[carry_i])
                else:
                    results.append(c_pl_final)
            else:
                y = next(ys_iter)
                if ax != 0:
                    y = _move_out(y, ax)
                results.append(y)
        return tuple(results) if out_is_tuple else results[0]  # pyright: ignore[reportReturnType]


def _move_out(y, ax):
    from nnx.core import Variable, is_graph_node

    def move(x):
        if isinstance(x, Variable):
            x.set_value(jnp.moveaxis(x.get_value(), 0, ax))
            return x
        return jnp.moveaxis(x, 0, ax) if hasattr(x, "ndim") else x

    if is_graph_node(y):
        from nnx.core import iter_graph

        for _, v in iter_graph(y):
            if isinstance(v, Variable):
                move(v)
        return y
    return jax.tree.map(move, y, is_leaf=is_graph_node)


def _describe(x) -> str:
    if isinstance(x, tuple):
        return f"a tuple of {len(x)}"
    return f"a {type(x).__name__}"


def _check_plain_carry(before, after, where: str) -> None:
    tb, ta = jax.tree.structure(before), jax.tree.structure(after)
    if tb != ta:
        raise CarryError(
            f"{where}: the carry changed structure in one step: it went in as {tb} and came "
            f"out as {ta}. The carry must keep the same structure, shapes and dtypes."
        )
    lb = jax.tree_util.tree_flatten_with_path(before)[0]
    la = jax.tree.leaves(after)
    for (kp, b), a in zip(lb, la):
        ab, aa = jax.typeof(b), jax.typeof(a)
        if (ab.shape, ab.dtype) != (aa.shape, aa.dtype):
            raise CarryError(
                f"{where}: the carry at {jax.tree_util.keystr(kp) or '<root>'} went in as "
                f"{ab.str_short()} and came out as {aa.str_short()}. The carry must keep the "
                "same shapes and dtypes across steps (cast the new value, e.g. "
                "`.astype(x.dtype)`)."
            )


def _check_leaf_carry(prep, names, i, old_aval, new, where: str) -> None:
    na = jax.typeof(new)
    if (old_aval.shape, old_aval.dtype) != (na.shape, na.dtype):
        path = prep.paths[i]
        head = names[path[0]] if path[0] < len(names) else path[0]
        p = "/".join(str(c) for c in (head, *path[1:]))
        raise CarryError(
            f"{where}: the Variable at {p!r} is carried from step to step (in_axes None or "
            f"nnx.Carry) and went in as {old_aval.str_short()} but was set to "
            f"{na.str_short()}. Keep its shape and dtype (cast the new value), or scan it "
            "(an int axis) if each step has its own."
        )


@overload
def scan(
    fun: Callable[P, R],
    *,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    in_axes: Any = (Carry, 0),
    out_axes: Any = (Carry, 0),
    _split_transpose: bool = False,
    transform_metadata: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> ScanWrapped[P, R]: ...
@overload
def scan(
    fun: None = None,
    *,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    in_axes: Any = (Carry, 0),
    out_axes: Any = (Carry, 0),
    _split_transpose: bool = False,
    transform_metadata: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[Callable[P, R]], ScanWrapped[P, R]]: ...
def scan(
    fun: Callable | None = None,
    *,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    in_axes: Any = (Carry, 0),
    out_axes: Any = (Carry, 0),
    _split_transpose: bool = False,
    transform_metadata: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.lax.scan`` with per-argument axes and the carry at any position.

    Example (seed "scan over layers")::

        @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
        def forward(layer, x):        # layer: one member of a stack made by nnx.vmap
            return layer(x)

        y = forward(stack, x)         # BatchNorm/Dropout state of every layer updated

    ``in_axes`` has one entry per positional argument: ``nnx.Carry`` (at most
    one), an int (scanned over that axis), ``None`` (the same in every step;
    writes to its Variables carry over to the next step and come out), or
    :class:`StateAxes`. ``out_axes`` says where the carry is in the output
    and the axis along which the other outputs are stacked. The function
    returns the carry alone when ``out_axes=nnx.Carry``.

    Args:
      fun: the function (or use ``@nnx.scan(...)`` with options).
      length: the number of steps, when nothing is scanned over.
      reverse: scan from the end, as in ``jax.lax.scan``.
      unroll: as in ``jax.lax.scan``.
      in_axes: per positional argument: ``nnx.Carry``, an int, None or
        :class:`StateAxes`.
      out_axes: ``nnx.Carry`` and ints, one per output.
      transform_metadata: ``{nnx.PARTITION_NAME: name}``: inside, a scanned
        Variable's ``out_sharding`` loses the entry at its scan axis (put back
        after), and new Variables returned get ``name`` at their out axis, as
        :func:`nnx.vmap` does.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside
        (see :func:`nnx.jit`); None for the current setting.
    """
    return wrap(
        ScanWrapped,
        fun,
        graph=graph,
        graph_updates=graph_updates,
        length=length,
        reverse=reverse,
        unroll=unroll,
        in_axes=in_axes,
        out_axes=out_axes,
        _split_transpose=_split_transpose,
        transform_metadata=transform_metadata,
    )
