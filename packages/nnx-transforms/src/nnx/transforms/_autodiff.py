"""``nnx.grad`` and ``nnx.value_and_grad``: gradients with respect to the Params of modules.

The flat leaves of the nnx arguments are split into the differentiated ones
(the Variables that a :class:`DiffState` filter selects; ``nnx.Param`` by
default) and the rest. JAX differentiates with respect to the plain values of
the former; the rest enters as plain values too, and what the function
writes into it (BatchNorm statistics, RNG counts) is written back to the
caller's Variables afterwards, as with ``nnx.jit``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

import jax
from jax.extend.core import get_opaque_trace_state

from nnx.core import (
    AliasingError,
    Param,
    State,
    Variable,
    flatten,
    to_predicate,
    variable_from_stored,
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


class DiffState:
    """Which state of an argument to differentiate: ``DiffState(argnum, filter)``.

    Example::

        # gradients of the LoRA parameters only
        model = nnx.LoRALinear(2, 1, lora_rank=2, rngs=nnx.Rngs(0))
        grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, nnx.LoRAParam))(model, x, y)

    ``argnums=0`` means ``DiffState(0, nnx.Param)`` for an nnx object, and every
    Variable of an ``nnx.State`` argument.
    """

    __slots__ = ("argnum", "filter")

    def __init__(self, argnum: int, filter: Any = Param):
        self.argnum = argnum
        self.filter = filter

    def __repr__(self) -> str:
        return f"DiffState({self.argnum}, {self.filter!r})"

    def __eq__(self, other):
        return isinstance(other, DiffState) and (self.argnum, self.filter) == (
            other.argnum,
            other.filter,
        )

    def __hash__(self):
        return hash((DiffState, self.argnum, repr(self.filter)))


class _Default:
    """The filter of a plain int in ``argnums``: an nnx object's Params, and every
    Variable of an ``nnx.State`` (a State is a pytree of what to differentiate: Flax
    NNX's ``nnx.split(model, nnx.Param, nnx.Perturbation)`` then ``argnums=(0, 1)``)."""

    def __repr__(self) -> str:
        return "nnx.Param"


_DEFAULT = _Default()


def _filter_for(d: DiffState, node: Any) -> Any:
    if d.filter is _DEFAULT:
        return ... if isinstance(node, State) else Param
    return d.filter


def _normalize(argnums) -> tuple[tuple[DiffState, ...], bool]:
    single = isinstance(argnums, (int, DiffState))
    items = (argnums,) if single else tuple(argnums)
    out = []
    for a in items:
        if isinstance(a, DiffState):
            out.append(a)
        elif isinstance(a, int):
            out.append(DiffState(a, _DEFAULT))
        else:
            raise TypeError(
                f"argnums entries must be ints or nnx.DiffState, got {type(a).__name__}: {a!r}."
            )
    if len({d.argnum for d in out}) != len(out):
        raise ValueError(f"argnums names the same argument twice: {argnums!r}.")
    return tuple(out), single


class _Plan:
    """Per FlatGraph and argnums: which leaves are differentiated, and their grad paths."""

    __slots__ = ("diff_idx", "rest_idx", "plain_diff", "per_arg")

    def __init__(self, prep, graph, layout, diffs, where="nnx.grad", names=()):
        pos, _ = layout
        gindex = {}  # argnum -> graph arg index
        pindex = {}  # argnum -> plain arg index
        g = p = 0
        for i, code in enumerate(pos):
            if code is GRAPH:
                gindex[i] = g
                g += 1
            elif code is PLAIN_ARG:
                pindex[i] = p
                p += 1
        leaf_pos = {id(x): i for i, x in enumerate(prep.leaves) if isinstance(x, Variable)}
        # raw array leaves (state as in Flax NNX) by their joint path
        array_pos = (
            {
                p: i
                for i, (p, x) in enumerate(zip(prep.paths, prep.leaves))
                if not isinstance(x, Variable)
            }
            if not prep.all_vars
            else {}
        )
        chosen: dict[int, tuple] = {}  # leaf index -> (argnum, path) that selected it
        self.per_arg: list = []  # (argnum, kind, payload)
        for d in diffs:
            if d.argnum in gindex:
                k = gindex[d.argnum]
                node = graph[k]
                sub = flatten(node, with_paths=True)
                pred = to_predicate(_filter_for(d, node))
                items = []
                for path, x in zip(sub.paths, sub.leaves):
                    if isinstance(x, Variable):
                        if not pred(path, x):
                            continue
                        i = leaf_pos[id(x)]
                    else:  # a raw array attribute: differentiated when the filter selects it
                        i = array_pos.get((k, *path))
                        if i is None or not pred(path, x):
                            continue  # reached first through another argument, or not selected
                    if i in chosen:
                        raise _twice(where, x, names, (d.argnum, path), chosen[i])
                    chosen[i] = (d.argnum, path)
                    items.append((path, i))
                self.per_arg.append((d.argnum, "graph", items))
            elif d.argnum in pindex:
                self.per_arg.append((d.argnum, "plain", pindex[d.argnum]))
            else:
                raise ValueError(
                    f"argnums asks for argument {d.argnum}, but the function was called with "
                    f"{len(pos)} positional arguments (static or keyword arguments cannot "
                    "be differentiated)."
                )
        self.diff_idx = sorted(chosen)
        diff_set = set(self.diff_idx)
        self.rest_idx = [i for i in range(len(prep.leaves)) if i not in diff_set]
        self.plain_diff = [payload for _, kind, payload in self.per_arg if kind == "plain"]


def _twice(where, x, names, second, first) -> AliasingError:
    def p(argnum, path):
        head = names[argnum] if argnum < len(names) else f"args[{argnum}]"
        return repr("/".join(str(c) for c in (head, *path)))

    return AliasingError(
        f"{where}: the {type(x).__name__} at {p(*second)} is the same Variable as "
        f"{p(*first)}, and both arguments are differentiated (argnums {first[0]} and "
        f"{second[0]}). One Variable cannot have a gradient in two places: differentiate "
        "it through one argument only (an nnx.DiffState filter that leaves it out of the "
        "other, e.g. nnx.Not(...)), or pass the object that holds it once."
    )


P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
Aux = TypeVar("Aux")


class GradWrapped(Generic[P, R]):
    """A function wrapped by :func:`grad` or :func:`value_and_grad`.

    Typed ``GradWrapped[P, R]``: it takes the wrapped function's parameters ``P``
    and returns ``R``: the gradients (``Any``) for :func:`grad`, ``(grads, aux)``
    with ``has_aux``; ``(value, grads)`` for :func:`value_and_grad`.
    """

    def __init__(
        self,
        fun: Callable[P, Any],
        *,
        argnums,
        has_aux,
        return_value,
        jax_kwargs,
        graph=None,
        graph_updates=None,
    ):
        functools.update_wrapper(self, fun)
        self._mode = ModeArgs(graph, graph_updates)
        self.fun: Callable[..., Any] = fun
        self._diffs, self._single = _normalize(argnums)
        self._has_aux = has_aux
        self._return_value = return_value
        self._jax_kwargs = jax_kwargs
        self._prep = PrepareCache()

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> GradWrapped[P, R]: ...
    @overload
    def __get__(
        self: GradWrapped[Concatenate[Any, P2], R], obj: object, objtype: type | None = None
    ) -> Callable[P2, R]: ...
    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fun = self.fun
        has_aux = self._has_aux
        where = f"nnx.grad({getattr(fun, '__name__', 'f')})"
        c = Crossing(
            fun, args, kwargs, where=where, mode=self._mode.mode(), prep_cache=self._prep,
            what="nnx.grad", patches=True,
        )  # fmt: skip
        prep, layout, plain = c.prep, c.layout, c.plain
        if prep is not None:
            plan = prep.extra.get(("grad", self._diffs, layout))
            if plan is None:
                names = _positional_names(fun, layout)
                plan = _Plan(prep, c.graph, layout, self._diffs, where, names)
                prep.extra[("grad", self._diffs, layout)] = plan
        else:
            plan = _Plan(_NoGraph, (), layout, self._diffs)
        values = c.values()
        diff_vals = [values[i] for i in plan.diff_idx]
        rest_vals = [values[i] for i in plan.rest_idx]
        pdiff = set(plan.plain_diff)
        plain_d = tuple(a for j, a in enumerate(plain) if j in pdiff)
        plain_r = tuple(a for j, a in enumerate(plain) if j not in pdiff)

        def inner(diff_vals, plain_d, rest_vals, plain_r):
            leaves = [None] * len(values)
            for i, v in zip(plan.diff_idx, diff_vals):
                leaves[i] = v
            for i, v in zip(plan.rest_idx, rest_vals):
                leaves[i] = v
            pd, pr = iter(plain_d), iter(plain_r)
            plain_all = tuple(next(pd) if j in pdiff else next(pr) for j in range(len(plain)))
            a, kw, state = c.enter(leaves, plain_all, c.plain_kw)
            out, new_mode = call_without_cells(fun, a, kw)  # the cell rule: temporaries plain
            if has_aux:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError(
                        f"{where}: with has_aux=True the function must return a pair "
                        f"(loss, aux), got {type(out).__name__}."
                    )
                loss, aux = out
            else:
                loss, aux = out, None
            # the loss is differentiated, not exported: only aux crosses as an output
            _, new, aux = c.exit(state, aux, new_mode=new_mode)
            return loss, (aux, new)

        vg = jax.value_and_grad(inner, argnums=(0, 1), has_aux=True, **self._jax_kwargs)
        (loss, (aux, new)), (g_leaves, g_plain) = vg(diff_vals, plain_d, rest_vals, plain_r)
        aux = c.finish(c.idx, new, aux)
        grads = self._grads(prep, plan, g_leaves, g_plain)
        g = grads[0] if self._single else grads
        if self._return_value:
            return ((loss, aux), g) if has_aux else (loss, g)  # pyright: ignore[reportReturnType]
        return (g, aux) if has_aux else g  # pyright: ignore[reportReturnType]

    def _grads(self, prep, plan, g_leaves, g_plain) -> tuple:
        by_leaf = dict(zip(plan.diff_idx, g_leaves))
        trace = get_opaque_trace_state(convention="nnx")
        out = []
        plain_grads = iter(g_plain)
        for _, kind, payload in plan.per_arg:
            if kind == "plain":
                out.append(next(plain_grads))
                continue
            items = []
            for path, i in payload:
                slot = prep.slots[i]
                if slot is None:  # a raw array attribute: its gradient is an array
                    items.append((path, by_leaf[i]))
                    continue
                cls, aux = slot
                items.append((path, variable_from_stored(cls, by_leaf[i], aux, trace)))
            out.append(State.from_flat(items))
        return tuple(out)


def _positional_names(fun, layout) -> list[str]:
    """The parameter name of each positional argument (``args[i]`` when unknown)."""
    import inspect

    try:
        params = [
            p.name
            for p in inspect.signature(fun).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"args[{i}]" for i in range(len(layout[0]))]


class _NoGraphPrep:
    leaves: list = []
    all_vars = True


_NoGraph = _NoGraphPrep()


@overload
def grad(
    fun: Callable[P, tuple[Any, Aux]],
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> GradWrapped[P, tuple[Any, Aux]]: ...
@overload
def grad(
    fun: Callable[P, Any],
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> GradWrapped[P, Any]: ...
@overload
def grad(
    fun: None = None,
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[Callable[P, tuple[Any, Aux]]], GradWrapped[P, tuple[Any, Aux]]]: ...
@overload
def grad(
    fun: None = None,
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[Callable[P, Any]], GradWrapped[P, Any]]: ...
def grad(
    fun: Callable | None = None,
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.grad`` for functions of nnx objects: gradients of the Params, as a State.

    Example::

        def loss_fn(model, x, y):
            return jnp.mean((model(x) - y) ** 2)

        grads = nnx.grad(loss_fn)(model, x, y)      # State shaped like model's Params
        optimizer.update(model, grads)

        # other state, or several arguments
        nnx.grad(loss_fn, argnums=nnx.DiffState(0, nnx.PathContains("linear2")))(model, x, y)
        nnx.grad(loss_fn, argnums=(0, 1))(model, x, y)   # (State, array)

    For an nnx argument, ``argnums`` differentiates the Variables its filter
    selects (``nnx.Param`` by default; every Variable of an ``nnx.State``, as
    ``nnx.split(model, nnx.Param, nnx.Perturbation)`` gives); for a plain
    argument, the whole value, as in JAX. Writes to other Variables (BatchNorm statistics, RNG counts)
    are applied to the caller's objects after the call. Objects in ``aux``
    come out as with :func:`jit`.

    Args:
      fun: the function (or use ``@nnx.grad(...)`` with options).
      argnums: which arguments to differentiate: an int, an
        :class:`DiffState` (an nnx argument and a filter of its Variables),
        or a sequence of them.
      has_aux: the function returns ``(loss, aux)``.
      holomorphic: as in ``jax.grad``.
      allow_int: as in ``jax.grad``.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside
        (see :func:`nnx.jit`); None for the current setting.
    """
    return wrap(
        GradWrapped,
        fun,
        argnums=argnums,
        has_aux=has_aux,
        return_value=False,
        jax_kwargs=dict(holomorphic=holomorphic, allow_int=allow_int),
        graph=graph,
        graph_updates=graph_updates,
    )


@overload
def value_and_grad(
    fun: Callable[P, R],
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> GradWrapped[P, tuple[R, Any]]: ...
@overload
def value_and_grad(
    fun: None = None,
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[Callable[P, R]], GradWrapped[P, tuple[R, Any]]]: ...
def value_and_grad(
    fun: Callable | None = None,
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.value_and_grad`` for functions of nnx objects (see :func:`grad`).

    Example::

        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        def loss_and_logits(model, x, y):
            logits = model(x)
            return jnp.mean((logits - y) ** 2), logits   # (loss, aux)
        (loss, logits), grads = nnx.value_and_grad(loss_and_logits, has_aux=True)(model, x, y)

    Args:
      fun: the function (or use ``@nnx.value_and_grad(...)`` with options).
      argnums: as in :func:`grad`.
      has_aux: the function returns ``(loss, aux)``.
      holomorphic: as in ``jax.grad``.
      allow_int: as in ``jax.grad``.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """
    return wrap(
        GradWrapped,
        fun,
        argnums=argnums,
        has_aux=has_aux,
        return_value=True,
        jax_kwargs=dict(holomorphic=holomorphic, allow_int=allow_int),
        graph=graph,
        graph_updates=graph_updates,
    )
