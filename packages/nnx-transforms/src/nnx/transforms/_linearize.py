"""``nnx.jvp`` and ``nnx.vjp``: forward and reverse linearization of functions of nnx objects.

The graph arguments are flattened jointly (as in every transform), so a
Variable reached through two arguments is one object inside. Tangents and
cotangents of an nnx argument are States (or objects of the same structure),
one per argument, over the leaves that argument reaches first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core import State, Variable, flatten, is_graph_node
from nnx.transforms._boundary import (
    GRAPH,
    ModeArgs,
    call_without_cells,
)
from nnx.transforms._crossing import Crossing
from nnx.transforms._errors import TransformError

R = TypeVar("R")
Aux = TypeVar("Aux")


# -- tangents of nnx arguments ------------------------------------------------------------
def _zero_tangent(x):
    if isinstance(x, jax.ShapeDtypeStruct):
        shape, dtype = x.shape, x.dtype
    else:
        shape, dtype = np.shape(x), jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros(shape, dtype)
    return np.zeros(shape, dtype=jax.dtypes.float0)


def _tangents_at(paths, leaves, tangent, where: str) -> list:
    """Tangents for the leaves at ``paths`` from a State/mapping or an object like the primal."""
    if (
        is_graph_node(tangent)
        or isinstance(tangent, (list, tuple))
        and not isinstance(tangent, State)
    ):
        tflat = flatten(tangent, with_paths=True)
        lookup = dict(zip(tflat.paths, tflat.leaves))
    elif isinstance(tangent, Mapping):
        lookup = dict(State(tangent).flat_state())
    elif tangent is None:
        lookup = {}
    else:
        raise TransformError(
            f"{where}: the tangent of an nnx argument must be a State (as nnx.grad returns), "
            f"a mapping of paths, or an object of the same structure; got "
            f"{type(tangent).__name__}."
        )
    out = []
    for path, x in zip(paths, leaves):
        value = x.get_value() if isinstance(x, Variable) else x
        t = lookup.get(path)
        if isinstance(t, Variable):
            t = t.get_value()
        out.append(_zero_tangent(value) if t is None else t)
    return out


def _contains_graph(x) -> bool:
    return any(is_graph_node(leaf) for leaf in jax.tree.leaves(x, is_leaf=is_graph_node))


def _values_fn(fun, args, where, mode):
    """``(g, per-arg values, is_graph, slices, apply)``: ``g(*per_arg_values)`` calls ``fun``.

    The graph arguments are flattened *jointly* (sharing kept: ``f(m, m)`` sees one
    object inside, as with jit); each graph argument's values are the leaves it
    reaches first (``slices[k]`` gives their range, paths and Variables), so a
    Variable reached through two arguments crosses once, with the first.
    """
    c = Crossing(fun, tuple(args), {}, where=where, mode=mode)
    prep = c.prep
    is_g = [code is GRAPH for code in c.layout[0]]
    joint = c.values()
    owners = prep.owners() if prep is not None else []
    slices = []
    vals = []
    k = 0
    for a, isg in zip(args, is_g):
        if not isg:
            slices.append(None)
            vals.append(a)
            continue
        idx = [i for i, o in enumerate(owners) if o == k]
        lo, hi = (idx[0], idx[-1] + 1) if idx else (0, 0)
        assert prep is not None
        slices.append((lo, hi, [prep.paths[i][1:] for i in range(lo, hi)], prep.leaves[lo:hi]))
        vals.append(joint[lo:hi])
        k += 1

    def g(*per_arg):
        leaves: list = []
        plain = []
        for sl, v in zip(slices, per_arg):
            if sl is None:
                plain.append(v)
            else:
                leaves.extend(v)
        a, kw, state = c.enter(leaves, tuple(plain), {})
        out, _ = call_without_cells(fun, a, kw)
        if _contains_graph(out):
            raise TransformError(
                f"{where}: the function must return arrays (pytrees of them), not nnx objects."
            )
        c.idx, new, _ = c.changes(state)
        return out, new

    def apply(new):
        c.finish(c.idx, new, None)

    return g, vals, is_g, slices, apply


def _decorator(transform: Callable, **options: Any) -> Callable:
    # Flax NNX's keyword-only form: `@nnx.vjp(graph=False)` binds the function, and the
    # result takes the primals (and, for jvp, the tangents) at each call
    def bind(fun: Callable) -> Callable:
        @functools.wraps(fun)
        def bound(*args: Any) -> Any:
            return transform(fun, *args, **options)

        return bound

    return bind


@overload
def jvp(
    fun: Callable[..., R],
    primals: tuple,
    tangents: tuple,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> tuple[R, Any]: ...
@overload
def jvp(
    fun: None = None,
    primals: None = None,
    tangents: None = None,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[Callable[..., Any]], Callable[[tuple, tuple], tuple[Any, Any]]]: ...
def jvp(
    fun: Callable | None = None,
    primals: tuple | None = None,
    tangents: tuple | None = None,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.jvp`` where primals may hold nnx objects.

    Example::

        t = nnx.state(model, nnx.Param)          # any State with the same paths
        y, y_dot = nnx.jvp(lambda m: m(x), (model,), (t,))

        @nnx.jvp(graph=False)                    # Flax NNX's decorator form:
        def f(m, x): ...                         # f((m, x), (m_dot, x_dot))

    The tangent of an nnx primal is a State (or an object of the same
    structure); Variables it leaves out get zero tangents.

    Args:
      fun: the function.
      primals: its arguments.
      tangents: one tangent per primal.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """
    if fun is None:
        return _decorator(jvp, graph=graph, graph_updates=graph_updates)
    if primals is None or tangents is None:
        raise TypeError("nnx.jvp(fun, primals, tangents): pass both primals and tangents.")
    where = f"nnx.jvp({getattr(fun, '__name__', 'f')})"
    mode = ModeArgs(graph, graph_updates).mode()
    g, vals, is_g, slices, apply = _values_fn(fun, tuple(primals), where, mode)
    tans = [
        _tangents_at(sl[2], sl[3], t, where) if sl is not None else t
        for sl, t in zip(slices, tangents)
    ]
    (out, news), (out_dot, _) = jax.jvp(g, tuple(vals), tuple(tans))
    apply(news)
    return out, out_dot


@overload
def vjp(
    fun: Callable[..., R],
    *primals: Any,
    has_aux: Literal[False] = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> tuple[R, Callable[[Any], tuple[Any, ...]]]: ...
@overload
def vjp(
    fun: Callable[..., tuple[R, Aux]],
    *primals: Any,
    has_aux: Literal[True],
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> tuple[R, Callable[[Any], tuple[Any, ...]], Aux]: ...
@overload
def vjp(
    fun: Callable[..., Any],
    *primals: Any,
    has_aux: bool,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> tuple[Any, ...]: ...
@overload
def vjp(
    *,
    has_aux: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., tuple[Any, ...]]]: ...
def vjp(
    fun: Callable | None = None,
    *primals,
    has_aux: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.vjp`` where primals may hold nnx objects.

    Example::

        y, vjp_fn = nnx.vjp(lambda m: m(x), model)
        (grads,) = vjp_fn(jnp.ones_like(y))      # a State of the model's Variables

        @nnx.vjp(graph=False)                    # Flax NNX's decorator form:
        def f(m, x): ...                         # y, vjp_fn = f(m, x)

        y, vjp_fn, aux = nnx.vjp(lambda m: (m(x), m.linear1.kernel[...].sum()), model, has_aux=True)

    The cotangent of an nnx primal is a State of all its Variables (integer
    ones get ``float0`` zeros, as in JAX). With ``has_aux=True`` the function
    returns ``(output, aux)``; ``aux`` (arrays) is returned third, not
    differentiated.

    Args:
      fun: the function.
      *primals: its arguments.
      has_aux: the function returns ``(output, aux)``.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """
    if fun is None:
        return _decorator(vjp, has_aux=has_aux, graph=graph, graph_updates=graph_updates)
    where = f"nnx.vjp({getattr(fun, '__name__', 'f')})"
    mode = ModeArgs(graph, graph_updates).mode()
    g, vals, is_g, slices, apply = _values_fn(fun, tuple(primals), where, mode)
    if has_aux:

        def g_aux(*vals):
            out, news = g(*vals)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TransformError(
                    f"{where}: with has_aux=True the function must return a pair "
                    f"(output, aux), got {type(out).__name__}."
                )
            return (out[0], news), out[1]

        (out, news), vjp_fn, aux = jax.vjp(g_aux, *vals, has_aux=True)
    else:
        (out, news), vjp_fn = jax.vjp(g, *vals)
        aux = None
    apply(news)

    def pullback(ct):
        zeros_news = jax.tree.map(_zero_tangent, news)
        cts = vjp_fn((ct, zeros_news))
        result = []
        for c, sl in zip(cts, slices):
            if sl is None:
                result.append(c)
                continue
            items = [
                (path, (x.replace(t) if isinstance(x, Variable) else t))
                for path, x, t in zip(sl[2], sl[3], c)
            ]
            result.append(State.from_flat(items))
        return tuple(result)

    if has_aux:
        return out, pullback, aux
    return out, pullback
