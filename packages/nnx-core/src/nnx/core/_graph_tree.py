"""``GraphTree``: an object graph (with its sharing) as an ordinary JAX pytree,
for pytree-only APIs (``jax.jit``, ``jax.lax.scan``, checkpoint libraries)."""

from __future__ import annotations

from typing import Any

import jax

from nnx.core._flatten import flatten, unflatten
from nnx.core._graphdef import GraphDef


class GraphTree:
    """A graph as a pytree: its GraphDef (static) and its leaves (children).

    ``to_tree`` makes one, ``from_tree`` turns it back into objects with the
    original sharing. It lets any pytree-only API (``jax.jit``, ``jax.lax.scan``,
    checkpoint libraries) carry object graphs with shared references.
    """

    __slots__ = ("graphdef", "leaves")

    def __init__(self, graphdef: GraphDef, leaves: list):
        self.graphdef = graphdef
        self.leaves = leaves

    def __repr__(self):
        return f"GraphTree(num_leaves={len(self.leaves)})"


jax.tree_util.register_pytree_node(
    GraphTree,
    lambda t: (t.leaves, t.graphdef),
    lambda g, leaves: GraphTree(g, list(leaves)),
)


def to_tree(node: Any) -> GraphTree:
    """Turn an object graph (with sharing) into a :class:`GraphTree` pytree.

    Example::

        shared_model = nnx.Dict(a=model.linear1, b=model.linear1)   # one Linear, two names
        tree = nnx.to_tree(shared_model)
        @jax.jit
        def f(tree):
            inner = nnx.from_tree(tree)   # sharing restored inside
            return inner["a"](x)

        f(tree)
    """
    flat = flatten(node)
    return GraphTree(flat.graphdef, flat.leaves)


def from_tree(tree: GraphTree) -> Any:
    """Inverse of :func:`to_tree`."""
    return unflatten(tree.graphdef, list(tree.leaves))
