"""``nnx.jit``: ``jax.jit`` that takes and returns nnx objects, with a fast call path.

Per call, in front of the compiled program: one pass over the arguments to
split them (:func:`~nnx.transforms._boundary.split_call`), one identity check
to reuse the flattened graph (``nnx.FlattenCache``), one list of stored values
(``get_raw_value`` per Variable), the compiled entry (the last call's for this
flattening when the layout and graph mode are the same; else one dict lookup keyed
by the GraphDef), the ``jax.jit`` call, and one ``set_raw_value`` per Variable
the function changed.

Ref and hijax Variables (:class:`_Routes`): outside every trace their arrays go
to ``jax.jit`` (``nnx.read_stored``), not their refs and cells, which would put
the call on JAX's Python path for mutable arguments (decision 0006); inside they
are ref Variables around those arrays, and every value comes back into the refs
and cells (one ``nnx.StoredBatch`` each). Inside a trace (``nnx.jit`` nested in another
transform) refs and cells go to ``jax.jit`` as they are, as JAX inlines the call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import jax
import jax.numpy as jnp

from nnx.core import (
    StoredBatch,
    Variable,
    flatten,
    new_ref,
    read_stored,
    stand_in,
    storage_mode,
    variable_from_stored,
    variable_record,
)
from nnx.transforms._boundary import (
    GRAPH,
    HIJAX,
    PLAIN,
    PLAIN_ARG,
    REF,
    ModeArgs,
    PrepareCache,
    assemble,
    at_top_level,
    call_without_cells,
    check_tree,
    collect_updates,
    enter_raw,
    export_output,
    graph_arg_index,
    graph_arg_names,
    import_output,
    is_graph_arg,
    split_call,
    write_back,
)
from nnx.transforms._calls import wrap
from nnx.transforms._explain import donated_note, explain_call_error
from nnx.transforms._sharding import leaf_shardings, plain_shardings
from nnx.transforms._stages import Lowered, Traced, _Call

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


class _Meta:
    """Static part of a jitted function's output: which Variables changed, output
    structure, and which ref values came out with another shape or dtype (``relayout``:
    positions in the :class:`_Routes` ref list; those get new refs outside)."""

    __slots__ = ("idx", "spec", "relayout", "_hash")

    def __init__(self, idx: tuple, spec, relayout: tuple = ()):
        self.idx = idx
        self.spec = spec
        self.relayout = relayout
        self._hash = hash((idx, spec, relayout))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (
            type(other) is _Meta
            and self.idx == other.idx
            and self.spec == other.spec
            and self.relayout == other.relayout
        )


jax.tree_util.register_static(_Meta)


def _as_tuple(x) -> tuple:
    if x is None:
        return ()
    if isinstance(x, (int, str)):
        return (x,)
    return tuple(x)


# -- ref and hijax Variables: their arrays cross, not their refs and cells -----------------
class _RouteKey:
    """Which leaves of a structure cross ``nnx.jit`` as arrays (part of the compile key).

    ``ref_idx``: ref Variables (their buffers go in donated, their values come out);
    ``hijax_idx``: hijax Variables that hold an array (their cell's content goes in,
    their value comes out). Both enter as ref Variables inside.
    """

    __slots__ = ("ref_idx", "hijax_idx", "_hash")

    def __init__(self, ref_idx: tuple, hijax_idx: tuple):
        self.ref_idx = ref_idx
        self.hijax_idx = hijax_idx
        self._hash = hash((ref_idx, hijax_idx))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (
            type(other) is _RouteKey
            and self.ref_idx == other.ref_idx
            and self.hijax_idx == other.hijax_idx
        )


class _Routes:
    """The ref and hijax Variables of one FlatGraph, as ``nnx.jit`` hands them to JAX.

    A ``jax.jit`` over refs or cells takes JAX's Python path for mutable arguments
    (decision 0006: 5-15x a plain call). Outside every trace ``nnx.jit`` passes arrays
    instead: a ref Variable's buffers (:func:`nnx.read_stored`, no JAX operation),
    donated, since every ref's value comes back (JAX's own rule for refs, which aliases
    them the same way: an unwritten ref costs no copy); a hijax Variable's array (not
    donated: ``v[...]`` hands out that very array). Inside, both are ref Variables
    around those arrays, so a nested ``jax.jit`` or a ``lax`` loop closing over one
    still carries its writes. After the call the values are written into the refs and
    cells (:func:`nnx.write_stored`). Hijax Variables that hold another pytree (a dict
    that may grow inside) cross as cells, as everything does inside a trace.
    """

    __slots__ = ("key", "refs", "cells", "n_ref", "others", "only_cells", "checked")

    def __init__(self, key: _RouteKey, leaves: list):
        self.key = key
        self.refs = StoredBatch([leaves[i] for i in key.ref_idx])
        self.cells = StoredBatch([leaves[i] for i in key.hijax_idx])
        self.n_ref = len(key.ref_idx)
        # whether leaves other than these cross (plain Variables, arrays): their stored
        # values are read; when every leaf is routed the list starts empty
        self.others = self.n_ref + len(key.hijax_idx) < len(leaves)
        # every leaf a hijax Variable with an array (a model built under
        # var_defaults(hijax=True)): the leaves are the cells' contents, in order
        self.only_cells = key.hijax_idx == tuple(range(len(leaves)))
        # on one device an output has its input's sharding; with several, every write
        # compares them (a ref keeps its layout: another one gets a new ref)
        self.checked = jax.device_count() > 1

    def read(self, prep) -> tuple[list, list]:
        """``(leaves, refs)``: the leaves with hijax arrays read (refs' slots None) and
        the refs' buffers."""
        key = self.key
        if self.only_cells:
            return self.cells.read(), []
        if self.others:
            vals = prep.raw()
            for i in key.ref_idx:
                vals[i] = None
        else:
            vals = [None] * len(prep.leaves)
        if key.hijax_idx:
            for i, x in zip(key.hijax_idx, self.cells.read()):
                vals[i] = x
        return vals, (self.refs.read() if self.n_ref else [])

    def write(self, values: list, relayout: tuple) -> None:
        """Write the values that came out into the refs and cells."""
        n = self.n_ref
        if n:
            self.refs.write(values[:n], checked=bool(relayout or self.checked))
        if self.cells:
            self.cells.write(values[n:] if n else values)


_NO_ROUTES = object()


def _routes_of(prep) -> _Routes | None:
    """The :class:`_Routes` of a Prepared (computed once per FlatGraph; None: no ref or
    hijax Variable crosses as arrays)."""
    r = prep.extra.get("jit-routes", _NO_ROUTES)
    if r is _NO_ROUTES:
        ref_idx, hijax_idx = [], []
        for i, x in enumerate(prep.leaves):
            if isinstance(x, Variable):
                m = storage_mode(x)
                if m == REF:
                    ref_idx.append(i)
                elif m == HIJAX and isinstance(read_stored(x), jax.Array):
                    hijax_idx.append(i)
        r = None
        if ref_idx or hijax_idx:
            r = _Routes(_RouteKey(tuple(ref_idx), tuple(hijax_idx)), prep.leaves)
        prep.extra["jit-routes"] = r
    return r  # type: ignore[return-value]


def _enter_routed(rkey: _RouteKey, prep):
    """Inside the traced function: ref Variables around the arrays that came in.

    Returns ``enter(leaves, refs) -> (leaves, fast Variables, GraphDef or None)``; the
    GraphDef is None when hijax Variables became refs (the caller flattens the objects
    to get the one that entered).
    """
    leaves = prep.leaves
    ref_slots = [(type(leaves[i]), variable_record(leaves[i])) for i in rkey.ref_idx]
    hijax_slots = [
        (type(leaves[i]), variable_record(leaves[i]).replace(mode=REF)) for i in rkey.hijax_idx
    ]
    same_gd = not rkey.hijax_idx

    def enter(traced: list, refs: list):
        traced = list(traced)
        fast = []
        for i, (cls, rec), x in zip(rkey.ref_idx, ref_slots, refs):
            v = variable_from_stored(cls, new_ref(x), rec)
            traced[i] = v
            fast.append(v)
        for i, (cls, rec) in zip(rkey.hijax_idx, hijax_slots):
            v = variable_from_stored(cls, new_ref(traced[i]), rec)
            traced[i] = v
            fast.append(v)
        return traced, fast, (prep.flat.graphdef if same_gd else None)

    return enter


def _same_aval(before, after) -> bool:
    """Whether ``after`` has the structure, shapes and dtypes of ``before`` (trace time)."""
    a, ta = jax.tree.flatten(before)
    b, tb = jax.tree.flatten(after)
    return ta == tb and all(
        jnp.shape(x) == jnp.shape(y) and getattr(x, "dtype", None) == getattr(y, "dtype", None)
        for x, y in zip(a, b)
    )


class JitWrapped(Generic[P, R]):
    """A function compiled with :func:`jit` (call it like the original)."""

    def __init__(
        self,
        fun: Callable[P, R],
        *,
        in_shardings: Any = None,
        out_shardings: Any = None,
        static_argnums=None,
        static_argnames=None,
        donate_argnums=None,
        donate_argnames=None,
        graph: bool | None = None,
        graph_updates: bool | None = None,
        **jit_kwargs,
    ):
        functools.update_wrapper(self, fun)
        self._mode = ModeArgs(graph, graph_updates)
        self.fun = fun
        self._static_argnums = frozenset(_as_tuple(static_argnums))
        self._static_argnames = frozenset(_as_tuple(static_argnames))
        self._donate_argnums = frozenset(_as_tuple(donate_argnums))
        self._donate_argnames = frozenset(_as_tuple(donate_argnames))
        self._in_shardings = in_shardings
        self._out_shardings = out_shardings
        self._jit_kwargs = jit_kwargs
        self._prep = PrepareCache()
        self._compiled: dict = {}
        # the _Routes of the call in progress: the caller's ref and hijax Variables that
        # the traced function uses the inner Variables for when it reaches them by closure
        self._live: _Routes | None = None

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> JitWrapped[P, R]: ...
    @overload
    def __get__(
        self: JitWrapped[Concatenate[Any, P2], R], obj: object, objtype: type | None = None
    ) -> Callable[P2, R]: ...
    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __repr__(self) -> str:
        return f"nnx.jit({getattr(self.fun, '__qualname__', self.fun)!r})"

    # -- the call path -----------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs or self._static_argnums:
            layout, graph, plain, plain_kw = split_call(
                args, kwargs, self._static_argnums, self._static_argnames
            )
        else:  # the common case, inlined: positional arguments only
            codes, graph_l, plain_l = [], [], []
            for a in args:
                if is_graph_arg(a):
                    codes.append(GRAPH)
                    graph_l.append(a)
                else:
                    codes.append(PLAIN_ARG)
                    plain_l.append(a)
            layout, graph, plain, plain_kw = (tuple(codes), ()), tuple(graph_l), tuple(plain_l), {}
        mode = self._mode.mode()
        if graph:
            prep = self._prep(graph)
            routed = not prep.all_plain and at_top_level()
            # the last call's entry for this FlatGraph: reused when the layout and mode
            # are the same (no compile key to build, hash and compare: after the epoch
            # moved, the key's GraphDef is an equal copy, compared node by node)
            memo = prep.extra.get("jit-call")
            if memo is not None and memo[0] == layout and memo[1] == mode and memo[2] is routed:
                entry, routes = memo[3], memo[4]
            else:
                entry, routes = self._entry(prep, graph, layout, mode, routed)
                prep.extra["jit-call"] = (layout, mode, routed, entry, routes)
        else:
            prep = routes = None
            key = (None, layout, mode, None)
            entry = self._compiled.get(key)
            if entry is None:
                entry = self._compiled[key] = self._make(key, prep)
        return self._run(entry[0], entry[1], prep, routes, graph, layout, plain, plain_kw)

    def _entry(self, prep, graph, layout, mode, routed):
        """``(entry, routes)`` of a call over ``prep`` (its compiled function, made when
        the compile key is new; the routes of its ref and hijax Variables or None)."""
        if not mode.graph:
            check_tree(prep, graph, self.fun, layout, "nnx.jit")
        routes = _routes_of(prep) if routed else None
        key = (prep.flat.graphdef, layout, mode, routes.key if routes is not None else None)
        entry = self._compiled.get(key)
        if entry is None:
            entry = self._compiled[key] = self._make(key, prep)
        return entry, routes

    def _run(self, fn, donate_mask, prep, routes, graph, layout, plain, plain_kw):
        """Call ``fn`` (the jitted function, or the ``jax.stages.Compiled`` of one) on
        the arguments' stored values and write what came out into the caller's objects."""
        if routes is not None:
            return self._call_routed(fn, donate_mask, prep, routes, graph, layout, plain, plain_kw)
        leaves = prep.raw() if prep is not None else []
        try:
            if donate_mask is None:
                updates, out, meta = fn(leaves, plain, plain_kw)
            else:
                updates, out, meta = fn(*_split_donated(donate_mask, leaves, plain, plain_kw))
        except Exception as e:
            self._explain(e, prep, layout, donate_mask)
            raise
        if meta.idx:
            write_back(prep, graph, meta.idx, updates, values=False)  # type: ignore[arg-type]
        if meta.spec is None:
            return out
        return import_output(
            out, meta.spec, prep.flat.nodes if prep is not None else None, updates[len(meta.idx) :]
        )

    def _call_routed(self, fn, donate_mask, prep, routes, graph, layout, plain, plain_kw):
        """The call for arguments with ref or hijax Variables (outside every trace): their
        arrays go in, their values come out and are written back (:class:`_Routes`)."""
        leaves, refs = routes.read(prep)
        self._live = routes
        try:
            if donate_mask is None:
                updates, fast, out, meta = fn(leaves, refs, plain, plain_kw)
            else:
                keep, don, p_keep, p_don, kw_keep, kw_don = _split_donated(
                    donate_mask, leaves, plain, plain_kw
                )
                updates, fast, out, meta = fn(keep, don, refs, p_keep, p_don, kw_keep, kw_don)
        except Exception as e:
            self._explain(e, prep, layout, donate_mask)
            raise
        # everything outside changes only from here, after JAX returned: the plain
        # Variables and array attributes first (write_back resolves every target before it
        # writes, so it raises before anything changed), then the refs and cells
        if meta.idx:
            write_back(prep, graph, meta.idx, updates, values=False)
        routes.write(fast, meta.relayout)
        if meta.spec is None:
            return out
        return import_output(out, meta.spec, prep.flat.nodes, updates[len(meta.idx) :])

    def _explain(self, e: Exception, prep, layout, donate_mask) -> None:
        """On the error path only: name the Variable at fault, or say what donation did."""
        fun = self.fun
        where = f"nnx.jit({getattr(fun, '__name__', 'f')})"
        names = graph_arg_names(fun, layout)
        better = explain_call_error(prep, names, where, e)
        if better is not None:
            raise better from e
        note = donated_note(prep, donate_mask[0] if donate_mask else None, names, where)
        if note is not None:
            e.add_note(note)

    # -- ahead of time: trace, lower, compile (Flax NNX's stages) ----------------------
    def _prepare(self, args: tuple, kwargs: dict) -> _Call:
        """What a call with these arguments runs: its compile key and jitted function."""
        layout, graph, plain, plain_kw = split_call(
            args, kwargs, self._static_argnums, self._static_argnames
        )
        mode = self._mode.mode()
        if graph:
            prep = self._prep(graph)
            entry, routes = self._entry(
                prep, graph, layout, mode, not prep.all_plain and at_top_level()
            )
            key = (prep.flat.graphdef, layout, mode, routes.key if routes is not None else None)
        else:
            prep = routes = None
            key = (None, layout, mode, None)
            entry = self._compiled.get(key) or self._make(key, prep)
            self._compiled[key] = entry
        return _Call(key, entry[0], entry[1], prep, routes, graph, layout, plain, plain_kw)

    def _stage_args(self, call: _Call) -> tuple:
        """The jitted function's arguments for ``call`` (as :meth:`_run` passes them)."""
        prep, routes, mask = call.prep, call.routes, call.donate_mask
        if routes is not None:
            leaves, refs = routes.read(prep)
            self._live = routes
            if mask is None:
                return (leaves, refs, call.plain, call.plain_kw)
            keep, don, p_keep, p_don, kw_keep, kw_don = _split_donated(
                mask, leaves, call.plain, call.plain_kw
            )
            return (keep, don, refs, p_keep, p_don, kw_keep, kw_don)
        leaves = prep.raw() if prep else []
        if mask is None:
            return (leaves, call.plain, call.plain_kw)
        return _split_donated(mask, leaves, call.plain, call.plain_kw)

    def trace(self, *args, **kwargs) -> Traced:
        """Trace for these arguments, as ``jax.jit(...).trace``: ``.jaxpr``, ``.lower()``.

        >>> import jax.numpy as jnp
        >>> import nnx
        >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        >>> traced = nnx.jit(lambda m, x: m(x)).trace(model, jnp.ones((1, 2)))
        >>> compiled = traced.lower().compile()
        >>> compiled(model, jnp.ones((1, 2))).shape
        (1, 3)
        """
        call = self._prepare(args, kwargs)
        return Traced(self, call.fn.trace(*self._stage_args(call)), call.key)

    def lower(self, *args, **kwargs) -> Lowered:
        """Lower for these arguments, as ``jax.jit(...).lower`` (HLO text, cost analysis);
        ``.compile()`` gives a :class:`Compiled` that takes the same nnx arguments and
        writes their updates back, as a call of this function does."""
        call = self._prepare(args, kwargs)
        return Lowered(self, call.fn.lower(*self._stage_args(call)), call.key)

    # -- building the compiled function for one structure -------------------------------
    def _make(self, key, prep):
        graphdef, layout, mode, rkey = key
        fun = self.fun
        where = f"nnx.jit({getattr(fun, '__name__', 'f')})"
        names = graph_arg_names(fun, layout)
        donate_mask = self._donation(layout, prep)
        # A donated buffer is gone after the call, so every donated Variable gets
        # a value back (the same one when the function did not write it).
        always = [i for i, m in enumerate(donate_mask[0]) if m] if donate_mask else []
        enter = _enter_routed(rkey, prep) if rkey is not None else None

        def inner_all(leaves, refs, plain, plain_kw):
            if enter is not None:
                # ref and hijax Variables come in as arrays: new refs around them
                leaves, fast_vars, gd_in = enter(leaves, refs)
                objs, entry = enter_raw(graphdef, leaves)
                if gd_in is None:
                    gd_in = flatten(objs).graphdef
            else:
                fast_vars, gd_in = (), graphdef
                objs, entry = enter_raw(graphdef, leaves) if graphdef is not None else ((), None)
            args, kwargs = assemble(layout, objs, plain, plain_kw)
            # the cell rule: Variables created inside are plain (a jitted program cannot
            # lower hijax cells it creates); new ones returned get their mode back outside
            if enter is None:
                out, new_mode = call_without_cells(fun, args, kwargs)
            else:
                # a caller's ref or hijax Variable reached by closure is the one inside
                # (not a second one, whose buffer would also be donated)
                live = self._live
                outer = (live.refs.variables + live.cells.variables) if live is not None else ()
                with stand_in(outer, fast_vars if outer else ()):
                    out, new_mode = call_without_cells(fun, args, kwargs)
            if graphdef is not None:
                idx, new, inner_flat = collect_updates(
                    objs,
                    leaves,
                    gd_in,
                    where=where,
                    names=names,
                    mode=mode,
                    entry=entry,
                    patch_from=prep.leaves,
                )
                nodes = inner_flat.nodes
                if always:
                    written = set(idx)
                    for i in always:
                        if i not in written:
                            idx.append(i)
                            new.append(leaves[i])
            else:
                idx, new, nodes, inner_flat = [], [], [], None
            # a changed structure (Flax's graph updates) leaves beside the new values
            out, spec, patch_leaves = export_output(
                out, nodes, where=where, new_mode=new_mode, patch=getattr(inner_flat, "patch", None)
            )
            new = new + patch_leaves
            if enter is None:
                return new, out, _Meta(tuple(idx), spec)
            # every ref's value comes out (JAX's own rule for refs: aliased to the donated
            # input, so an unwritten one costs no copy)
            values = [v.get_value() for v in fast_vars]
            n_ref = len(refs)
            relayout = tuple(k for k in range(n_ref) if not _same_aval(refs[k], values[k]))
            return new, values, out, _Meta(tuple(idx), spec, relayout)

        def inner_plain(leaves, plain, plain_kw):
            return inner_all(leaves, None, plain, plain_kw)

        inner: Callable[..., Any] = inner_plain if enter is None else inner_all

        jit_kwargs = dict(self._jit_kwargs)
        n_refs = len(rkey.ref_idx) if rkey is not None else 0
        if self._out_shardings is not None:
            jit_kwargs["out_shardings"] = (
                (None, self._out_shardings, None)
                if enter is None
                else (None, None, self._out_shardings, None)
            )
        if donate_mask is None:
            if self._in_shardings is not None:
                ls = leaf_shardings(self._in_shardings, layout, prep)
                ps = plain_shardings(self._in_shardings, layout)
                jit_kwargs["in_shardings"] = (
                    (ls, ps, None) if enter is None else (ls, [None] * n_refs, ps, None)
                )
            if enter is None:
                return jax.jit(inner, **jit_kwargs), None
            return jax.jit(inner, donate_argnums=(1,), **jit_kwargs), None

        leaf_mask, plain_mask, kw_mask = donate_mask

        def inner_donated(keep, don, refs, p_keep, p_don, kw_keep, kw_don):
            leaves = _merge(leaf_mask, keep, don)
            plain = tuple(_merge(plain_mask, p_keep, p_don))
            return inner_all(leaves, refs, plain, {**kw_keep, **kw_don})

        if self._in_shardings is not None:
            ls = leaf_shardings(self._in_shardings, layout, prep)
            ps = plain_shardings(self._in_shardings, layout)
            ps = list(ps) if ps is not None else [None] * len(plain_mask)
            jit_kwargs["in_shardings"] = (
                [s for s, m in zip(ls, leaf_mask) if not m],
                [s for s, m in zip(ls, leaf_mask) if m],
                [None] * n_refs,
                tuple(s for s, m in zip(ps, plain_mask) if not m),
                tuple(s for s, m in zip(ps, plain_mask) if m),
                None,
                None,
            )
        if enter is None:

            def inner_donated_plain(keep, don, p_keep, p_don, kw_keep, kw_don):
                return inner_donated(keep, don, None, p_keep, p_don, kw_keep, kw_don)

            if "in_shardings" in jit_kwargs:
                s = jit_kwargs["in_shardings"]
                jit_kwargs["in_shardings"] = s[:2] + s[3:]
            jitted = jax.jit(inner_donated_plain, donate_argnums=(1, 3, 5), **jit_kwargs)
        else:
            jitted = jax.jit(inner_donated, donate_argnums=(1, 2, 4, 6), **jit_kwargs)
        return jitted, donate_mask

    def _donation(self, layout, prep):
        if not (self._donate_argnums or self._donate_argnames):
            return None
        index = graph_arg_index(layout)
        donated_graph = {
            k
            for k, where in enumerate(index)
            if where in self._donate_argnums or where in self._donate_argnames
        }
        if prep is not None:
            owners = prep.owners()
            leaf_mask = tuple(
                owners[i] in donated_graph and isinstance(x, Variable) and storage_mode(x) == PLAIN
                for i, x in enumerate(prep.leaves)
            )
        else:
            leaf_mask = ()
        pos, kw = layout
        plain_mask = tuple(i in self._donate_argnums for i, c in enumerate(pos) if c is PLAIN_ARG)
        kw_mask = frozenset(k for k, c in kw if c is PLAIN_ARG and k in self._donate_argnames)
        return leaf_mask, plain_mask, kw_mask


def _merge(mask, keep, don) -> list:
    k, d = iter(keep), iter(don)
    return [next(d) if m else next(k) for m in mask]


def _split_donated(mask, leaves, plain, plain_kw):
    leaf_mask, plain_mask, kw_mask = mask
    keep = [x for x, m in zip(leaves, leaf_mask) if not m]
    don = [x for x, m in zip(leaves, leaf_mask) if m]
    p_keep = tuple(x for x, m in zip(plain, plain_mask) if not m)
    p_don = tuple(x for x, m in zip(plain, plain_mask) if m)
    kw_keep = {k: v for k, v in plain_kw.items() if k not in kw_mask}
    kw_don = {k: v for k, v in plain_kw.items() if k in kw_mask}
    return keep, don, p_keep, p_don, kw_keep, kw_don


@overload
def jit(
    fun: Callable[P, R],
    *,
    in_shardings: Any = None,
    out_shardings: Any = None,
    static_argnums: int | tuple[int, ...] | None = None,
    static_argnames: str | tuple[str, ...] | None = None,
    donate_argnums: int | tuple[int, ...] | None = None,
    donate_argnames: str | tuple[str, ...] | None = None,
    **jit_kwargs: Any,
) -> JitWrapped[P, R]: ...
@overload
def jit(
    fun: None = None,
    *,
    in_shardings: Any = None,
    out_shardings: Any = None,
    static_argnums: int | tuple[int, ...] | None = None,
    static_argnames: str | tuple[str, ...] | None = None,
    donate_argnums: int | tuple[int, ...] | None = None,
    donate_argnames: str | tuple[str, ...] | None = None,
    **jit_kwargs: Any,
) -> Callable[[Callable[P, R]], JitWrapped[P, R]]: ...
def jit(
    fun: Callable | None = None,
    *,
    in_shardings: Any = None,
    out_shardings: Any = None,
    static_argnums: int | tuple[int, ...] | None = None,
    static_argnames: str | tuple[str, ...] | None = None,
    donate_argnums: int | tuple[int, ...] | None = None,
    donate_argnames: str | tuple[str, ...] | None = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    **jit_kwargs,
) -> Any:
    """``jax.jit`` for functions that take and return nnx objects.

    Example::

        @nnx.jit
        def train_step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
            optimizer.update(model, grads)   # in place: no state returned
            return loss

        @nnx.jit
        def create_model(rngs):
            return MLP(2, 16, 1, rngs=rngs)   # comes out as an ordinary module

    Modules, Variables, Rngs and containers of them may appear in any
    argument and in the output. Variables written inside are updated outside
    after the call; objects shared between arguments stay shared; an input
    object returned comes back as the caller's own object. Arrays and other
    pytrees go to ``jax.jit`` untouched. Every Variable mode works at the speed
    of plain Variables: the arrays of ref and hijax Variables passed as
    arguments go to ``jax.jit`` and their values come back into the refs and
    cells after the call (all or nothing, as for plain Variables); inside, they
    are ref Variables, so a nested ``jax.jit`` or a ``lax`` loop that closes
    over one carries its writes. A hijax Variable that holds a dict or another
    pytree (it may grow keys inside) goes as its cell. Variables reached only by
    closure go to ``jax.jit`` as they are (JAX carries the writes of refs and
    cells, at the cost of its path for mutable values); one reached by closure
    and through an argument is one Variable inside.

    Args:
      fun: the function (or use ``@nnx.jit(...)`` with options).
      in_shardings: per positional argument, as in ``jax.jit``; for an nnx
        argument, a ``Sharding`` for all its arrays or a State/dict mapping
        its paths to shardings.
      out_shardings: as in ``jax.jit`` (a prefix of the output).
      static_argnums: static arguments (hashable), part of the compilation
        cache key.
      static_argnames: static arguments by name, as ``static_argnums``.
      donate_argnums: donate the buffers of these arguments (for nnx
        arguments: of their plain-mode Variables; a ref Variable's buffers are
        always donated and replaced, as ``jax.jit`` does for refs). JAX deletes donated
        arrays when the compiled call starts, so when the call then fails (an
        error at run time, e.g. from a callback) the donated Variables have no
        arrays any more; nnx adds a note naming them to the error, and any next
        use of them (eager, e.g. ``model(x)``, or in a transform) raises
        ``nnx.DonatedBufferError`` naming the path (each deleted array is
        replaced by a stand-in that keeps its shape and dtype). Keep a copy of
        the state (``nnx.state(model)`` saved or checkpointed) if a failed step
        must be recoverable: ``nnx.update(model, saved)`` restores it.
      donate_argnames: donated arguments by name, as ``donate_argnums``.
      graph: True for graph mode (sharing kept), False for tree mode (the
        arguments must be trees: an object reachable twice is an
        ``nnx.AliasingError``; Variable values written inside are propagated,
        structural changes are not; objects returned are new objects); None
        for the current :func:`nnx.set_graph_mode` setting.
      graph_updates: in graph mode, False leaves structural changes made to
        the arguments inside (Variable values still propagate); True (nnx's
        default) reports them as ``nnx.StructureError``; None for the current
        :func:`nnx.set_graph_updates` setting.
      **jit_kwargs: passed to ``jax.jit`` (``keep_unused``, ``compiler_options``...).
    """
    return wrap(
        JitWrapped,
        fun,
        in_shardings=in_shardings,
        out_shardings=out_shardings,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        donate_argnums=donate_argnums,
        donate_argnames=donate_argnames,
        graph=graph,
        graph_updates=graph_updates,
        **jit_kwargs,
    )
