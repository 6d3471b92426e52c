"""``nnx.vmap`` (with :class:`StateAxes` per kind of state) and ``nnx.pmap``; ``nnx.split_rngs``
is in ``_split_rngs.py``."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import jax
import jax.numpy as jnp

from nnx.core import (
    Pytree,
    StructureError,
    TraceContextError,
    Variable,
    data,
    flatten,
    is_data,
    static,
)
from nnx.transforms._axes import (
    OutPrefix,
    PrefixAxes,
    StateAxes,
    check_plain_sizes,
    check_returned_axes,
    check_sizes,
    leaf_axes,
    per_arg_axes,
    size_source,
)
from nnx.transforms._boundary import (
    ModeArgs,
    PrepareCache,
    call_without_cells,
)
from nnx.transforms._calls import wrap
from nnx.transforms._crossing import Crossing
from nnx.transforms._errors import AxisError
from nnx.transforms._jaxpr import PARTITION_NAME
from nnx.transforms._metadata import remove_mapped_axis, restore_and_add_axis

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


class VmapWrapped(Generic[P, R]):
    """A function wrapped by :func:`vmap`."""

    _what = "nnx.vmap"

    def __init__(
        self,
        fun: Callable[P, R],
        *,
        in_axes,
        out_axes,
        axis_name,
        axis_size,
        spmd_axis_name,
        transform_metadata=None,
        graph=None,
        graph_updates=None,
    ):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self._mode = ModeArgs(graph, graph_updates)
        self.transform_metadata = dict(transform_metadata or {})
        self._fns: dict = {}
        self.in_axes = in_axes
        self.out_axes = out_axes
        self.axis_name = axis_name
        self.axis_size = axis_size
        self.spmd_axis_name = spmd_axis_name
        self._prep = PrepareCache()
        # out_axes shaped like returned objects (nnx.prefix) or not: what jax.vmap gets
        self._out_prefix = OutPrefix(out_axes) if OutPrefix.wanted(out_axes) else None
        jax_out = self._out_prefix.jax_axes if self._out_prefix is not None else out_axes
        # (unmapped leaves first: JAX's error for a batched one then names its true index)
        self._jax_out_axes = (jax_out, 0, 0)  # output, patch leaves, mapped leaves

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> VmapWrapped[P, R]: ...
    @overload
    def __get__(
        self: VmapWrapped[Concatenate[Any, P2], R], obj: object, objtype: type | None = None
    ) -> Callable[P2, R]: ...
    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fun = self.fun
        where = f"{self._what}({getattr(fun, '__name__', 'f')})"
        mode = self._mode.mode()
        if _is_vmapped_init(self, fun, args, mode):
            return self._call_init(args, kwargs)  # type: ignore[return-value]
        c = Crossing(
            fun,
            args,
            kwargs,
            where=where,
            mode=mode,
            prep_cache=self._prep,
            static_argnums=self._split_statics(),
            what=self._what,
            patches=True,
        )
        prep, layout, plain, plain_kw, names = c.prep, c.layout, c.plain, c.plain_kw, c.names
        g_axes, p_axes = per_arg_axes(self._in_axes_for(layout), layout, where)
        if prep is not None:
            key = ("vmap", layout, tuple(map(_axis_key, g_axes)))
            axes = prep.extra.get(key)
            if axes is None:
                axes = prep.extra[key] = leaf_axes(prep, c.graph, g_axes, names, where)
            values = c.values()
            size = check_sizes(prep, values, axes, names, where, self.axis_size)
        else:
            axes, values, size = [], [], self.axis_size
        check_plain_sizes(
            fun,
            layout,
            plain,
            p_axes,
            size,
            size_source(prep, values, axes, names, self.axis_size),
            where,
        )
        key = self._cache_key(prep, layout, axes, p_axes, mode, plain_kw)
        hit = self._fns.get(key) if key is not None else None
        if hit is not None:
            vmapped, holder = hit
        else:
            # the side channel outlives this Crossing when pmap caches the traced function
            holder: dict = {}
            # a partition of None is a partition too: the new axis is unsharded (Flax NNX)
            named = PARTITION_NAME in self.transform_metadata
            partition = self.transform_metadata.get(PARTITION_NAME)

            def inner(leaves, plain, plain_kw):
                a, kw, state = c.enter(leaves, plain, plain_kw)
                objs = state[0]
                renamed = remove_mapped_axis(objs, axes) if named else []
                out, new_mode = call_without_cells(fun, a, kw, refs=True)
                if named:
                    restore_and_add_axis(renamed, out, self.out_axes, partition)
                idx, new, inner_flat = c.changes(state)
                if inner_flat is not None and mode.graph:  # (tree mode: returned inputs
                    assert prep is not None  # are new, stacked objects)
                    check_returned_axes(
                        out, self.out_axes, inner_flat.leaves, axes, prep.paths, names, where
                    )
                updates: list = [None] * len(leaves)
                for i, v in zip(idx, new):
                    updates[i] = v
                # a changed structure's leaves leave stacked on axis 0 (placed outside)
                out, patch_leaves = c.export_patched(out, inner_flat, new_mode=new_mode)
                holder["idx"], holder["spec"] = idx, c.spec
                mapped, unmapped, places = [], [], []
                if self._out_prefix is not None:
                    mapped, unmapped, holder["plan"], places = self._out_prefix.split(out, where)
                holder["n_out"] = len(unmapped)
                if c.spec is not None and c.spec.patch is not None:
                    # the new structure's leaves on an in_axes None argument leave unmapped
                    patch_leaves, shared, at = _split_shared(
                        patch_leaves, c.spec.patch, axes, g_axes, names
                    )
                    unmapped, places = unmapped + shared, places + at
                holder["places"] = places
                return unmapped, updates, out, patch_leaves, mapped

            vmapped = self._jax_map(inner, axes, p_axes, layout)
            if key is not None:
                self._fns[key] = (vmapped, holder)
        try:
            unmapped, updates, out, patch_leaves, mapped = vmapped(values, plain, plain_kw)
        except Exception as e:
            better = _explain(e, prep, names, where, holder)
            if better is e:
                raise
            raise better from e
        idx, c.spec = holder["idx"], holder["spec"]
        n_out = holder["n_out"]
        if self._out_prefix is not None:
            out = OutPrefix.join(out, holder["plan"], mapped, unmapped[:n_out])
        if c.spec is not None and c.spec.patch is not None:
            patch_leaves = _place_patch_leaves(
                patch_leaves, unmapped[n_out:], c.spec.patch, axes, g_axes, names, where
            )
        return c.finish(idx, [updates[i] for i in idx], out, patch_leaves=patch_leaves)

    def _call_init(self, args: tuple, kwargs: dict) -> None:
        """A vmapped ``__init__``: build the object inside, stacked, and move its
        attributes onto the caller's ``self`` (Flax's graph updates).

        The attributes the constructor creates are new objects, so they leave the
        transform as outputs stacked along ``self``'s in-axis; the other
        arguments cross as usual (their Rngs counts come back).
        """
        obj, rest = args[0], args[1:]
        in_axes = self.in_axes
        if isinstance(in_axes, (tuple, list)):
            self_axis, rest_axes = in_axes[0], tuple(in_axes[1:])
        else:
            self_axis, rest_axes = in_axes, in_axes
        cls: Any = type(obj)
        fun: Any = self.fun
        statics = dict(vars(obj))

        def build(*inner_args, **inner_kwargs):
            inner = cls.__new__(cls)
            for k, v in statics.items():
                setattr(inner, k, v)
            fun(inner, *inner_args, **inner_kwargs)
            return inner

        build.__name__ = getattr(fun, "__name__", "__init__")
        built = VmapWrapped(
            build,
            in_axes=rest_axes,
            out_axes=self_axis,
            axis_name=self.axis_name,
            axis_size=self.axis_size,
            spmd_axis_name=self.spmd_axis_name,
            transform_metadata=self.transform_metadata,
            graph=self._mode.graph,
            graph_updates=self._mode.graph_updates,
        )(*rest, **kwargs)
        data_roots = {p[0] for p in flatten(built, with_paths=True).paths if p}
        for k, v in vars(built).items():
            if k in statics and statics[k] is v:
                continue
            if k in data_roots:
                setattr(obj, k, v if is_data(v) else data(v))
            else:
                setattr(obj, k, static(v) if is_data(v) else v)

    # what pmap changes
    def _cache_key(self, prep, layout, axes, p_axes, mode, plain_kw) -> tuple | None:  # noqa: ARG002
        """None: trace at every call (jax.vmap is not cached anyway)."""
        return None

    def _split_statics(self) -> frozenset[int] | tuple[()]:
        return ()

    def _in_axes_for(self, layout):  # noqa: ARG002
        return self.in_axes

    def _jax_map(self, inner, axes, p_axes, layout):  # noqa: ARG002
        return jax.vmap(
            inner,
            in_axes=(list(axes), tuple(p_axes), 0),
            out_axes=(None, list(axes), *self._jax_out_axes),
            axis_name=self.axis_name,
            axis_size=self.axis_size,
            spmd_axis_name=self.spmd_axis_name,
        )


def _patch_axis(src: int, owner: int, axes, g_axes):
    return axes[src] if src >= 0 else g_axes[owner]


def _split_shared(leaves: list, patch, axes, g_axes, names) -> tuple[list, list, list]:
    """Inside: the changed structure's leaves that go on axis None (an argument shared
    with in_axes None, a new Variable there included) leave unmapped, so JAX checks that
    every member has the same value; ``(mapped, unmapped, their places)``."""
    mapped, shared, places = [], [], []
    for x, (src, owner), p in zip(leaves, patch.sources, patch.paths or [()] * len(leaves)):
        if _patch_axis(src, owner, axes, g_axes) is None:
            shared.append(x)
            head = names[p[0]] if p and p[0] < len(names) else "<argument>"
            what = "the new value" if src < 0 else "the value"
            places.append(f"{what} at {'/'.join(map(str, (head, *p[1:])))!r} of an argument")
        else:
            mapped.append(x)
    return mapped, shared, places


def _place_patch_leaves(leaves: list, shared: list, patch, axes, g_axes, names, where: str):
    """The leaves of a changed structure, stacked on axis 0 by the map, on their axes.

    A leaf that entered goes back on the axis it came in on; a new one goes on its
    argument's axis (an int, or None: one value, ``shared``, left unmapped by JAX).
    """
    out = []
    mapped, unmapped = iter(leaves), iter(shared)
    for src, owner in patch.sources:
        ax = _patch_axis(src, owner, axes, g_axes)
        if src < 0 and ax is not None and not isinstance(ax, int):
            arg = repr(names[owner]) if owner < len(names) else f"number {owner}"
            raise StructureError(
                f"{where}: a new Variable or array was added inside to the argument {arg}, "
                f"whose in_axes entry is {ax!r}; nnx can only place a new state on an int "
                "axis or None. Give that argument an int or None in_axes, or create the new "
                "objects inside and return them (out_axes places them). Nothing was written."
            )
        if ax is None:
            out.append(next(unmapped))
            continue
        x = next(mapped)
        if ax == 0:
            out.append(x)
        else:
            out.append(jax.tree.map(lambda a, ax=ax: jnp.moveaxis(a, 0, ax), x))
    return out


def _is_vmapped_init(wrapped: VmapWrapped, fun, args: tuple, mode) -> bool:
    """``@nnx.vmap`` on a Pytree's ``__init__`` with graph updates on, ``self`` still empty."""
    if type(wrapped) is not VmapWrapped or getattr(fun, "__name__", None) != "__init__":
        return False
    if not (mode.graph and mode.graph_updates) or not args or not isinstance(args[0], Pytree):
        return False
    return not flatten(args[0]).leaves  # nothing stateful yet: its state is all new


def _axis_key(a):
    if isinstance(a, PrefixAxes):
        return ("prefix", a.key)
    if isinstance(a, (dict, list, tuple)):  # a pytree prefix of a plain argument (pmap's cache)
        leaves, treedef = jax.tree.flatten(a, is_leaf=lambda x: x is None)
        return ("tree", treedef, tuple(leaves))
    return a if not isinstance(a, StateAxes) else ("StateAxes", hash(a))


_OUT_AXES_MSG = re.compile(r"out_axes\[1\]\[(\d+)\], got axis spec None but output was batched")
_CAPTURED_REF_MSG = "set/swap operation with vmapped value on an unbatched array reference"


_UNMAPPED_OUT_MSG = re.compile(r"out_axes\[0\]\[(\d+)\], got axis spec None but output was batched")


def _explain(e: Exception, prep, names, where, holder: dict):
    if _CAPTURED_REF_MSG in str(e):
        return TraceContextError(
            f"{where}: a ref Variable (or jax.Ref) created outside the transform was written "
            "inside it. Every member would write its own value into one shared array, "
            "which JAX cannot do. Pass the object that holds it as an argument of nnx.vmap "
            "(in_axes None to share it, 0 to give each member its own), or return the new "
            "value and write it outside."
        )
    if not isinstance(e, ValueError):
        return e
    if str(e).startswith("vmap got inconsistent sizes"):
        detail = str(e).split("\n-----", 1)[0].split(":", 1)[1].strip()
        return AxisError(
            f"{where}: mismatched sizes along the mapped axis ('leaves' are the nnx "
            f"arguments' Variables, 'plain' the other arguments): {detail} Every mapped "
            "argument must have the same size; use in_axes None for what is shared."
        )
    m = _UNMAPPED_OUT_MSG.search(str(e))
    places = holder.get("places")
    if m and places and int(m.group(1)) >= holder.get("n_out", 0):
        return AxisError(
            f"{where}: {places[int(m.group(1))]} has in_axes None (one value shared by "
            "every member), but the function made it differ per member. Give that "
            "argument an int in_axes (or nnx.StateAxes) so each member keeps its own, or "
            "make the value the same for every member. Nothing was written."
        )
    if m and places:
        return AxisError(
            f"{where}: out_axes gives {places[int(m.group(1))]} the axis None (one value "
            "for every member), but the value differs per member. Give it an int axis in "
            "the out_axes prefix (nnx.prefix(obj, {filter: 0, ...})) so the members are "
            "stacked, or make the value the same for every member."
        )
    m = _OUT_AXES_MSG.search(str(e))
    if m and prep is not None and "idx" in holder:
        # JAX counts the written leaves (the unwritten are None, no leaf) but names the
        # position among all: the k-th written one is the leaf
        i = sorted(holder["idx"])[int(m.group(1))]
        path = prep.paths[i]
        head = names[path[0]] if path[0] < len(names) else path[0]
        p = "/".join(str(c) for c in (head, *path[1:]))
        what = "Variable" if isinstance(prep.leaves[i], Variable) else "array"
        return AxisError(
            f"{where}: the {what} at {p!r} has in_axes None (one value shared by every "
            "member) but the function wrote a value that differs per member. Map it "
            "(in_axes 0, or nnx.StateAxes({...: 0})) so each member keeps its own, or write "
            "a value that does not depend on the mapped inputs."
        )
    return e


@overload
def vmap(
    fun: Callable[P, R],
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    axis_size: int | None = None,
    spmd_axis_name: Any = None,
    transform_metadata: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> VmapWrapped[P, R]: ...
@overload
def vmap(
    fun: None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    axis_size: int | None = None,
    spmd_axis_name: Any = None,
    transform_metadata: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[Callable[P, R]], VmapWrapped[P, R]]: ...
def vmap(
    fun: Callable | None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    axis_size: int | None = None,
    spmd_axis_name: Any = None,
    transform_metadata: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.vmap`` for functions of nnx objects.

    Example::

        @nnx.vmap(in_axes=0, out_axes=0)
        def create_model(key):
            return MLP(10, 32, 10, rngs=nnx.Rngs(key))

        models = create_model(jax.random.split(jax.random.key(0), 5))  # a stack of 5

        @nnx.vmap(in_axes=(0, None))
        def forward(model, x):          # each member on the same input
            return model(x)

    ``in_axes`` has one entry per positional argument (or one for all); for
    an nnx argument it is an int (all its state stacked on that axis),
    ``None`` (shared by every member) or :class:`StateAxes` (an axis per kind
    of state). Writes to the state of an nnx argument inside come out, stacked
    as they went in; new objects returned are stacked along ``out_axes``: an
    int for all their state, or per Variable, by a :class:`StateAxes` or a
    prefix shaped like the object (``nnx.prefix(obj, {nnx.Param: 0, ...:
    None})``, Flax NNX's ``split_rngs`` example).

    Args:
      fun: the function (or use ``@nnx.vmap(...)`` with options).
      in_axes: per positional argument (or one for all): an int, None or
        :class:`StateAxes`.
      out_axes: per output, as in ``jax.vmap``; for an object returned also
        a :class:`StateAxes` or an ``nnx.prefix`` of the object.
      axis_name: the name of the mapped axis (for collectives).
      axis_size: the size of the mapped axis, when no argument is mapped.
      spmd_axis_name: as in ``jax.vmap``.
      transform_metadata: ``{nnx.PARTITION_NAME: name}`` removes the mapped
        axis from the ``sharding_names`` of mapped Variables inside the
        function (and puts it back outside), and inserts ``name`` at the
        out axis in the ``sharding_names`` of new Variables returned.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting. In tree mode returned inputs come
        out as new stacked objects.
      graph_updates: False leaves structural changes of the arguments inside
        (see :func:`nnx.jit`); None for the current setting.
    """
    return wrap(
        VmapWrapped,
        fun,
        in_axes=in_axes,
        out_axes=out_axes,
        axis_name=axis_name,
        axis_size=axis_size,
        spmd_axis_name=spmd_axis_name,
        transform_metadata=transform_metadata,
        graph=graph,
        graph_updates=graph_updates,
    )


class PmapWrapped(VmapWrapped):
    """A function wrapped by :func:`pmap`."""

    _what = "nnx.pmap"

    def __init__(
        self,
        fun,
        *,
        in_axes,
        out_axes,
        axis_name,
        static_broadcasted_argnums,
        devices,
        backend,
        axis_size,
        donate_argnums,
        transform_metadata=None,
        graph=None,
        graph_updates=None,
    ):
        super().__init__(
            fun,
            in_axes=in_axes,
            out_axes=out_axes,
            axis_name=axis_name,
            axis_size=axis_size,
            spmd_axis_name=None,
            transform_metadata=transform_metadata,
            graph=graph,
            graph_updates=graph_updates,
        )
        statics = static_broadcasted_argnums
        self._statics = frozenset((statics,) if isinstance(statics, int) else tuple(statics))
        if donate_argnums not in ((), None):
            raise NotImplementedError(
                "nnx.pmap: donate_argnums is not supported yet; call without it (the "
                "arguments' buffers are then kept), or use nnx.jit with donate_argnums "
                "around a vmap or shard_map."
            )
        self.devices = devices
        self.backend = backend
        # one jax.pmap per structure: a new function per call would compile every call.
        # The entry keeps the first call's Prepared, whose static facts (slots, paths)
        # are those of every call with the same GraphDef.
        self._fns: dict = {}

    def _cache_key(self, prep, layout, axes, p_axes, mode, plain_kw) -> tuple | None:
        return (
            prep.flat.graphdef if prep is not None else None,
            layout,
            tuple(map(_axis_key, axes)),
            tuple(map(_axis_key, p_axes)),
            mode,
            tuple(sorted(plain_kw)),
        )

    def _split_statics(self) -> frozenset[int] | tuple[()]:
        return self._statics

    def _jax_map(self, inner, axes, p_axes, layout):  # noqa: ARG002
        kw = {}
        if self.devices is not None:
            kw["devices"] = self.devices
        if self.backend is not None:
            kw["backend"] = self.backend
        if self.axis_size is not None:
            kw["axis_size"] = self.axis_size
        return jax.pmap(
            inner,
            in_axes=(list(axes), tuple(p_axes), 0),
            out_axes=(None, list(axes), *self._jax_out_axes),
            axis_name=self.axis_name,
            **kw,
        )


def pmap(
    fun: Callable | None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    static_broadcasted_argnums: int | tuple[int, ...] = (),
    devices: Any = None,
    backend: str | None = None,
    axis_size: int | None = None,
    donate_argnums: int | tuple[int, ...] = (),
    global_arg_shapes: Any = None,
    transform_metadata: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
):
    """``jax.pmap`` for functions of nnx objects, with the argument handling of :func:`vmap`.

    Example::

        @nnx.pmap(in_axes=(0, 0), axis_name="devices")
        def step(model, x):
            return jax.lax.pmean(model(x), "devices")

    nnx arguments are mapped by ``in_axes`` (an int, None or
    :class:`StateAxes`), as in :func:`vmap`: their Variables written inside
    are updated outside, stacked (one entry per device) as they went in; new
    objects returned are stacked along ``out_axes``; with
    ``nnx.split_rngs(splits=n)`` each device gets its own random keys.

    Args:
      fun: the function (or use ``@nnx.pmap(...)`` with options).
      in_axes: per positional argument (or one for all), as in :func:`vmap`.
      out_axes: per output, as in ``jax.pmap``.
      axis_name: the name of the mapped axis, for collectives.
      static_broadcasted_argnums: positional arguments passed as Python
        values to every device (hashable).
      devices: the devices to map over, as in ``jax.pmap``.
      backend: as in ``jax.pmap``.
      axis_size: as in ``jax.pmap``.
      donate_argnums: not supported yet: anything but ``()`` is a
        ``NotImplementedError`` (nothing is silently left undonated).
      global_arg_shapes: accepted for compatibility with Flax's signature;
        must be None (JAX removed it).
      transform_metadata: as in :func:`vmap`.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current setting.
      graph_updates: False leaves structural changes inside; None for the
        current setting.
    """
    if global_arg_shapes is not None:
        raise TypeError("nnx.pmap: global_arg_shapes is no longer supported by JAX; pass None.")
    return wrap(
        PmapWrapped,
        fun,
        in_axes=in_axes,
        out_axes=out_axes,
        axis_name=axis_name,
        static_broadcasted_argnums=static_broadcasted_argnums,
        devices=devices,
        backend=backend,
        axis_size=axis_size,
        donate_argnums=donate_argnums,
        transform_metadata=transform_metadata,
        graph=graph,
        graph_updates=graph_updates,
    )
