"""``make_jaxpr`` over nnx objects, and the ``PARTITION_NAME`` metadata key."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, overload

import jax

from nnx.core import Variable, flatten, is_graph_node, unflatten, vars_as

#: The Variable metadata key naming the mesh axis of a stacked (vmapped or
#: scanned) axis, as in Flax: ``nnx.vmap(..., transform_metadata={nnx.PARTITION_NAME: "layers"})``.
PARTITION_NAME = "partition_name"


def _has_graph(x) -> bool:
    return any(is_graph_node(y) for y in jax.tree.leaves(x, is_leaf=is_graph_node))


def _values(flat) -> list:
    return [x.get_raw_value() if isinstance(x, Variable) else x for x in flat.leaves]


def _out_values(out):
    """The output as a pytree of arrays: nnx objects become their stored values."""
    if not _has_graph(out):
        return out
    return _values(flatten(vars_as(out, ref=False, hijax=False)))


@overload
def make_jaxpr(
    f: Callable[..., Any],
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    static_argnums: int | Sequence[int] = (),
) -> Callable[..., Any]: ...
@overload
def make_jaxpr(
    f: None = None,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    static_argnums: int | Sequence[int] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...
def make_jaxpr(
    f: Callable | None = None,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    static_argnums: int | Sequence[int] = (),
) -> Any:
    """``jax.make_jaxpr`` for functions that take nnx objects.

    Example:

    >>> import jax.numpy as jnp, nnx
    >>> class Scale(nnx.Module):
    ...     def __init__(self):
    ...         self.w = nnx.Param(jnp.ones((3,)))
    >>> closed = nnx.make_jaxpr(lambda m, x: m.w * x)(Scale(), jnp.ones((3,)))
    >>> [str(v.aval) for v in closed.jaxpr.invars]   # the model's arrays, then x
    ['float32[3]', 'float32[3]']
    >>> list(e.primitive.name for e in closed.jaxpr.eqns)
    ['mul']

    The jaxpr's inputs are the arrays of the nnx arguments (each Variable once,
    shared ones too, in ``nnx.flatten`` order) followed by the leaves of the
    other arguments. Tracing runs ``f`` on copies: writes it makes to Variables
    appear in the jaxpr but are not applied to the arguments. Variables of every
    mode are traced as plain arrays.

    Args:
      f: the function (or use ``@nnx.make_jaxpr(static_argnums=...)``).
      graph: accepted for Flax compatibility (no effect: the
        arguments' sharing is always kept and nothing is written back).
      graph_updates: as ``graph``.
      static_argnums: positional arguments passed to ``f`` as they are
        (not traced).
    """
    del graph, graph_updates
    if f is None:
        return functools.partial(make_jaxpr, static_argnums=static_argnums)
    fun = f
    statics = frozenset(
        (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    )

    @functools.wraps(fun)
    def jaxpr_of(*args, **kwargs):
        static = {i: a for i, a in enumerate(args) if i in statics}
        dynamic = tuple(a for i, a in enumerate(args) if i not in statics)
        if _has_graph((dynamic, kwargs)):
            plain = vars_as((dynamic, kwargs), ref=False, hijax=False)
            flat = flatten(plain)
            graphdef, values = flat.graphdef, _values(flat)
        else:
            graphdef, values = None, (dynamic, kwargs)

        def traced(values):
            if graphdef is None:
                dyn, kw = values
            else:
                dyn, kw = unflatten(graphdef, list(values))
            it = iter(dyn)
            full = [static[i] if i in static else next(it) for i in range(len(args))]
            return _out_values(fun(*full, **kw))

        return jax.make_jaxpr(traced)(values)

    return jaxpr_of
