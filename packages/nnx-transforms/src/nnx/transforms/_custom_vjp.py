"""``nnx.custom_vjp``: a custom derivative for a function whose arguments hold nnx objects."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, overload

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core import AliasingError, State, Variable, flatten, to_predicate
from nnx.transforms._autodiff import DiffState
from nnx.transforms._boundary import (
    GRAPH,
    ModeArgs,
    Prepared,
)
from nnx.transforms._crossing import Crossing
from nnx.transforms._errors import TransformError
from nnx.transforms._linearize import _tangents_at, _zero_tangent


class custom_vjp:  # noqa: N801 (mirrors jax.custom_vjp)
    """``jax.custom_vjp`` for functions whose arguments may hold nnx objects.

    As in Flax NNX, with graph updates on (the default) ``bwd`` receives
    ``g = (input_updates_g, out_g)``: ``out_g`` is the output's cotangent and
    ``input_updates_g`` has one entry per differentiated positional argument, a
    State of the argument's Variables for an nnx object (zeros: the function
    writes no Variable, so its inputs' updates carry no cotangent) and None for
    any other argument. Copy it to build the tangent of that argument:

    Example::

        >>> import jax
        >>> import jax.numpy as jnp
        >>> import nnx
        >>> class Foo(nnx.Module):
        ...     def __init__(self, x, y):
        ...         self.x = nnx.Param(x)
        ...         self.y = nnx.Param(y)
        >>> @nnx.custom_vjp
        ... def f(m):
        ...     return jnp.sin(m.x[...]) * m.y[...]
        >>> def f_fwd(m):
        ...     return f(m), (jnp.cos(m.x[...]), jnp.sin(m.x[...]), m)
        >>> def f_bwd(res, g):
        ...     input_updates_g, out_g = g
        ...     cos_x, sin_x, m = res
        ...     (m_g,) = input_updates_g
        ...     m_g = jax.tree.map(lambda t: t, m_g)  # a copy to fill in
        ...     m_g["x"][...] = cos_x * out_g * m.y[...]
        ...     m_g["y"][...] = sin_x * out_g
        ...     return (m_g,)
        >>> f.defvjp(f_fwd, f_bwd)
        >>> grads = nnx.grad(f)(Foo(jnp.array(0.0), jnp.array(2.0)))
        >>> float(grads["x"][...]), float(grads["y"][...])  # 2 cos(0), sin(0)
        (2.0, 0.0)

    With ``graph_updates=False`` or ``graph=False`` (closer to ``jax.custom_vjp``)
    ``bwd`` receives ``out_g`` alone. Either way ``bwd`` takes the
    ``nondiff_argnums`` arguments first (``bwd(*nondiff, res, g)``; nnx objects
    among them rebuilt around their values) and returns one tangent per
    differentiated positional argument; for an nnx argument, a State or mapping
    of its paths, or an object of its structure (missing Variables get zeros).

    ``nondiff_argnums`` takes ints (an nnx object there is not differentiated at
    all) and, with graph updates on, ``nnx.DiffState(argnum, filter)``: that
    argument is differentiated for the Variables the filter selects only, the
    others get zero cotangents (pass the same DiffState to :func:`nnx.grad`).

    The nnx arguments are flattened jointly, as in every transform: a
    Variable reached through two arguments (or twice through one) is one
    object inside ``fun`` and ``fwd``. Reached through two differentiated
    arguments it is an ``nnx.AliasingError``, as in :func:`nnx.grad` (one
    Variable cannot have two cotangents); twice through one argument it has
    one cotangent, at its first path.

    Variables written inside ``fun`` (or ``fwd``, which ``nnx.grad`` runs
    instead) come out to the caller's objects, as in Flax NNX, all or nothing.
    Their new values are outputs too: with graph updates on, their cotangents
    are in ``input_updates_g`` at their paths; otherwise ``bwd`` receives them
    if it declares a keyword ``updates_g`` (one entry per positional argument:
    a State by path for an nnx argument, None for a Variable not written).
    Structural changes (a new attribute, a changed static one) raise.

    Args:
      fun: the function.
      nondiff_argnums: arguments that are not differentiated (ints), or
        differentiated for a part of their state only (``nnx.DiffState``).
      graph: False for tree mode: an object reachable twice from the
        arguments is an ``nnx.AliasingError``; None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False: ``bwd`` gets ``out_g`` alone, and structural
        changes of the arguments stay inside; None for the current setting.
    """

    @overload
    def __new__(
        cls,
        fun: Callable,
        nondiff_argnums: tuple[int | DiffState, ...] = (),
        *,
        graph: bool | None = None,
        graph_updates: bool | None = None,
    ) -> custom_vjp: ...
    @overload
    def __new__(
        cls,
        *,
        nondiff_argnums: tuple[int | DiffState, ...] = (),
        graph: bool | None = None,
        graph_updates: bool | None = None,
    ) -> Callable[[Callable], custom_vjp]: ...
    def __new__(cls, fun: Callable | None = None, *args: Any, **kwargs: Any) -> Any:
        if fun is None:  # Flax NNX's keyword form: @nnx.custom_vjp(graph_updates=True)
            return functools.partial(cls, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        fun: Callable,
        nondiff_argnums: tuple[int | DiffState, ...] = (),
        *,
        graph: bool | None = None,
        graph_updates: bool | None = None,
    ):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self._mode = ModeArgs(graph, graph_updates)
        self.nondiff_argnums = tuple(nondiff_argnums)
        self._nd: frozenset[int] = frozenset(a for a in self.nondiff_argnums if isinstance(a, int))
        self._filters: dict[int, Any] = {}  # argnum -> DiffState filter
        for a in self.nondiff_argnums:
            if isinstance(a, bool) or not isinstance(a, (int, DiffState)):
                raise TypeError(
                    "nnx.custom_vjp: nondiff_argnums entries are ints or nnx.DiffState, got "
                    f"{type(a).__name__} {a!r}."
                )
            i = a.argnum if isinstance(a, DiffState) else a
            if i in self._filters or (isinstance(a, DiffState) and i in self._nd):
                raise ValueError(f"nnx.custom_vjp: argnum {i} is repeated in nondiff_argnums.")
            if isinstance(a, DiffState):
                self._filters[i] = a.filter
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args: Any) -> Any:
        if self.fwd is None or self.bwd is None:
            raise TransformError("nnx.custom_vjp: call defvjp(fwd, bwd) before calling it.")
        where = f"nnx.custom_vjp({getattr(self.fun, '__name__', 'f')})"
        nd = set(self._nd)
        mode = self._mode.mode()
        updates_g = mode.graph and mode.graph_updates  # bwd gets (input_updates_g, out_g)
        if self._filters and not updates_g:
            raise TransformError(
                f"{where}: nnx.DiffState in nondiff_argnums needs graph mode with graph "
                f"updates ({mode!r} here): pass graph=True, graph_updates=True, or list the "
                "argument as an int to leave it undifferentiated."
            )
        # every nnx argument (differentiated or not) is flattened jointly by the
        # boundary's Crossing: a Variable reached through two arguments, or twice
        # through one, is one object inside
        c = Crossing(self.fun, args, {}, where=where, mode=mode, what="nnx.custom_vjp")
        prep, graph = c.prep, c.graph
        is_g = [code is GRAPH for code in c.layout[0]]
        g_argnum = [i for i, g in enumerate(is_g) if g]
        for i in self._filters:
            if i >= len(args) or not is_g[i]:
                raise TransformError(
                    f"{where}: nondiff_argnums has nnx.DiffState({i}, ...), but argument {i} "
                    "is not an nnx object; a DiffState selects Variables of an nnx argument."
                )
        leaves_in = c.values()
        avals = [_aval(v) for v in leaves_in]
        # per differentiated nnx argument: (path, joint leaf index) of each of its leaves
        selected, var_paths = (
            _differentiated(prep, graph, g_argnum, nd, self._filters, where)
            if prep is not None
            else ({}, {})
        )
        diff_plain = [i for i in range(len(args)) if i not in nd and not is_g[i]]
        nd_plain = [i for i in sorted(nd) if not is_g[i]]
        plain_order = [i for i in range(len(args)) if not is_g[i]]
        diff_pos = [i for i in range(len(args)) if i not in nd]
        fun, fwd, bwd = self.fun, self.fwd, self.bwd
        wants_updates_g = not updates_g and _takes_updates_g(bwd)
        holder: dict = {}  # the written leaves' joint indices, from the trace

        def rebuild(nd_vals, leaves, plain_d):
            by_pos = dict(zip(nd_plain, nd_vals)) | dict(zip(diff_plain, plain_d))
            a, _, state = c.enter(list(leaves), tuple(by_pos[i] for i in plain_order), {})
            return a, state

        def written(state, what: str) -> list:
            """The new values of the Variables the call wrote (they leave as outputs)."""
            idx, new, _ = c.changes(state)
            if holder.get("idx", idx) != idx:
                raise TransformError(
                    f"{where}: {what} wrote other Variables than the function did. The "
                    "primal and its fwd must update the same state."
                )
            holder["idx"] = idx
            return new

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def call(nd_vals, leaves, *plain_d):
            full, state = rebuild(nd_vals, leaves, plain_d)
            out = fun(*full)
            return out, written(state, "the function")

        def call_fwd(nd_vals, leaves, *plain_d):
            full, state = rebuild(nd_vals, leaves, plain_d)
            out, res = fwd(*full)
            new = written(state, "fwd")
            # the arguments' leaves ride along, to hand bwd its nondiff arguments
            return (out, new), (res, leaves if nd else None, plain_d if nd else None)

        def call_bwd(nd_vals, packed, gs):
            res, leaves, plain_d = packed
            g, new_g = gs  # the written Variables' new values have cotangents too
            by_leaf = dict(zip(holder.get("idx", ()), new_g))
            nondiff = ()
            if nd:  # as jax.custom_vjp: bwd(*nondiff_args, residuals, g)
                full, _ = rebuild(nd_vals, leaves, plain_d)
                nondiff = tuple(full[i] for i in sorted(nd))
            kw = {}
            if updates_g:  # Flax NNX's protocol: the inputs' updates have cotangents
                inputs_g = tuple(
                    _updates_state(var_paths[i], by_leaf, zeros=True) if is_g[i] else None
                    for i in diff_pos
                )
                g = (inputs_g, g)
            elif wants_updates_g:  # bwd(..., *, updates_g): per argument, None unless written
                kw["updates_g"] = tuple(
                    _updates_state(var_paths[i], by_leaf, zeros=False) if is_g[i] else None
                    for i in range(len(args))
                )
            cts = bwd(*nondiff, res, g, **kw)
            if not isinstance(cts, tuple):
                cts = (cts,)
            leaf_cts: list = [None] * len(avals)
            plain_cts = []
            for ct, i in zip(cts, diff_pos):
                if not is_g[i]:
                    plain_cts.append(ct)
                    continue
                items = selected[i]
                got = _tangents_at(
                    [path for path, _ in items], [avals[j] for _, j in items], ct, where
                )
                for (_, j), t in zip(items, got):
                    leaf_cts[j] = t
            # leaves no differentiated argument reaches (those of nondiff_argnums) get zeros
            leaf_cts = [_zero_tangent(a) if t is None else t for a, t in zip(avals, leaf_cts)]
            return (leaf_cts, *plain_cts)

        call.defvjp(call_fwd, call_bwd)
        nd_vals = _Hashable(tuple(args[i] for i in nd_plain))
        out, new = call(nd_vals, leaves_in, *(args[i] for i in diff_plain))  # pyright: ignore[reportGeneralTypeIssues]
        return c.finish(holder.get("idx", []), list(new), out)


def _differentiated(
    prep: Prepared, graph: tuple, g_argnum: list, nd: set, filters: dict, where: str
) -> tuple[dict, dict]:
    """Per differentiated nnx argument (by position): ``[(path, joint leaf index)]``, and
    the ``(path, Variable type, aval)`` of all its Variables (its zero input-updates State).

    A :class:`DiffState` filter (``filters[argnum]``) keeps the leaves it selects.

    A Variable reached through two differentiated arguments is an
    ``AliasingError``, as in :func:`nnx.grad`: one Variable cannot have a
    cotangent in two places. Twice through one argument, it is one leaf at its
    first path (one cotangent).
    """
    by_id: dict[int, list[int]] = {}
    for j, x in enumerate(prep.leaves):
        by_id.setdefault(id(x), []).append(j)
    paths = prep.paths
    chosen: dict[int, tuple] = {}
    out: dict[int, list] = {}
    var_paths: dict[int, list] = {}
    for k, (node, argnum) in enumerate(zip(graph, g_argnum)):
        sub = flatten(node, with_paths=True)
        var_paths[argnum] = [
            (path, type(x), _aval(x.get_value()), _joint(by_id, paths, x, (k, *path)))
            for path, x in zip(sub.paths, sub.leaves)
            if isinstance(x, Variable)
        ]
        if argnum in nd:
            continue
        pred = to_predicate(filters[argnum]) if argnum in filters else None
        items = []
        for path, x in zip(sub.paths, sub.leaves):
            if pred is not None and not pred(path, x):
                continue
            j = _joint(by_id, paths, x, (k, *path))
            if j in chosen:
                if chosen[j][0] == argnum:  # the same leaf twice in one argument
                    continue
                first = chosen[j]
                raise AliasingError(
                    f"{where}: the {type(x).__name__} at 'args[{argnum}]/"
                    f"{'/'.join(map(str, path))}' is the same Variable as 'args[{first[0]}]/"
                    f"{'/'.join(map(str, first[1]))}', and both arguments are differentiated. "
                    "One Variable cannot have a cotangent in two places (as in nnx.grad): pass "
                    "the object that holds it once, or list one of the arguments in "
                    "nondiff_argnums."
                )
            chosen[j] = (argnum, path)
            items.append((path, j))
        out[argnum] = items
    return out, var_paths


def _joint(by_id: dict, paths: Sequence, x, path: tuple) -> int:
    """The joint leaf index of ``x`` (its own path if reached first there)."""
    cands = by_id[id(x)]
    return next((c for c in cands if paths[c] == path), cands[0])


def _takes_updates_g(bwd) -> bool:
    try:
        return "updates_g" in inspect.signature(bwd).parameters
    except (TypeError, ValueError):
        return False


def _aval(v) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(v), jnp.result_type(v))


def _updates_state(template: list, by_leaf: dict, *, zeros: bool) -> State:
    """The cotangents of an argument's updates by path: the written Variables' from
    ``by_leaf`` (joint leaf index -> cotangent), the others zeros (plain Variables of
    their kinds, Flax's ``input_updates_g``) or None (Flax's ``updates_g``)."""
    items = []
    for p, t, a, j in template:
        ct = by_leaf.get(j)
        if zeros:
            items.append(
                (p, t(jnp.zeros(a.shape, a.dtype) if ct is None else ct, ref=False, hijax=False))
            )
        else:
            items.append((p, ct))
    return State.from_flat_path(items)


class _Hashable:
    """Non-differentiated arguments of a custom_vjp, passed by identity."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __iter__(self):
        return iter(self.value)

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other
