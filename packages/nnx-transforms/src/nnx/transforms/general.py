"""``nnx.transforms.general``: lift any JAX transform by hand (Flax's ``split_inputs``/``merge_inputs``).

``split_inputs`` goes around a JAX transform, ``merge_inputs`` around the
function it transforms (see :func:`split_inputs` for an example). Between the two, every nnx object is a pytree of arrays (:class:`PureNode`),
so the transform only ever sees arrays: each argument that holds nnx objects
crosses as one :class:`PureNode` (objects that share state must come in one
argument, e.g. a tuple). ``merge_inputs`` returns ``(inputs, output)`` where
``inputs`` are its arguments with those that hold no nnx object set to
``None``; ``split_inputs`` writes the inputs' new Variable values into the
caller's objects and returns the output. A transform with output
semantics (``jax.vmap``'s ``out_axes``) must account for that pair:
``out_axes=(in_axes, 0)``. For the common transforms use ``nnx.jit``,
``nnx.vmap``, ``nnx.cond``, ... instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, overload

import jax

from nnx.core import (
    StructureError,
    Variable,
    flatten,
    is_graph_node,
    state,
    unflatten,
    update,
    vars_as,
)

__all__ = ["split_inputs", "merge_inputs", "PureNode"]


class PureNode:
    """An nnx object as a pytree: its structure (static) and its arrays (children).

    ``origin`` is the position of the input object it stands for (an input
    returned as it is), or None for an object made inside.
    """

    __slots__ = ("graphdef", "values", "origin")

    def __init__(self, graphdef, values: list, origin: int | None):
        self.graphdef = graphdef
        self.values = values
        self.origin = origin

    def __repr__(self) -> str:
        return f"PureNode(num_values={len(self.values)}, origin={self.origin})"


jax.tree_util.register_pytree_node(
    PureNode,
    lambda p: (p.values, (p.graphdef, p.origin)),
    lambda aux, values: PureNode(aux[0], list(values), aux[1]),
)


def _is_pure(x) -> bool:
    return isinstance(x, PureNode)


def _to_pure(node, origin: int | None) -> PureNode:
    flat = flatten(vars_as(node, ref=False, hijax=False))
    values = [x.get_value() if isinstance(x, Variable) else x for x in flat.leaves]
    return PureNode(flat.graphdef, values, origin)


def _from_pure(p: PureNode):
    return unflatten(p.graphdef, list(p.values))


def _has_graph(x) -> bool:
    return any(is_graph_node(y) for y in jax.tree.leaves(x, is_leaf=is_graph_node))


def _check_not_shared(nodes: list, positions: list[int], where: str) -> None:
    owner: dict[int, int] = {}
    for i, node in zip(positions, nodes):
        for x in flatten(node).nodes:
            j = owner.setdefault(id(x), i)
            if j != i:
                raise StructureError(
                    f"{where}: arguments {j} and {i} share a "
                    f"{type(x).__name__}. Each argument crosses the transform on its own, "
                    "so sharing between arguments cannot be kept: pass the objects that "
                    "share state together in one argument (a tuple or a list), or use the "
                    "nnx transform (nnx.jit, nnx.vmap, ...) instead."
                )


def _fn_name(f) -> str:
    return getattr(f, "__name__", None) or type(f).__name__


@overload
def split_inputs(
    f: Callable[..., Any], *, ctxtag: str = "split_merge_inputs"
) -> Callable[..., Any]: ...
@overload
def split_inputs(
    f: None = None, *, ctxtag: str = "split_merge_inputs"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...
def split_inputs(f: Callable | None = None, *, ctxtag: str = "split_merge_inputs") -> Any:
    """Turn the nnx objects in the arguments into pytrees, call ``f``, write the updates back.

    Use it around a JAX transform whose function is wrapped in
    :func:`merge_inputs` (see the module docstring). ``f`` must return what
    ``merge_inputs`` returns, ``(inputs, output)``; the inputs' new Variable
    values (and arrays) are written into the caller's objects, and the output
    comes back with nnx objects rebuilt (an input returned as it is comes back
    as the caller's own object).

    Example:

    >>> import jax, jax.numpy as jnp, nnx
    >>> from nnx.transforms.general import merge_inputs, split_inputs
    >>> class Scale(nnx.Module):
    ...     def __init__(self):
    ...         self.w = nnx.Param(jnp.full((2,), 3.0))
    >>> @split_inputs
    ... @jax.jit
    ... @merge_inputs
    ... def forward_and_zero(model, x):
    ...     y = model.w * x
    ...     model.w[...] *= 0           # reaches the caller's model
    ...     return y
    >>> model = Scale()
    >>> forward_and_zero(model, jnp.ones((2,))).tolist(), model.w[...].tolist()
    ([3.0, 3.0], [0.0, 0.0])

    Args:
      f: the transformed function (or use ``@split_inputs(ctxtag=...)``).
      ctxtag: accepted for Flax compatibility.
    """
    del ctxtag
    if f is None:
        return split_inputs
    fun = f

    @functools.wraps(fun)
    def split_inputs_wrapper(*args):
        where = f"split_inputs({_fn_name(fun)})"
        units = [i for i, a in enumerate(args) if _has_graph(a)]
        _check_not_shared([args[i] for i in units], units, where)
        pure_args = tuple(_to_pure(a, i) if i in units else a for i, a in enumerate(args))
        result = fun(*pure_args)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(
                f"{where}: the function must return the `(inputs, output)` pair that "
                "merge_inputs returns; wrap the function given to the JAX transform in "
                "nnx.transforms.general.merge_inputs."
            )
        pure_args_out, pure_out = result
        updates = [p for p in jax.tree.leaves(pure_args_out, is_leaf=_is_pure) if _is_pure(p)]
        news = [(args[p.origin], _from_pure(p)) for p in updates if p.origin is not None]
        for original, new in news:  # check every input before writing any
            _check_same_paths(original, new, where)
        for original, new in news:
            update(original, state(new, Variable))

        def back(p):
            if p.origin is not None:
                return args[p.origin]
            return _from_pure(p)

        return jax.tree.map(lambda x: back(x) if _is_pure(x) else x, pure_out, is_leaf=_is_pure)

    return split_inputs_wrapper


def _check_same_paths(original, new, where: str) -> None:
    old_paths = set(flatten(original).graphdef.paths)
    new_paths = set(flatten(new).graphdef.paths)
    if old_paths != new_paths:
        diff = sorted(new_paths ^ old_paths, key=repr)[0]
        raise StructureError(
            f"{where}: the structure of a {type(original).__name__} argument changed inside "
            f"the transform (at {'/'.join(map(str, diff))!r}). Only Variable values and "
            "arrays propagate out: do model surgery outside the transform, or return the "
            "new objects."
        )


@overload
def merge_inputs(
    f: Callable[..., Any], *, ctxtag: str = "split_merge_inputs"
) -> Callable[..., Any]: ...
@overload
def merge_inputs(
    f: None = None, *, ctxtag: str = "split_merge_inputs"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...
def merge_inputs(f: Callable | None = None, *, ctxtag: str = "split_merge_inputs") -> Any:
    """Rebuild nnx objects from the pytrees :func:`split_inputs` made, call ``f``, split again.

    Returns ``(inputs, output)``: the arguments, with those that hold no nnx
    object set to ``None`` and the others as their state after ``f``, and
    ``f``'s output, both with nnx objects as :class:`PureNode` pytrees.

    Args:
      f: the function to run inside the JAX transform (or use
        ``@merge_inputs(ctxtag=...)``).
      ctxtag: accepted for Flax compatibility.
    """
    del ctxtag
    if f is None:
        return merge_inputs
    fun = f

    @functools.wraps(fun)
    def merge_inputs_wrapper(*pure_args):
        inner: dict[int, Any] = {}

        def build(p):
            obj = _from_pure(p)
            if p.origin is not None:
                inner[p.origin] = obj
            return obj

        args = tuple(build(a) if _is_pure(a) else a for a in pure_args)
        out = fun(*args)
        by_id = {id(obj): k for k, obj in inner.items()}
        args_out = tuple(
            _to_pure(inner[a.origin], a.origin) if _is_pure(a) else None for a in pure_args
        )
        pure_out = jax.tree.map(
            lambda x: _to_pure(x, by_id.get(id(x))) if is_graph_node(x) else x,
            out,
            is_leaf=is_graph_node,
        )
        return args_out, pure_out

    return merge_inputs_wrapper
