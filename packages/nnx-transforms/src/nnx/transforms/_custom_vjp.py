"""``nnx.custom_vjp``: a custom derivative for a function whose arguments hold nnx objects."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from nnx.core import Variable, flatten, is_graph_node
from nnx.transforms._boundary import (
    ModeArgs,
    Prepared,
    check_tree,
    collect_updates,
    enter_values,
    snapshot,
)
from nnx.transforms._errors import TransformError
from nnx.transforms._linearize import _Abstract, _contains_graph, _leaf_tangents


class custom_vjp:  # noqa: N801 (mirrors jax.custom_vjp)
    """``jax.custom_vjp`` for functions whose arguments may hold nnx objects.

    Example::

        @nnx.custom_vjp
        def f(m, x):
            return m.w[...] * x

        def f_fwd(m, x):
            return f(m, x), (m.w[...], x)

        def f_bwd(res, g):
            w, x = res
            return {"w": g * x}, g * w      # the nnx argument's cotangent: a State/dict by path

        f.defvjp(f_fwd, f_bwd)

    ``bwd`` returns one cotangent per positional argument; for an nnx
    argument, a State or mapping of its paths (missing Variables get zeros).
    The function may not write Variables (a custom derivative cannot carry
    state updates).

    Args:
      fun: the function.
      nondiff_argnums: arguments that are not differentiated.
      graph: False for tree mode: an object reachable twice from the
        arguments is an ``nnx.AliasingError``; None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """

    def __init__(
        self,
        fun: Callable,
        nondiff_argnums: tuple[int, ...] = (),
        *,
        graph: bool | None = None,
        graph_updates: bool | None = None,
    ):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self._mode = ModeArgs(graph, graph_updates)
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args):
        if self.fwd is None or self.bwd is None:
            raise TransformError("nnx.custom_vjp: call defvjp(fwd, bwd) before calling it.")
        where = f"nnx.custom_vjp({getattr(self.fun, '__name__', 'f')})"
        nd = set(self.nondiff_argnums)
        is_g = [
            i not in nd and (is_graph_node(a) or _contains_graph(a)) for i, a in enumerate(args)
        ]
        flats = [flatten(a, with_paths=True) if g else None for a, g in zip(args, is_g)]
        mode = self._mode.mode()
        if not mode.graph:
            graph = tuple(a for a, g in zip(args, is_g) if g)
            check_tree(Prepared(flatten(graph)), graph, self.fun, None, "nnx.custom_vjp")

        preps = [Prepared(f) if f is not None else None for f in flats]
        vals = tuple(
            [x.get_value() if isinstance(x, Variable) else x for x in f.leaves] if f else a
            for a, f in zip(args, flats)
        )
        diff_pos = [i for i in range(len(args)) if i not in nd]
        abstract = [_Abstract(a) if g else None for a, g in zip(args, is_g)]
        fun, fwd, bwd = self.fun, self.fwd, self.bwd

        def rebuild(per_arg):
            objs, state = [], []
            for p, v in zip(preps, per_arg):
                if p is None:
                    objs.append(v)
                else:
                    o, gd = enter_values(p, list(v))
                    objs.append(o)
                    state.append((o, gd, list(v), snapshot(o, mode)))
            return objs, state

        def no_writes(state):
            for o, gd, leaves, entry in state:
                idx, _, _ = collect_updates(
                    o, leaves, gd, where=where, values=True, mode=mode, entry=entry
                )
                if idx:
                    raise TransformError(
                        f"{where}: the function wrote a Variable. A custom derivative cannot "
                        "carry state updates; compute the new state outside, or use nnx.grad."
                    )

        def full_args(nd_args, diff_args):
            out = [None] * len(args)
            for i, a in zip(sorted(nd), nd_args):
                out[i] = a
            for i, a in zip(diff_pos, diff_args):
                out[i] = a
            return out

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def call(nd_args, *diff_args):
            objs, state = rebuild(full_args(nd_args, diff_args))
            out = fun(*objs)
            no_writes(state)
            return out

        def call_fwd(nd_args, *diff_args):
            objs, state = rebuild(full_args(nd_args, diff_args))
            out, res = fwd(*objs)
            no_writes(state)
            return out, res

        def call_bwd(nd_args, res, g):
            cts = bwd(res, g)
            if not isinstance(cts, tuple):
                cts = (cts,)
            out = []
            for ct, i in zip(cts, diff_pos):
                if preps[i] is not None:
                    out.append(_leaf_tangents(abstract[i], ct, where))
                else:
                    out.append(ct)
            return tuple(out)

        call.defvjp(call_fwd, call_bwd)
        nd_args = tuple(vals[i] for i in sorted(nd))
        return call(_Hashable(nd_args), *(vals[i] for i in diff_pos))


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
