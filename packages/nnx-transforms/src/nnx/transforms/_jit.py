"""``nnx.jit``: ``jax.jit`` that takes and returns nnx objects, with a fast call path.

Per call, in front of the compiled program: one pass over the arguments to
split them (:func:`~nnx.transforms._boundary.split_call`), one identity check
to reuse the flattened graph (``nnx.FlattenCache``), one list of stored values
(``get_raw_value`` per Variable), one dict lookup keyed by the GraphDef (its
hash is cached), the ``jax.jit`` call, and one ``set_raw_value`` per Variable
the function changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import jax

from nnx.core import Variable, storage_mode
from nnx.transforms._boundary import (
    GRAPH,
    PLAIN,
    PLAIN_ARG,
    ModeArgs,
    PrepareCache,
    assemble,
    call_without_cells,
    check_tree,
    collect_updates,
    enter_raw,
    export_output,
    graph_arg_index,
    graph_arg_names,
    import_output,
    is_graph_arg,
    snapshot,
    split_call,
    write_back,
)
from nnx.transforms._explain import donated_note, explain_call_error
from nnx.transforms._sharding import leaf_shardings, plain_shardings

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


class _Meta:
    """Static part of a jitted function's output: which Variables changed, output structure."""

    __slots__ = ("idx", "spec", "_hash")

    def __init__(self, idx: tuple, spec):
        self.idx = idx
        self.spec = spec
        self._hash = hash((idx, spec))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return type(other) is _Meta and self.idx == other.idx and self.spec == other.spec


jax.tree_util.register_static(_Meta)


def _as_tuple(x) -> tuple:
    if x is None:
        return ()
    if isinstance(x, (int, str)):
        return (x,)
    return tuple(x)


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
            if not mode.graph:
                check_tree(prep, graph, self.fun, layout, "nnx.jit")
            key = (prep.flat.graphdef, layout, mode)
            leaves = prep.raw()
        else:
            prep = None
            key = (None, layout, mode)
            leaves = []
        entry = self._compiled.get(key)
        if entry is None:
            entry = self._compiled[key] = self._make(key, prep, graph)
        fn, donate_mask = entry
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
        return import_output(out, meta.spec, prep.flat.nodes if prep is not None else None)

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

    def lower(self, *args, **kwargs):
        """``jax.jit(...).lower`` for these arguments (to inspect HLO or compile ahead)."""
        layout, graph, plain, plain_kw = split_call(
            args, kwargs, self._static_argnums, self._static_argnames
        )
        prep = self._prep(graph) if graph else None
        mode = self._mode.mode()
        if prep is not None and not mode.graph:
            check_tree(prep, graph, self.fun, layout, "nnx.jit")
        key = (prep.flat.graphdef if prep else None, layout, mode)
        entry = self._compiled.get(key) or self._make(key, prep, graph)
        self._compiled[key] = entry
        fn, mask = entry
        leaves = prep.raw() if prep else []
        if mask is None:
            return fn.lower(leaves, plain, plain_kw)
        return fn.lower(*_split_donated(mask, leaves, plain, plain_kw))

    # -- building the compiled function for one structure -------------------------------
    def _make(self, key, prep, graph):
        graphdef, layout, mode = key
        fun = self.fun
        where = f"nnx.jit({getattr(fun, '__name__', 'f')})"
        names = graph_arg_names(fun, layout)
        donate_mask = self._donation(layout, prep, graph)
        # A donated buffer is gone after the call, so every donated Variable gets
        # a value back (the same one when the function did not write it).
        always = [i for i, m in enumerate(donate_mask[0]) if m] if donate_mask else []

        def inner(leaves, plain, plain_kw):
            objs = enter_raw(graphdef, leaves) if graphdef is not None else ()
            entry = snapshot(objs, mode) if graphdef is not None else None
            args, kwargs = assemble(layout, objs, plain, plain_kw)
            # the cell rule: Variables created inside are plain (a jitted program cannot
            # lower hijax cells it creates); new ones returned get their mode back outside
            out, as_hijax = call_without_cells(fun, args, kwargs)
            if graphdef is not None:
                idx, new, inner_flat = collect_updates(
                    objs,
                    leaves,
                    graphdef,
                    where=where,
                    names=names,
                    mode=mode,
                    entry=entry,
                )
                nodes = inner_flat.nodes
                if always:
                    written = set(idx)
                    for i in always:
                        if i not in written:
                            idx.append(i)
                            new.append(leaves[i])
            else:
                idx, new, nodes = [], [], []
            out, spec = export_output(out, nodes, where=where, as_hijax=as_hijax)
            return new, out, _Meta(tuple(idx), spec)

        jit_kwargs = dict(self._jit_kwargs)
        if self._out_shardings is not None:
            jit_kwargs["out_shardings"] = (None, self._out_shardings, None)
        if donate_mask is None:
            if self._in_shardings is not None:
                jit_kwargs["in_shardings"] = (
                    leaf_shardings(self._in_shardings, layout, prep, graph),
                    plain_shardings(self._in_shardings, layout),
                    None,
                )
            return jax.jit(inner, **jit_kwargs), None

        leaf_mask, plain_mask, kw_mask = donate_mask

        def inner_donated(keep, don, p_keep, p_don, kw_keep, kw_don):
            leaves = _merge(leaf_mask, keep, don)
            plain = tuple(_merge(plain_mask, p_keep, p_don))
            return inner(leaves, plain, {**kw_keep, **kw_don})

        if self._in_shardings is not None:
            ls = leaf_shardings(self._in_shardings, layout, prep, graph)
            ps = plain_shardings(self._in_shardings, layout)
            ps = list(ps) if ps is not None else [None] * len(plain_mask)
            jit_kwargs["in_shardings"] = (
                [s for s, m in zip(ls, leaf_mask) if not m],
                [s for s, m in zip(ls, leaf_mask) if m],
                tuple(s for s, m in zip(ps, plain_mask) if not m),
                tuple(s for s, m in zip(ps, plain_mask) if m),
                None,
                None,
            )
        jitted = jax.jit(inner_donated, donate_argnums=(1, 3, 5), **jit_kwargs)
        return jitted, donate_mask

    def _donation(self, layout, prep, graph):
        if not (self._donate_argnums or self._donate_argnames):
            return None
        index = graph_arg_index(layout)
        donated_graph = {
            k
            for k, where in enumerate(index)
            if where in self._donate_argnums or where in self._donate_argnames
        }
        if prep is not None:
            owners = prep.owners(graph)
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
    pytrees go to ``jax.jit`` untouched. Every Variable mode works: ref and
    hijax Variables go to ``jax.jit`` as they are (JAX carries their writes).

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
        arguments: of their plain-mode Variables). JAX deletes donated
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
    options = dict(
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
    if fun is None:
        return lambda f: JitWrapped(f, **options)
    return JitWrapped(fun, **options)
