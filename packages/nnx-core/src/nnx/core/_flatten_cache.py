""":class:`FlattenCache`: :func:`flatten` of the same arguments for one identity check.

A cached flattening stays valid while the structure epoch
(:mod:`nnx.core._epoch`) has not moved and what the epoch cannot see (plain
containers, mutable static values: :class:`_Watch`) is unchanged. The cache-hit
path of ``FlattenCache.flatten`` is the per-call cost of every nnx transform.
"""

from __future__ import annotations

import weakref

import jax

from nnx.core import _epoch
from nnx.core._flatten import FlatGraph, _Flattener
from nnx.core._graphdef import _ARRAY_TYPES, GraphDef

# The epoch's counter, bound once: the cache-hit path reads `_EPOCH[0]` (one global
# and one index), not `_epoch.current()` (a call) or `_epoch._counter[0]` (an
# attribute lookup more). `_epoch.bump()` mutates this same list in place.
_EPOCH = _epoch._counter


class FlattenCache:
    """Remembers :func:`flatten` of the last arguments while nothing changed.

    Example::

        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        cache = nnx.FlattenCache()            # one per call site (a transform keeps one)
        flat = cache.flatten((model, opt))    # walks the graphs
        cache.flatten((model, opt)) is flat   # True: same objects, no structural change
        model.kernel[...] = 0                 # values may change: leaves are Variables
        cache.flatten((model, opt)) is flat   # still True
        model.extra = nnx.Param(jnp.ones(1))  # a structural change moves graph_epoch()
        cache.flatten((model, opt)) is flat   # False: flattened again

    ``cache.flatten(args)`` returns the previous :class:`FlatGraph` when
    ``args`` holds the same objects as last time and nothing reachable from
    them changed structure since; otherwise it flattens again. Changes to
    nnx objects move :func:`graph_epoch` (one integer comparison). What the
    epoch cannot see is re-checked on every hit, at a cost proportional to its
    size only: the plain lists, dicts and other pytree nodes reached (compared
    item by item, by identity: ``c["m"] = other_module`` is seen) and static
    values of Pytrees that can change in place (``m.cfg["scale"] = 3.0``). An
    array replaced in a plain container (``c["x"] = 2 * x``) does not cost a
    re-flatten: the cached FlatGraph's leaves list is updated in place. A graph
    of modules only (the common case) has nothing to re-check.
    Leaves are Variables, so their current values are read by the caller at
    each use.
    """

    __slots__ = ("_refs", "_epoch", "_flat", "_watch")

    def __init__(self):
        self._refs: tuple = ()
        self._epoch = -1
        self._flat: FlatGraph | None = None
        self._watch: _Watch | None = None

    def flatten(self, nodes: tuple) -> FlatGraph:
        if self._epoch == _EPOCH[0] and len(nodes) == len(self._refs):
            for r, n in zip(self._refs, nodes):
                if r() is not n:
                    break
            else:
                w = self._watch
                if w is None or w.still_valid(self._flat.leaves):  # type: ignore[union-attr]
                    return self._flat  # type: ignore[return-value]
        watch = _Watch()
        f = _Flattener(None, False, watch=watch)
        tree = f.visit(nodes, ())
        flat = FlatGraph(GraphDef(tree, len(f.leaves), len(f.ids)), f.leaves, f.nodes, None)
        self._refs = tuple(_weak(n) for n in nodes)
        self._epoch = _EPOCH[0]
        self._flat = flat
        self._watch = watch if (watch.items or watch.statics) else None
        return flat


class _Watch:
    """What the structure epoch does not see, recorded during one flattening.

    ``items``: per untracked container reached (a plain list or dict, a State,
    another registered pytree node), ``(container, keys, children, arrays)``:
    the children as they were (by identity) and, for raw array children, their
    leaf index (``arrays``: position -> leaf index), so that a replaced array
    updates the cached leaves instead of forcing a re-flatten. ``statics``:
    the mutable static values of the Pytrees reached.
    """

    __slots__ = ("items", "statics")

    def __init__(self):
        self.items: list = []
        self.statics: list = []

    def still_valid(self, leaves: list) -> bool:
        for st in self.statics:
            if st.stale():
                return False
        moved = None
        for x, keys, kids, arrays in self.items:
            if keys is None:  # a plain list
                if len(x) != len(kids):
                    return False
                now = x
            elif type(keys) is tuple:  # a dict or State
                if len(x) != len(keys):
                    return False
                try:
                    now = [x[k] for k in keys]
                except KeyError:
                    return False
            else:  # another pytree node: its children and treedef
                try:
                    now, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda y, x=x: y is not x)
                except Exception:
                    return False
                if treedef != keys or len(now) != len(kids):
                    return False
            for i, (a, b) in enumerate(zip(now, kids)):
                if a is not b:
                    j = None if arrays is None else arrays.get(i)
                    if j is None or not isinstance(a, _ARRAY_TYPES):
                        return False
                    if moved is None:
                        moved = []
                    moved.append((kids, i, j, a))
        if moved:
            for kids, i, j, a in moved:
                kids[i] = a
                leaves[j] = a
        return True


class _Strong:
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __call__(self):
        return self.obj


def _weak(obj):
    try:
        return weakref.ref(obj)
    except TypeError:
        return _Strong(obj)


def graph_epoch() -> int:
    """The structure epoch: it changes whenever any object graph may have changed shape.

    Example::

        model = nnx.Sequential(nnx.Linear(2, 2, rngs=rngs))
        layer = nnx.Linear(2, 2, rngs=rngs)
        e = nnx.graph_epoch()
        model.layers[0].kernel[...] += 1  # a value write: the epoch stays
        assert nnx.graph_epoch() == e
        model.layers.append(layer)    # attribute set/delete, List/Dict mutation,
        assert nnx.graph_epoch() != e # Variable metadata write: the epoch moves

    A cached :class:`FlatGraph` (see :class:`FlattenCache`) is valid while the
    epoch is the one it was made at.
    """
    return _epoch.current()
