"""The boundary's driver: :class:`Crossing` runs the whole sequence of :mod:`._boundary`
for one call of a transform that hands JAX plain values, and :func:`lift` wraps a
JAX transform of a function (remat, checkify, eval_shape, shard_map) in it.

The steps themselves (split, flatten, enter, collect, export, write back, import) are
in :mod:`nnx.transforms._boundary`; decision 0012 records why every transform but
``nnx.jit`` goes through this one driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnx.core import GraphMode, StorageMode
from nnx.transforms._boundary import (
    ModeArgs,
    OutSpec,
    PrepareCache,
    call_without_cells,
    check_tree,
    collect_updates,
    enter_values,
    export_output,
    import_output,
    write_back,
)
from nnx.transforms._calls import assemble, graph_arg_names, split_call


# -- 6. the driver: the whole sequence for transforms that take plain values ---------------
class Crossing:
    """One call of a transform that hands JAX plain values: the boundary's whole sequence.

    Outside, before the JAX call: split the call (:func:`split_call`), flatten the
    graph arguments jointly (:class:`PrepareCache`: sharing kept across and within
    arguments), check tree mode, read the plain values (:meth:`values`). Inside the
    JAX function: :meth:`run` builds plain Variables around the traced leaves,
    calls the function under the cell rule, collects what changed (Variables and
    raw array attributes, :func:`collect_updates`) and flattens the output
    (:func:`export_output`); the static facts (changed indices, output spec) stay
    on the Crossing, the transform's side channel. Outside, after JAX returned:
    :meth:`finish` writes the changes into the caller's objects and rebuilds the
    output. A transform supplies its JAX call and its per-leaf specs around
    these; transforms that need the steps apart (grad: the loss is not exported)
    use :meth:`enter` and :meth:`exit`.

    Attributes:
      fun: the user function.
      where: ``nnx.remat(f)``-style name for messages.
      mode: the :class:`nnx.GraphMode` of the call.
      layout: the call's layout (:func:`split_call`).
      graph: the graph arguments.
      plain: the plain positional arguments.
      plain_kw: the plain keyword arguments.
      names: human names of the graph arguments (empty: by position).
      prep: the :class:`Prepared` of the graph arguments (None without any).
      idx: after the JAX call: indices of the leaves the function changed.
      spec: after the JAX call: the output's :class:`OutSpec` (None: no nnx object).
      patches: the transform carries a changed structure of the arguments out (Flax
        NNX's graph updates: :class:`Patch`); set by transforms whose output
        structure is free (jit, grad, vmap, remat, ...). Without it a changed
        structure is a StructureError naming the path.
    """

    __slots__ = (
        "fun", "where", "mode", "layout", "graph", "plain", "plain_kw", "names", "prep",
        "idx", "spec", "patches",
    )  # fmt: skip

    def __init__(
        self,
        fun: Callable,
        args: tuple,
        kwargs: dict,
        *,
        where: str,
        mode: GraphMode | None = None,
        prep_cache: PrepareCache | None = None,
        static_argnums=(),
        what: str | None = None,
        arg_names: bool = True,
        patches: bool = False,
    ):
        self.fun = fun
        self.patches = patches
        self.where = where
        self.mode = ModeArgs().mode() if mode is None else mode
        self.layout, self.graph, self.plain, self.plain_kw = split_call(
            args, kwargs, static_argnums
        )
        # messages name the graph arguments after fun's parameters (arg_names=False:
        # by position, for a loop value whose parts are not parameters)
        self.names: list[str] = graph_arg_names(fun, self.layout) if arg_names else []
        prep = (prep_cache or PrepareCache())(self.graph) if self.graph else None
        if prep is not None and not self.mode.graph:
            layout = self.layout if arg_names else None
            check_tree(prep, self.graph, fun, layout, what or where.split("(", 1)[0])
        self.prep = prep
        self.idx: list = []
        self.spec: OutSpec | None = None

    def values(self) -> list:
        """The leaves' plain values: what the JAX call takes for the graph arguments."""
        return self.prep.values() if self.prep is not None else []

    def enter(self, leaves: list, plain, plain_kw) -> tuple[list, dict, tuple]:
        """Inside: ``(args, kwargs, state)``, the call rebuilt around traced leaves."""
        prep = self.prep
        objs, gd, entry = enter_values(prep, leaves) if prep is not None else ((), None, None)
        a, kw = assemble(self.layout, objs, plain, plain_kw)
        return a, kw, (objs, gd, leaves, entry)

    def changes(self, state) -> tuple[list, list, Any]:
        """Inside, after the function: ``(indices, new values, inner flattening or None)``."""
        objs, gd, leaves, entry = state
        if gd is None:
            return [], [], None
        patch_from = self.prep.leaves if self.patches and self.prep is not None else None
        return collect_updates(
            objs, leaves, gd, where=self.where, names=self.names, values=True,
            mode=self.mode, entry=entry, patch_from=patch_from,
        )  # fmt: skip

    def export(self, out, inner, *, new_mode: StorageMode | None = None):
        """Inside: ``out`` flattened with the inputs as references (records the spec)."""
        out, patch_leaves = self.export_patched(out, inner, new_mode=new_mode)
        assert not patch_leaves  # only transforms with `patches` get a Patch
        return out

    def export_patched(
        self, out, inner, *, new_mode: StorageMode | None = None
    ) -> tuple[Any, list]:
        """:meth:`export`, also returning the leaves of the arguments' new structure
        (empty unless the function changed it: :class:`Patch`)."""
        nodes = inner.nodes if inner is not None else []
        patch = getattr(inner, "patch", None)
        out, self.spec, patch_leaves = export_output(
            out, nodes, where=self.where, new_mode=new_mode, patch=patch
        )
        return out, patch_leaves

    def exit(self, state, out, *, new_mode: StorageMode | None = None) -> tuple[list, list, Any]:
        """Inside: collect the changes, export ``out``; ``(indices, new values, out)``.

        The leaves of a changed structure (:class:`Patch`) follow the new values
        in the list; :meth:`finish` takes them apart again.
        """
        idx, new, inner = self.changes(state)
        self.idx = idx
        out, patch_leaves = self.export_patched(out, inner, new_mode=new_mode)
        return idx, new + patch_leaves, out

    def run(
        self,
        leaves: list,
        plain,
        plain_kw,
        *,
        fun: Callable | None = None,
        post_out: Callable | None = None,
        restore_modes: bool = True,
    ) -> tuple[list, list, Any]:
        """Inside: enter, call ``fun`` (the user function) under the cell rule, exit.

        ``post_out`` maps the function's output before it is exported;
        ``restore_modes=False`` leaves new Variables returned plain (abstract
        values, eval_shape).
        """
        a, kw, state = self.enter(leaves, plain, plain_kw)
        out, new_mode = call_without_cells(fun or self.fun, a, kw)  # temporaries plain
        if post_out is not None:
            out = post_out(out)
        return self.exit(state, out, new_mode=new_mode if restore_modes else None)

    def finish(self, idx, new, out, *, write: bool = True, patch_leaves: list | None = None):
        """Outside, after JAX returned: write the changes back, rebuild the output (and
        move a changed structure into the caller's objects, :class:`Patch`)."""
        prep = self.prep
        if prep is None:
            return import_output(out, self.spec, None)
        spec = self.spec
        if patch_leaves is None and spec is not None and spec.patch is not None:
            new, patch_leaves = new[: len(idx)], new[len(idx) :]
        if write:
            write_back(prep, self.graph, idx, new, values=True)
        return import_output(out, spec, prep.flat.nodes, patch_leaves)


def lift(
    transform: Callable[..., Callable],
    fun: Callable,
    args: tuple,
    kwargs: dict,
    *,
    where: str,
    static_argnums=(),
    all_updates: bool = False,
    write: bool = True,
    prep_cache: PrepareCache | None = None,
    post_out: Callable | None = None,
    in_spec: Callable | None = None,
    out_spec: Callable | None = None,
    restore_modes: bool = True,
    mode: Any = None,
):
    """Call ``transform(inner)(values, plain, plain_kw)`` through a :class:`Crossing`.

    ``all_updates=True`` returns a value (or None) for every leaf, for
    transforms that need the output structure before tracing (shard_map).
    ``in_spec``/``out_spec`` build per-leaf specs for such transforms.
    ``write=False`` leaves the arguments as they are (eval_shape: the new
    values are abstract). ``mode``: the :class:`nnx.GraphMode` (None: the
    current settings).
    """
    c = Crossing(
        fun, args, kwargs, where=where, mode=mode, prep_cache=prep_cache,
        static_argnums=static_argnums, patches=write and not all_updates,
    )  # fmt: skip

    def inner(leaves, plain, plain_kw):
        idx, new, out = c.run(
            leaves, plain, plain_kw, post_out=post_out, restore_modes=restore_modes
        )
        if all_updates:
            upd: list = [None] * len(leaves)
            for i, v in zip(idx, new):
                upd[i] = v
            return upd, out
        return new, out

    if in_spec is None:
        transformed = transform(inner)
    else:
        assert out_spec is not None  # in_spec and out_spec are given together
        transformed = transform(inner, in_spec(c.prep, c.layout, c.graph), out_spec(c.prep))
    new, out = transformed(c.values(), c.plain, c.plain_kw)
    if all_updates:
        new = [new[i] for i in c.idx]
    return c.finish(c.idx, new, out, write=write)
