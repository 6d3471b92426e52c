"""Flax NNX's ``as_pure``, ``map`` and ``prefix``.

``as_pure`` is :func:`nnx.pure` under Flax's newer name; ``map`` rebuilds a
graph from a function of its state (split, :func:`map_state`, merge);
``prefix`` turns a graph into a tree of per-Variable values (axes for
``vmap``, shardings for ``jit``); ``NodeStates`` is the pytree Flax's
transforms use for "a GraphDef and its States". They live in their own module
so that the name ``map`` does not shadow the builtin inside the graph tools.
``NodeStates`` lives with ``to_tree``/``from_tree`` in :mod:`nnx.core._graph_tree`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import numpy as np

from nnx.core._convert import vars_as
from nnx.core._filters import to_predicate
from nnx.core._graph import flatten, merge, split
from nnx.core._graph_tools import pure
from nnx.core._state import map_state
from nnx.core._variables import PLAIN, Variable

A = TypeVar("A")


def as_pure(tree: A) -> A:
    """``tree`` with every Variable replaced by its value: Flax's newer name of :func:`pure`.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> state = nnx.State({"w": nnx.Param(jnp.ones((2, 3)))})
    >>> nnx.as_pure(state)["w"].shape
    (2, 3)

    Metadata is dropped (use it for serialization or export); ref and hijax
    Variables give their current values, and bare ``jax.Ref`` leaves their
    contents.

    Args:
        tree: a pytree (a State, a dict, a Module) that may hold Variables.

    Returns:
        The same tree structure with raw values where the Variables were.
    """
    return pure(tree)


def map(  # noqa: A001 (Flax's public name; the builtin is not used in this module)
    f: Callable[[tuple, Any], Any],
    node: A,
    /,
    *,
    graph: bool | None = None,
    recreate_variables: bool = True,
) -> A:
    """A new graph built from ``f(path, variable)`` of every Variable of ``node``.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> model = nnx.Dict(w=nnx.Param(jnp.ones(3)))
    >>> zeroed = nnx.map(lambda path, v: v.replace(jnp.zeros_like(v[...])), model)
    >>> zeroed["w"].get_value().tolist(), model["w"].get_value().tolist()
    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])

    The node is split, ``f`` is applied to each ``(path, Variable)`` of its
    State (as :func:`map_state` does) and the result is merged into a new graph
    of the same structure; ``node`` itself is left unchanged. ``f`` sees the
    Variables, so it returns Variables (``v.replace(new_value)``).

    Args:
        f: ``(path, variable) -> new_variable``, called once per Variable
            (a shared Variable once, at its first path).
        node: the graph (a Module, a Pytree, a list or dict of them).
        graph: accepted for Flax's signature; the result is the same in graph and
            tree mode.
        recreate_variables: when True (the default) the new graph holds fresh
            Variable objects; when False it holds the Variables ``f`` returned
            (the originals, if ``f`` returns its argument).

    Returns:
        The new graph.
    """
    del graph
    graphdef, state = split(node)
    return merge(graphdef, map_state(f, state), copy=recreate_variables)


def _path_part(key) -> tuple:
    # the keys JAX gives while walking a pytree, as nnx path components
    if hasattr(key, "path") and isinstance(key.path, tuple):  # nnx's PathKey (a whole path)
        return key.path
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey/FlattenedIndexKey
        if hasattr(key, attr):
            return (getattr(key, attr),)
    return (key,)


def _prefix_fn(filter_map) -> Callable[[tuple, Any], Any]:
    if not isinstance(filter_map, Mapping):
        if not callable(filter_map):
            raise TypeError(
                "nnx.prefix: filter_map must be a callable (path, leaf) -> prefix or a "
                f"mapping from filters to prefixes, got {type(filter_map).__name__}."
            )
        return filter_map
    pairs = [(to_predicate(k), v) for k, v in filter_map.items()]
    filters = list(filter_map)

    def by_filter(path, leaf):
        for pred, value in pairs:
            if pred(path, leaf):
                return value
        where = "/".join(str(k) for k in path) or "<root>"
        raise ValueError(
            f"nnx.prefix: no filter matches the {type(leaf).__name__} at {where!r}; "
            f"the filters are {filters!r}. Add an entry for it, or `...: None` as the "
            "last entry to give every other leaf the prefix None."
        )

    return by_filter


def prefix(
    node: Any,
    filter_map: Mapping[Any, Any] | Callable[..., Any],
    /,
    *,
    graph: bool | None = None,
) -> Any:
    """A tree shaped like ``node`` with a prefix value where each Variable was.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import nnx
    >>> d = {"a": nnx.Param(jnp.array(2)), "b": nnx.BatchStat(jnp.arange(5))}
    >>> axes = nnx.prefix(d, {nnx.Param: None, nnx.BatchStat: 0})
    >>> axes
    {'a': None, 'b': 0}
    >>> jax.vmap(lambda d: d["a"].get_value() * d["b"].get_value(), in_axes=(axes,))(d).tolist()
    [0, 2, 4, 6, 8]

    Each Variable (a leaf of the walk) and each other pytree leaf is replaced by
    ``filter_map(path, leaf)``, or, for a mapping from filters to values, by
    the value of the first filter that matches (a leaf no filter matches is a
    ``ValueError``). The result is a pytree prefix of ``node``: use it as the
    ``in_axes`` / ``out_axes`` of a vmap or the shardings of a jit. Modules
    inside ``node`` keep their structure, with the prefix values at their
    Variables' places: there each prefix value is held by a plain Variable of
    the same kind, whatever mode (plain, ref or hijax) the model's Variables
    have, so ``axes.kernel.get_value()`` reads the axis.

    Args:
        node: a graph node or pytree holding Variables.
        filter_map: a callable ``(path, leaf) -> prefix``, or a mapping from
            filters to prefixes (checked in order).
        graph: accepted for Flax's signature; nnx gives the same result (the
            paths are the Variables' paths in the graph) in both modes.

    Returns:
        The tree of prefix values.
    """
    del graph
    fn = _prefix_fn(filter_map)
    # The result holds the prefix values in Variables of the node's kinds. Ref and
    # hijax storage is for arrays: a ref or hijax Variable holding a bare int would
    # claim a mode it does not have (and `get_value()` could not read it), so the
    # walk runs over a plain copy and every Variable of the result is plain.
    if any(isinstance(x, Variable) and x._aux.mode != PLAIN for x in flatten(node).leaves):
        node = vars_as(node, ref=False, hijax=False)

    def apply(jax_path, leaf):
        path: tuple = ()
        for k in jax_path:
            path += _path_part(k)
        return fn(path, leaf)

    return jax.tree_util.tree_map_with_path(apply, node, is_leaf=lambda x: isinstance(x, Variable))


def is_pytree_node(x: Any) -> bool:
    """Whether ``x`` is a JAX pytree container (tuple, list, dict, a registered class).

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> nnx.graph.is_pytree_node([1, 2]), nnx.graph.is_pytree_node(jnp.ones(2))
    (True, False)

    nnx objects are not: a Variable is a leaf of the graph, and a Pytree or
    Module is a graph node (:func:`is_node`), even though JAX can flatten both.
    """
    from nnx.core._pytree import Dict, List, Pytree

    if isinstance(x, (Variable, Pytree, Dict, List)):
        return False
    if isinstance(x, tuple):
        return True
    return not jax.tree_util.treedef_is_leaf(
        jax.tree_util.tree_structure(x, is_leaf=lambda y: y is not x)
    )


def is_node(x: Any) -> bool:
    """Whether the graph walk descends into ``x``: a Pytree/Module or a pytree container.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> p = nnx.Param(jnp.ones(2))
    >>> nnx.graph.is_node(nnx.Dict(a=p)), nnx.graph.is_node({"a": p}), nnx.graph.is_node(p)
    (True, True, False)
    """
    from nnx.core._pytree import Dict, List, Pytree

    return isinstance(x, (Pytree, Dict, List)) or is_pytree_node(x)


def is_node_leaf(x: Any) -> bool:
    """Whether ``x`` is a leaf of an object graph: a Variable, an array or a ``jax.Ref``.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> p = nnx.Param(jnp.ones(2))
    >>> nnx.graph.is_node_leaf(p), nnx.graph.is_node_leaf(p[...]), nnx.graph.is_node_leaf(1)
    (True, True, False)
    """
    return isinstance(x, (Variable, jax.Array, np.ndarray)) or is_array_ref(x)


def is_array_ref(x: Any) -> bool:
    """Whether ``x`` is a ``jax.Ref`` (a mutable array, what ref Variables hold).

    >>> import jax, jax.numpy as jnp
    >>> import nnx
    >>> nnx.variablelib.is_array_ref(jax.new_ref(jnp.ones(2))), nnx.variablelib.is_array_ref(1.0)
    (True, False)
    """
    return isinstance(x, jax.Ref)


def jax_to_nnx_path(jax_path: tuple, /) -> tuple:
    """A JAX key path (``jax.tree_util.tree_flatten_with_path``) as an nnx path.

    >>> import jax
    >>> import nnx
    >>> pairs, _ = jax.tree_util.tree_flatten_with_path({"a": [0, 1]})
    >>> path, leaf = pairs[0]
    >>> nnx.graph.jax_to_nnx_path(path)
    ('a', 0)
    """
    return tuple(part for key in jax_path for part in _path_part(key))
