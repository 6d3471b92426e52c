"""``nnx.custom_vjp``: a custom derivative for a function whose arguments hold nnx objects."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core import AliasingError, flatten
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

    As in ``jax.custom_vjp``, ``bwd`` takes the ``nondiff_argnums`` arguments first
    (``bwd(*nondiff, res, g)``; nnx objects among them rebuilt around their values) and
    returns one cotangent per differentiated positional argument; for
    an nnx argument, a State or mapping of its paths (missing Variables get
    zeros). The nnx arguments are flattened jointly, as in every transform: a
    Variable reached through two arguments (or twice through one) is one
    object inside ``fun`` and ``fwd``. Reached through two differentiated
    arguments it is an ``nnx.AliasingError``, as in :func:`nnx.grad` (one
    Variable cannot have two cotangents); twice through one argument it has
    one cotangent, at its first path. The function may not write Variables (a
    custom derivative cannot carry state updates).

    Args:
      fun: the function.
      nondiff_argnums: arguments that are not differentiated.
      graph: False for tree mode: an object reachable twice from the
        arguments is an ``nnx.AliasingError``; None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """

    def __new__(cls, fun: Callable | None = None, *args: Any, **kwargs: Any) -> Any:
        if fun is None:  # Flax NNX's keyword form: @nnx.custom_vjp(graph_updates=True)
            return functools.partial(cls, *args, **kwargs)
        return super().__new__(cls)

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
        # every nnx argument (differentiated or not) is flattened jointly by the
        # boundary's Crossing: a Variable reached through two arguments, or twice
        # through one, is one object inside
        c = Crossing(self.fun, args, {}, where=where, mode=self._mode.mode(), what="nnx.custom_vjp")
        prep, graph = c.prep, c.graph
        is_g = [code is GRAPH for code in c.layout[0]]
        g_argnum = [i for i, g in enumerate(is_g) if g]
        leaves_in = c.values()
        avals = [jax.ShapeDtypeStruct(np.shape(v), jnp.result_type(v)) for v in leaves_in]
        # per differentiated nnx argument: (path, joint leaf index) of each of its leaves
        selected = _differentiated(prep, graph, g_argnum, nd, where) if prep is not None else {}
        diff_plain = [i for i in range(len(args)) if i not in nd and not is_g[i]]
        nd_plain = [i for i in sorted(nd) if not is_g[i]]
        plain_order = [i for i in range(len(args)) if not is_g[i]]
        diff_pos = [i for i in range(len(args)) if i not in nd]
        fun, fwd, bwd = self.fun, self.fwd, self.bwd

        def rebuild(nd_vals, leaves, plain_d):
            by_pos = dict(zip(nd_plain, nd_vals)) | dict(zip(diff_plain, plain_d))
            a, _, state = c.enter(list(leaves), tuple(by_pos[i] for i in plain_order), {})
            return a, state

        def no_writes(state):
            idx, _, _ = c.changes(state)
            if idx:
                raise TransformError(
                    f"{where}: the function wrote a Variable. A custom derivative cannot "
                    "carry state updates; compute the new state outside, or use nnx.grad."
                )

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def call(nd_vals, leaves, *plain_d):
            full, state = rebuild(nd_vals, leaves, plain_d)
            out = fun(*full)
            no_writes(state)
            return out

        def call_fwd(nd_vals, leaves, *plain_d):
            full, state = rebuild(nd_vals, leaves, plain_d)
            out, res = fwd(*full)
            no_writes(state)
            # the arguments' leaves ride along, to hand bwd its nondiff arguments
            return out, (res, leaves if nd else None, plain_d if nd else None)

        def call_bwd(nd_vals, packed, g):
            res, leaves, plain_d = packed
            nondiff = ()
            if nd:  # as jax.custom_vjp: bwd(*nondiff_args, residuals, g)
                full, _ = rebuild(nd_vals, leaves, plain_d)
                nondiff = tuple(full[i] for i in sorted(nd))
            cts = bwd(*nondiff, res, g)
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
        return call(nd_vals, leaves_in, *(args[i] for i in diff_plain))


def _differentiated(prep: Prepared, graph: tuple, g_argnum: list, nd: set, where: str) -> dict:
    """Per differentiated nnx argument (by position): ``[(path, joint leaf index)]``.

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
    for k, (node, argnum) in enumerate(zip(graph, g_argnum)):
        if argnum in nd:
            continue
        sub = flatten(node, with_paths=True)
        items = []
        for path, x in zip(sub.paths, sub.leaves):
            cands = by_id[id(x)]
            j = next((c for c in cands if paths[c] == (k, *path)), cands[0])
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
    return out


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
