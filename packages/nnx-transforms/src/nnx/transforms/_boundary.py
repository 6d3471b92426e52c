"""The one boundary mechanism every nnx transform is built on.

Crossing a JAX transform with nnx objects takes five steps:

1. **split the call** (:func:`split_call`): static arguments (part of a cache
   key), *graph* arguments (those holding Pytrees or Variables) and *plain*
   arguments (everything else, handed to JAX untouched);
2. **flatten** the graph arguments jointly (``nnx.FlattenCache``), so sharing
   between arguments is kept, into a GraphDef and leaves (:class:`Prepared`);
3. **enter**: inside the JAX function, build fresh objects around the traced
   leaves (:func:`enter_raw` keeps ref/hijax storage, which ``jax.jit``
   carries itself; :func:`enter_values` makes plain Variables, which every
   JAX transform accepts);
4. **exit** (:func:`collect_updates`, :func:`export_output`): find the
   Variables whose value changed and the raw array attributes replaced (an
   identity check per leaf), check that no structure changed, and flatten the
   output so that returned inputs become references;
5. **apply**, outside, after the JAX call returned (so an exception leaves
   nothing half-written): write the changed values into the caller's
   Variables and array attributes (:func:`write_back`) and rebuild the output
   around the caller's own objects (:func:`import_output`).

:class:`~nnx.transforms._crossing.Crossing` (``_crossing.py``) is the driver that runs
this sequence for one call of any transform that hands JAX plain values; ``nnx.jit``
runs the same steps inline over stored values (decision 0012).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.core  # Tracer; jax does not list `core` among its attributes for type checkers
import numpy as np
from jax.extend.core import get_opaque_trace_state

from nnx.core import (
    AliasingError,
    Dict,
    GraphMode,
    List,
    Pytree,
    StorageMode,
    StructureError,
    Variable,
    find_duplicates,
    flatten,
    graph_settings,
    move_into,
    new_ref,
    resolve_graph_mode,
    storage_mode,
    unflatten,
    variable_from_stored,
    variable_record,
    variable_trace,
)

# boundary step 1 lives in _calls.py; its names are re-exported for the transforms
from nnx.transforms._calls import GRAPH as GRAPH
from nnx.transforms._calls import PLAIN_ARG as PLAIN_ARG
from nnx.transforms._calls import Static as Static
from nnx.transforms._calls import assemble as assemble
from nnx.transforms._calls import graph_arg_index as graph_arg_index
from nnx.transforms._calls import graph_arg_names as graph_arg_names
from nnx.transforms._calls import is_graph_arg as is_graph_arg
from nnx.transforms._calls import plain_arg_names as plain_arg_names
from nnx.transforms._calls import split_call as split_call
from nnx.transforms._errors import EscapeError

PLAIN, REF, HIJAX = StorageMode.PLAIN, StorageMode.REF, StorageMode.HIJAX
_record = variable_record

_get_raw = Variable.get_raw_value
_set_raw = Variable.set_raw_value
_TOP = get_opaque_trace_state(convention="nnx")


def at_top_level() -> bool:
    """True outside every JAX trace (eager Python)."""
    return get_opaque_trace_state(convention="nnx") == _TOP


# The same test without building an OpaqueTraceState: whether the current trace is the
# eval trace `_TOP` refers to (read through JAX's private trace context; ~0.5 µs less on
# every nnx.jit call). Where JAX does not have it, the public form above stays.
try:
    from jax._src.core import trace_ctx as _trace_ctx

    _TOP_TRACE = _trace_ctx.trace
    if _TOP._trace_ref() is _TOP_TRACE:  # pragma: no branch

        def at_top_level() -> bool:
            """True outside every JAX trace (eager Python)."""
            return _trace_ctx.trace is _TOP_TRACE
except (ImportError, AttributeError):  # pragma: no cover
    pass


# -- 0. the mode: graph mode (default), graph mode without graph updates, tree mode -------
GRAPH_MODE = GraphMode(True, True)


class ModeArgs:
    """A transform's ``graph=`` / ``graph_updates=`` arguments; :meth:`mode` per call.

    Reading the mode costs one thread-local read when both are None (the
    settings of :func:`nnx.set_graph_mode` / :func:`nnx.set_graph_updates` are
    read at each call, so a ``with`` block around a call applies to it).
    """

    __slots__ = ("graph", "graph_updates", "fixed")

    def __init__(self, graph: bool | None = None, graph_updates: bool | None = None):
        self.graph = graph
        self.graph_updates = graph_updates
        self.fixed = (
            GraphMode(graph, graph_updates)
            if graph is not None and graph_updates is not None
            else None
        )

    def mode(self) -> GraphMode:
        if self.fixed is not None:
            return self.fixed
        if self.graph is None and self.graph_updates is None:
            return graph_settings()
        return resolve_graph_mode(self.graph, self.graph_updates)


def check_tree(prep: Prepared | None, graph: tuple, fun, layout, what: str) -> None:
    """Tree mode: every object of the arguments reachable once (checked once per FlatGraph)."""
    if prep is None or "tree-ok" in prep.extra:
        return
    # graph_ref attributes (an optimizer's model) are static in the pytree view
    dups = find_duplicates(graph, graph_refs=False)
    if dups:
        names = graph_arg_names(fun, layout) if layout is not None else None
        where = f"{what}({getattr(fun, '__name__', 'f')})"
        first, second = dups[0][0], dups[0][1]
        node = graph[first[0]]
        for k in first[1:]:
            node = getattr(node, k) if isinstance(node, Pytree) else node[k]
        raise AliasingError(
            f"{where}: graph=False (tree mode) needs the arguments to be trees, but the "
            f"same {type(node).__name__} is reachable at {_path_str(first, names)} and at "
            f"{_path_str(second, names)}. Pass graph=True (or use nnx.set_graph_mode(True)) "
            "to keep the sharing, or pass the object once."
        )
    prep.extra["tree-ok"] = True


class _Exit:
    """What :func:`collect_updates` returns beside the updates: leaves and nodes (as
    they entered), and the :class:`Patch` when the structure changed."""

    __slots__ = ("leaves", "nodes", "patch")

    def __init__(self, leaves, nodes, patch=None):
        self.leaves = leaves
        self.nodes = nodes
        self.patch = patch


class Patch:
    """Inside, after the function changed the structure of its graph arguments (an
    attribute added, deleted or swapped, a new submodule, a new shared reference): what
    the new structure needs to leave the transform (Flax NNX's graph updates).

    The arguments' objects leave like an output (:func:`export_output`, joined with the
    function's output so new objects shared by both stay one object), except that the
    Variables that entered and kept their value and metadata are references to the
    caller's Variables. Outside, :func:`import_output` rebuilds them and moves each
    object that entered into the caller's object (``nnx.move_into``).

    Attributes:
      objs: the graph arguments inside (a tuple).
      entry: the FlatGraph of the objects as they entered (``unflatten(return_flat=True)``).
      refs: the Variables that entered unchanged; ``ref_index`` numbers them.
      pos: ``{id(inner object that entered): its index in the caller's FlatGraph}``.
    """

    __slots__ = ("objs", "entry", "refs", "ref_index", "pos")

    def __init__(self, objs, entry, leaves_in: list, outer_leaves: list):
        self.objs = tuple(objs)
        self.entry = entry
        refs = []
        for x, old, outer in zip(entry.leaves, leaves_in, outer_leaves):
            if (
                isinstance(x, Variable)
                and x.get_raw_value() is old
                and _record(x).metadata == _record(outer).metadata
            ):
                refs.append(x)
        self.refs = refs
        self.ref_index = {id(x): r for r, x in enumerate(refs)}
        self.pos = {id(n): k for k, n in enumerate(entry.nodes)}


class PatchSpec(NamedTuple):
    """Static part of a :class:`Patch` once exported (hashable, crosses ``jax.jit``).

    Attributes:
      refs: for each reference ``r`` of the GraphDef, the caller's node index.
      moves: ``(j, k)``: node ``j`` of the rebuilt graph moves into the caller's node ``k``.
      n_leaves: how many of the output's leaves belong to the arguments' new structure
        (they travel beside the output: :func:`export_output`'s third value).
      sources: per such leaf, the caller's leaf index it was (``-1``: new) and the graph
        argument it belongs to (vmap puts new leaves on that argument's axis).
      paths: per such leaf, its path ``(graph argument, *path)`` (for error messages).
    """

    refs: tuple
    moves: tuple
    n_leaves: int
    sources: tuple
    paths: tuple = ()


# -- 1. splitting a call: _calls.py (static / graph / plain arguments, their names) ----


# -- 2. the flat view of the graph arguments -------------------------------------------
class Prepared:
    """What the call path needs about one ``FlatGraph``, computed once per FlatGraph.

    Attributes:
      flat: the FlatGraph (joint flattening of the graph arguments).
      leaves: its leaves (Variables and raw arrays).
      all_vars: every leaf is a Variable (the common case: fast paths).
      slots: per leaf, ``(Variable class, plain VarAux)`` or None for raw arrays;
        static, used to build plain Variables inside (:func:`enter_values`).
      plain_idx: indices of plain-mode, mutable Variables (the only ones
        ``jax.jit`` needs to return).
    """

    __slots__ = ("flat", "leaves", "all_vars", "all_plain", "slots", "_owners", "_paths", "extra")

    def __init__(self, flat):
        self.flat = flat
        leaves = self.leaves = flat.leaves
        self.all_vars = all(isinstance(x, Variable) for x in leaves)
        self.all_plain = all(
            not isinstance(x, Variable) or _record(x).mode == PLAIN for x in leaves
        )
        self.slots = tuple(
            (type(x), _plain_aux(_record(x))) if isinstance(x, Variable) else None for x in leaves
        )
        self._owners = None
        self._paths = None
        self.extra: dict = {}

    def raw(self) -> list:
        """Stored values (arrays, Ref trees, hijax cells): what ``jax.jit`` takes."""
        if self.all_vars:
            return list(map(_get_raw, self.leaves))
        return [x.get_raw_value() if isinstance(x, Variable) else x for x in self.leaves]

    def values(self) -> list:
        """Plain values (refs and cells read): what every JAX transform takes."""
        return [x.get_value() if isinstance(x, Variable) else x for x in self.leaves]

    @property
    def paths(self) -> tuple:
        """Leaf paths; the first component is the graph argument's index."""
        if self._paths is None:
            self._paths = self.flat.graphdef.paths
        return self._paths

    def owners(self) -> list[int]:
        """For each leaf, the index of the graph argument that reaches it first."""
        if self._owners is None:
            self._owners = [p[0] for p in self.paths]
        return self._owners


def _plain_aux(aux):
    if aux.mode == PLAIN:
        return aux
    return aux.replace(mode=PLAIN, mutable=True)


class PrepareCache:
    """A ``FlattenCache`` plus the :class:`Prepared` of its last FlatGraph."""

    __slots__ = ("cache", "_flat", "_prep")

    def __init__(self):
        from nnx.core import FlattenCache

        self.cache = FlattenCache()
        self._flat = None
        self._prep: Prepared | None = None

    def __call__(self, graph_nodes: tuple) -> Prepared:
        flat = self.cache.flatten(graph_nodes)
        if flat is not self._flat:
            self._prep = Prepared(flat)
            self._flat = flat
        return self._prep  # type: ignore[return-value]


# -- 3. entering: objects around traced leaves ----------------------------------------
def enter_raw(graphdef, raw_leaves: list):
    """Objects around stored values (jit): ref and hijax storage stays as it is.

    Returns ``(objects, entry)``: ``entry`` the FlatGraph of what was built (the
    objects that entered, for :func:`collect_updates`).
    """
    return unflatten(graphdef, raw_leaves, return_flat=True)


def enter_values(prep: Prepared, values: list):
    """Objects around plain values: every Variable inside is a plain Variable.

    Returns ``(objects, graphdef, entry)``: the GraphDef of the objects as
    built (it records plain storage where the caller's Variables had refs or
    cells), which :func:`collect_updates` compares against, and the FlatGraph
    of what was built.
    """
    trace = get_opaque_trace_state(convention="nnx")
    leaves = [
        v if s is None else variable_from_stored(s[0], v, s[1], trace)
        for s, v in zip(prep.slots, values)
    ]
    objs, entry = unflatten(prep.flat.graphdef, leaves, return_flat=True)
    gd = prep.flat.graphdef if prep.all_plain else flatten(objs).graphdef
    return objs, gd, entry


# -- 4. exiting: what changed, and the output -----------------------------------------
def collect_updates(
    objs,
    leaves_in: list,
    graphdef_in,
    *,
    where: str,
    names: list[str] | None = None,
    values: bool = False,
    mode: GraphMode = GRAPH_MODE,
    entry=None,
    patch_from: list | None = None,
) -> tuple[list[int], list, Any]:
    """Compare the inner objects with what entered; return ``(indices, new values, flat)``.

    A Variable counts as updated when its stored value is no longer the object
    that entered (an identity check, no array comparison). ``values=True``
    returns plain values (``get_value``); otherwise stored values, and only
    for plain-mode Variables (JAX carries ref and hijax writes itself). A raw
    array attribute replaced inside (``self.count += 1``) is state too (Flax
    NNX's rule): its new value comes out and :func:`write_back` assigns it at
    its path in the caller's objects. This is the one place every transform
    finds them.

    A changed structure (``entry``: the FlatGraph of the objects as they
    entered, from :func:`enter_values` / :func:`enter_raw`): the Variables that
    entered give their new values as usual, and

    - in graph mode with graph updates, for a transform that can carry it
      (``patch_from``: the caller's leaves), the new structure leaves too: the
      result's ``patch`` (a :class:`Patch`) goes to :func:`export_output`;
      for the other transforms it is a StructureError that names the path;
    - otherwise the rest of the change stays inside. In tree mode the nodes
      returned are empty, so objects returned are new objects.
    """
    inner = flatten(objs)
    if inner.graphdef != graphdef_in or (entry is not None and _permuted(inner, entry)):
        if entry is None or (mode.graph_updates and mode.graph and patch_from is None):
            raise structure_changed(graphdef_in, inner.graphdef, where, names)
        idx, new = [], []
        for i, (x, old) in enumerate(zip(entry.leaves, leaves_in)):
            if isinstance(x, Variable):
                _variable_update(i, x, old, values, idx, new)
        if mode.graph_updates and mode.graph:
            assert patch_from is not None
            patch = Patch(objs, entry, leaves_in, patch_from)
            return idx, new, _Exit(entry.leaves, entry.nodes, patch)
        return idx, new, _Exit(entry.leaves, entry.nodes if mode.graph else ())
    idx, new = [], []
    for i, (x, old) in enumerate(zip(inner.leaves, leaves_in)):
        if isinstance(x, Variable):
            _variable_update(i, x, old, values, idx, new)
        elif x is not old:
            # a raw array attribute replaced inside (`self.count += 1`): a state leaf
            # whose new value comes out and is assigned at its path outside
            idx.append(i)
            new.append(x)
    if not mode.graph:
        return idx, new, _Exit(inner.leaves, ())
    return idx, new, inner


def _permuted(inner, entry) -> bool:
    """Whether Variables that entered now sit at other leaf slots (``m.a, m.b = m.b, m.a``:
    the GraphDef is the same, the objects at its slots are not). A new Variable put in
    an entered one's place is not: its value is that Variable's new value, as before."""
    entered = None
    for x, y in zip(inner.leaves, entry.leaves):
        if x is not y and isinstance(x, Variable):
            if entered is None:
                entered = {id(v) for v in entry.leaves if isinstance(v, Variable)}
            if id(x) in entered:
                return True
    return False


def _variable_update(i: int, x: Variable, old, values: bool, idx: list, new: list) -> None:
    """Record Variable ``i``'s new value (or, for ``values=False``, its plain array) when
    the function stored a new one."""
    raw = x.get_raw_value()
    if raw is old:
        return
    if values:
        idx.append(i)
        new.append(x.get_value())
    elif _record(x).mode == PLAIN:
        idx.append(i)
        new.append(raw)


def structure_changed(before, after, where: str, names) -> StructureError:
    old, new = set(before.paths), set(after.paths)
    added = sorted(new - old, key=repr)
    removed = sorted(old - new, key=repr)
    if added:
        what = f"a new Variable or array appeared at {_path_str(added[0], names)}"
    elif removed:
        what = f"the Variable or array at {_path_str(removed[0], names)} was removed"
    else:
        what = (
            "a static attribute, a Variable's kind or its metadata changed (or a "
            "submodule was replaced)"
        )
    return StructureError(
        f"{where}: the structure of an argument changed inside the transform: {what}. "
        "This transform keeps one structure for its arguments (a loop's carry, a "
        "linearization), so only Variable values propagate out of it. Do model surgery "
        "(adding, removing or replacing attributes) outside it (or inside nnx.jit, "
        "nnx.grad, nnx.vmap, nnx.remat or every branch of nnx.cond, which carry it out), "
        "or create the new objects inside and return them."
    )


def _path_str(path: tuple, names) -> str:
    if not path:
        return "'<root>'"
    head = path[0]
    if names is not None and isinstance(head, int) and head < len(names):
        head = names[head]
    return repr("/".join(str(p) for p in (head, *path[1:])))


class NodeLeaves:
    """Pytree node standing where an output held nnx objects: their leaves.

    Inside the transform (as :func:`export_output` makes it) it also knows each
    leaf's path under its object and the Variable (or array) the leaf came
    from, so that an ``out_axes`` shaped like the object (:func:`nnx.prefix`)
    can give each leaf its axis; both are None once it crossed JAX.
    """

    __slots__ = ("leaves", "paths", "sources")

    def __init__(self, leaves, paths=None, sources=None):
        self.leaves = leaves
        self.paths = paths
        self.sources = sources


jax.tree_util.register_pytree_node(
    NodeLeaves, lambda n: (n.leaves, None), lambda _, c: NodeLeaves(list(c))
)


class OutSpec:
    """Static description of an output that holds nnx objects (hashable).

    ``patch``: a :class:`PatchSpec` when the graph arguments' new structure leaves
    with the output (the GraphDef then describes ``(arguments, *output objects)``).
    """

    __slots__ = ("graphdef", "patch", "_hash")

    def __init__(self, graphdef, patch: PatchSpec | None = None):
        self.graphdef = graphdef
        self.patch = patch
        self._hash = hash((graphdef, patch))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (
            type(other) is OutSpec and self.graphdef == other.graphdef and self.patch == other.patch
        )


def call_without_cells(fun, args, kwargs, *, refs: bool = False):
    """Call ``fun`` with hijax defaults turned off; return ``(out, mode turned off)``.

    JAX's batching and loop primitives cannot create hijax cells, so inside
    vmap/scan/control flow new Variables are made plain, and
    :func:`export_output` gives them back hijax storage outside (the mode
    returned: ``HIJAX``, or None when nothing was turned off).

    ``refs=True`` (vmap) turns ref defaults off too: a ``jax.Ref`` created
    inside a vmap is batched whatever its value, so a new ref Variable could not
    leave unmapped (out_axes None); plain inside, it gets ``REF`` back outside.
    """
    from nnx.core import var_defaults

    d = var_defaults()
    if d.hijax:
        with var_defaults(hijax=False):
            return fun(*args, **kwargs), HIJAX
    if refs and d.ref:
        with var_defaults(ref=False):
            return fun(*args, **kwargs), REF
    return fun(*args, **kwargs), None


def export_output(
    out, inner_nodes: list, *, where: str, new_mode: StorageMode | None = None, patch=None
):
    """Replace the nnx objects in ``out`` by :class:`NodeLeaves` of their values.

    Returns ``(converted, spec, patch_leaves)``; ``spec`` is None when ``out``
    holds no nnx object and there is no patch (then ``converted is out``).
    Inputs returned (``inner_nodes``) become references that
    :func:`import_output` resolves to the caller's objects; new Variables leave
    as their values, and the mode their VarAux records is restored outside.

    ``patch`` (a :class:`Patch`, the structure of the arguments changed): the
    arguments leave jointly with the output, their leaves as ``patch_leaves``
    (empty without a patch), which the transform hands out beside the output.
    """
    tops, treedef = jax.tree.flatten(out, is_leaf=_has_identity)
    gpos = [i for i, t in enumerate(tops) if isinstance(t, _IDENTITY)]
    if not gpos and patch is None:
        return out, None, []
    nodes = tuple(tops[i] for i in gpos)
    if patch is None:
        roots: tuple = nodes
        ref_index = {id(n): i for i, n in enumerate(inner_nodes)}
        index_ref = list(inner_nodes)
        entered: dict = {}
    else:
        roots = (patch.objs, *nodes)
        ref_index = patch.ref_index
        index_ref = list(patch.refs)
        entered = patch.pos
    flat = flatten(roots, ref_index=ref_index, with_paths=True)
    trace = get_opaque_trace_state(convention="nnx")
    values = []
    for x in flat.leaves:
        if isinstance(x, Variable):
            if id(x) not in entered:
                _check_escape(x, trace, where)
            values.append(x.get_value())
        else:
            values.append(x)
    graphdef = flat.graphdef
    if new_mode is not None:  # new plain Variables were made with that mode turned off
        swapped = [
            variable_from_stored(type(x), val, _record(x).replace(mode=new_mode), None)
            if isinstance(x, Variable)
            and id(x) not in entered
            and _record(x).mode == PLAIN
            and _record(x).mutable
            else x
            for x, val in zip(flat.leaves, values)
        ]
        rebuilt = unflatten(graphdef, swapped, index_ref=index_ref)
        graphdef = flatten(rebuilt, ref_index=ref_index).graphdef
    # attribute the leaves to the top-level objects that reach them first: a leaf's
    # path starts with that object's index in `roots`
    paths = flat.paths or []
    counts = [0] * len(roots)
    for p in paths:
        counts[p[0]] += 1
    it = iter(values)
    patch_spec = None
    patch_leaves: list = []
    if patch is not None:
        n_patch = counts.pop(0)
        patch_leaves = [next(it) for _ in range(n_patch)]
        patch_spec = _patch_spec(patch, flat, paths[:n_patch])
    at = len(patch_leaves)
    for i, c in zip(gpos, counts):
        tops[i] = NodeLeaves(
            [next(it) for _ in range(c)],
            [p[1:] for p in paths[at : at + c]],
            flat.leaves[at : at + c],
        )
        at += c
    return jax.tree.unflatten(treedef, tops), OutSpec(graphdef, patch_spec), patch_leaves


def _patch_spec(patch: Patch, flat, paths: list) -> PatchSpec:
    """``paths``: those of the arguments' leaves, ``(0, argument, ...)``."""
    pos = patch.pos
    refs = tuple(pos[id(x)] for x in patch.refs)
    r = len(refs)
    # flat.nodes lists the nodes met for the first time: numbers r, r + 1, ...
    moves = tuple((r + j, pos[id(n)]) for j, n in enumerate(flat.nodes) if id(n) in pos)
    # which leaf of the caller each leaf of the new structure was, and its argument
    entry_pos = {id(x): i for i, x in enumerate(patch.entry.leaves)}
    sources = tuple((entry_pos.get(id(x), -1), p[1]) for x, p in zip(flat.leaves, paths))
    return PatchSpec(refs, moves, len(paths), sources, tuple(tuple(p[1:]) for p in paths))


# objects with identity in a graph: an output holding one gets the caller's object back
_IDENTITY = (Pytree, Variable, List, Dict)


def _has_identity(x) -> bool:
    return isinstance(x, _IDENTITY)


def _check_escape(v: Variable, trace, where: str) -> None:
    raw = v.get_raw_value()
    if storage_mode(v) == PLAIN:
        created_here = variable_trace(v) == trace
    else:
        created_here = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(raw))
    if not created_here:
        raise EscapeError(
            f"{where}: the function returned a {type(v).__name__} that was created outside "
            "the transform and not passed to it as an argument. Pass the object that "
            "holds it as an argument (then it comes back as the same object), or return "
            "its value (`v[...]`) instead."
        )


def import_output(
    converted, spec: OutSpec | None, index_ref: list | None, patch_leaves: list | None = None
):
    """Inverse of :func:`export_output`, outside the transform.

    With a patch (``spec.patch``; ``index_ref``: the caller's nodes, numbered
    as the FlatGraph of the arguments numbers them), the arguments' new
    structure is rebuilt from ``patch_leaves`` and moved into the caller's
    objects (``nnx.move_into``) before the output is returned.
    """
    if spec is None:
        return converted
    tops, treedef = jax.tree.flatten(converted, is_leaf=lambda x: isinstance(x, NodeLeaves))
    gpos = [i for i, t in enumerate(tops) if isinstance(t, NodeLeaves)]
    leaves = [x for i in gpos for x in tops[i].leaves]
    patch = spec.patch
    if patch is None:
        nodes = unflatten(spec.graphdef, leaves, index_ref=index_ref)
    else:
        assert index_ref is not None and patch_leaves is not None
        outer = index_ref
        built, bflat = unflatten(
            spec.graphdef,
            [*patch_leaves, *leaves],
            index_ref=[outer[k] for k in patch.refs],
            return_flat=True,
        )
        targets = dict(patch.moves)
        fresh = bflat.nodes
        r = len(patch.refs)
        moved = move_into(
            [(fresh[j], outer[k]) for j, k in patch.moves],
            [n for j, n in enumerate(fresh) if j >= r and j not in targets],
        )
        nodes = [moved.get(id(n), n) for n in built[1:]]
    for i, n in zip(gpos, nodes):
        tops[i] = n
    return jax.tree.unflatten(treedef, tops)


# -- 5. applying updates outside -------------------------------------------------------
def write_back(prep: Prepared, graph: tuple, idx, new, *, values: bool) -> None:
    """Write changed values into the caller's objects (after the JAX call returned).

    ``idx``/``new``: the leaf indices of ``prep`` and their new values (from
    :func:`collect_updates`); ``graph``: the graph arguments. Variables get
    their new value; raw array leaves are assigned at their paths in the
    caller's objects, after the Variables. Every target is resolved first, so
    an array that cannot be assigned (held by a tuple) raises before anything
    is written.
    """
    if not idx:
        return
    leaves = prep.leaves
    if not prep.all_vars:
        arrays = [(i, x) for i, x in zip(idx, new) if not isinstance(leaves[i], Variable)]
        if arrays:
            targets = [(_owner_at(graph, prep.paths[i]), i, x) for i, x in arrays]
            keep = [(i, x) for i, x in zip(idx, new) if isinstance(leaves[i], Variable)]
            _write_variables(leaves, [i for i, _ in keep], [x for _, x in keep], values)
            for (node, last), i, x in targets:
                if isinstance(node, Pytree):
                    setattr(node, last, x)
                else:
                    node[last] = x
                leaves[i] = x
            return
    _write_variables(leaves, idx, new, values)


def _write_variables(leaves: list, idx, new, values: bool) -> None:
    if not values and at_top_level():
        for i, x in zip(idx, new):
            _set_raw(leaves[i], x)
        return
    top = None
    for i, x in zip(idx, new):
        v = leaves[i]
        if storage_mode(v) == REF:
            if top is None:
                top = at_top_level()
            if _layout_changed(v, x, top):
                # a ref keeps its shape and device: a value that changed them (a
                # vmapped stack, a result of shard_map) gets a new ref, as a plain
                # Variable would get the new array
                v.set_raw_value(new_ref(x))
                continue
        v.set_value(x)


def _owner_at(root, path: tuple):
    """``(node, key)`` such that ``node.<key>`` / ``node[key]`` holds the leaf at ``path``."""
    node = root
    for k in path[:-1]:
        node = getattr(node, k) if isinstance(node, Pytree) else node[k]
    if not isinstance(node, (Pytree, list, dict)):
        raise StructureError(
            f"cannot write the new value of the array at {_path_str(path, None)}: it is held "
            f"by a {type(node).__name__}, which cannot be changed in place. Hold it in a "
            "Pytree attribute, a list or a dict, or in an nnx.Variable. Nothing was written."
        )
    return node, path[-1]


def _layout_changed(v: Variable, new, top: bool) -> bool:
    refs = jax.tree.leaves(v.get_raw_value(), is_leaf=lambda r: isinstance(r, jax.Ref))
    vals = jax.tree.leaves(new)
    if len(refs) != len(vals):
        return True
    for r, x in zip(refs, vals):
        if r.shape != np.shape(x):
            return True
        if top and isinstance(x, jax.Array) and r.sharding != x.sharding:
            return True
    return False
