"""Functional helpers over object graphs, with Flax NNX's names and behaviour.

``call`` (a method of a ``(GraphDef, State)`` pair, purely), ``recursive_map``
(rebuild a graph bottom-up), ``pure`` (Variables replaced by their values),
and the type name ``PureState``.
All of them sit on :mod:`nnx.core._graph`'s split/merge/flatten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax

from nnx.core._graph import GraphDef, flatten, merge, split, unflatten
from nnx.core._paths import key_order, path_str
from nnx.core._pytree import Pytree
from nnx.core._state import State
from nnx.core._variables import Variable

PureState: TypeAlias = tuple[GraphDef, State]
"""A ``(GraphDef, State)`` pair, what ``nnx.split(node)`` returns (Flax's name)."""


def pure(tree: Any) -> Any:
    """``tree`` with every Variable replaced by its value (metadata dropped).

    Example::

        graphdef, state = nnx.split(model)
        nnx.pure(state)            # State({'bias': Array(...), 'kernel': Array(...)})

    Useful for serialization or export, where Variable metadata is not needed;
    ref and hijax Variables give their current values.
    """
    return jax.tree.map(
        lambda x: x.get_value() if isinstance(x, Variable) else x[...] if _is_ref(x) else x,
        tree,
        is_leaf=lambda x: isinstance(x, Variable),
    )


def _is_ref(x) -> bool:
    return isinstance(x, jax.Ref)


class _Call:
    """What :func:`call` returns: attribute and item access pick the method to call."""

    __slots__ = ("_pair", "_steps")

    def __init__(self, pair, steps: tuple):
        self._pair = pair
        self._steps = steps

    def __getattr__(self, name: str) -> _Call:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Call(self._pair, (*self._steps, ("attr", name)))

    def __getitem__(self, key) -> _Call:
        return _Call(self._pair, (*self._steps, ("item", key)))

    def __call__(self, *args, **kwargs):
        graphdef, *states = self._pair
        node = merge(graphdef, *states, copy=True)  # the caller's State stays as it was
        target = node
        for kind, key in self._steps:
            target = getattr(target, key) if kind == "attr" else target[key]
        out = target(*args, **kwargs)
        return out, split(node)


def call(graphdef_state: tuple, /) -> Any:
    """Call a method of the graph a ``(GraphDef, State)`` pair describes, purely.

    Example::

        class Counter(nnx.Module):
            def __init__(self):
                self.count = nnx.BatchStat(jnp.array(0))

            def __call__(self, x):
                self.count[...] += 1
                return 2 * x

            def reset(self):
                self.count[...] = 0

        class Pair(nnx.Module):
            def __init__(self):
                self.a, self.b = Counter(), Counter()

            def __call__(self, x):
                return self.b(self.a(x))

        model = Pair()
        pair = nnx.split(model)                          # (graphdef, state)
        y, pair = nnx.call(pair)(jnp.ones(2))            # merge, __call__, split
        print(y)                                         # [4. 4.]
        print(pair[1]["a"]["count"][...])                # 1
        _, pair = nnx.call(pair).a.reset()               # a method of a sub-node
        print(pair[1]["a"]["count"][...])                # 0
        # the model the pair came from was never touched:
        print(model.a.count[...])                        # 0

        @jax.jit                                         # a pure function of the pair
        def step(pair, x):
            return nnx.call(pair)(x)

        y, pair = step(pair, jnp.ones(2))
        model = nnx.merge(*pair)
        print(model.b.count[...])                        # 2

    The pair is merged into a new graph (its Variables copied, so the pair
    passed in is left unchanged), the method is called, and the output comes
    back with the new ``(GraphDef, State)`` pair: the form a pure JAX function
    (``jax.jit``) needs. Attribute and item access before the call select the
    method (``nnx.call(pair).encoder.layers[0](x)``).
    """
    return _Call(graphdef_state, ())


def _node_items(node) -> list[tuple[Any, Any]]:
    # Every attribute of a Pytree, static ones included (`recursive_map` hands `f`
    # each of them, as Flax does), unlike `_walk._children` (data and graph_ref only).
    if isinstance(node, Pytree):
        d = node.__dict__
        return [(k, d[k]) for k in sorted(d, key=key_order)]
    if isinstance(node, (list, tuple)):
        return list(enumerate(node))
    if isinstance(node, dict):
        return [(k, node[k]) for k in sorted(node, key=key_order)]
    return []


def recursive_map(
    f: Callable[[tuple, Any], Any], node: Any, /, *, graph: bool | None = None
) -> Any:
    """Apply ``f(path, value)`` to every node and leaf of a graph, children first.

    Example::

        def print_modules(path, x):
            if isinstance(x, nnx.Module):
                print(path, type(x).__name__)
            return x

        new_model = nnx.recursive_map(print_modules, model)

    The graph's structure is cloned first (Variables are not copied), then each
    value is replaced in its parent by what ``f`` returns for it, bottom-up, so
    ``f`` sees a parent with its children already mapped; the result for the
    root is returned. Values ``f`` sees: Pytrees (Modules), Variables, lists,
    dicts, tuples, arrays and static attributes. A node reached twice (shared)
    is mapped once and its result is shared; a reference cycle is a
    ``ValueError`` naming the path. Replace layers with it (model surgery):
    ``nnx.recursive_map(lambda p, x: LoRA(x) if isinstance(x, nnx.Linear) else x, m)``.
    ``graph`` is accepted for Flax's signature (the result is the same in both modes).
    """
    del graph
    flat = flatten(node)
    node = unflatten(flat.graphdef, flat.leaves)  # new nodes, the same Variables
    return _map(f, node, (), set(), {})


def _map(f, node, path, visiting: set[int], results: dict[int, Any]):
    shared = isinstance(node, (Pytree, Variable, list, dict))
    if shared:
        i = id(node)
        if i in results:
            return results[i]
        if i in visiting:
            where = path_str(path)
            raise ValueError(
                f"recursive_map: a reference cycle reaches the {type(node).__name__} at "
                f"{where!r} again before it was mapped. recursive_map needs a graph "
                "without cycles."
            )
        visiting.add(i)
    if not isinstance(node, Variable):
        items = _node_items(node)
        if isinstance(node, tuple):
            new_items = [_map(f, v, (*path, k), visiting, results) for k, v in items]
            if any(n is not v for n, (_, v) in zip(new_items, items)):
                node = type(node)(*new_items) if hasattr(node, "_fields") else tuple(new_items)
        else:
            for k, v in items:
                new = _map(f, v, (*path, k), visiting, results)
                if new is not v:
                    if isinstance(node, Pytree):
                        setattr(node, k, new)
                    else:
                        node[k] = new
    out = f(path, node)
    if shared:
        results[id(node)] = out
    return out
