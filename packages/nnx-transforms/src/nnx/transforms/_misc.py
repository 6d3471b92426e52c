"""The other lifted transforms: ``remat``, ``eval_shape``, ``checkify``, ``shard_map``,
``custom_vjp``, ``jvp`` and ``vjp``.

Each one is :func:`lift` (values mode of the boundary mechanism) around the
JAX transform of the same name, plus what that transform needs (tangents and
cotangents of nnx arguments are States, or objects of the same structure).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core import (
    State,
    Variable,
    flatten,
    is_graph_node,
    storage_mode,
    var_defaults,
    vars_as,
)
from nnx.transforms._boundary import (
    HIJAX,
    REF,
    ModeArgs,
    PrepareCache,
    Prepared,
    assemble,
    at_top_level,
    call_without_cells,
    check_tree,
    collect_updates,
    enter_values,
    export_output,
    graph_arg_names,
    import_output,
    snapshot,
    split_call,
    write_back,
)
from nnx.transforms._errors import TransformError

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])
Aux = TypeVar("Aux")


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
    """Call ``transform(inner)(values, plain, plain_kw)`` with nnx state crossing as values.

    ``all_updates=True`` returns a value (or None) for every leaf, for
    transforms that need the output structure before tracing (shard_map).
    ``in_spec``/``out_spec`` build per-leaf specs for such transforms.
    ``write=False`` leaves the arguments as they are (eval_shape: the new
    values are abstract). ``mode``: the :class:`nnx.GraphMode` (None: the
    current settings).
    """
    if mode is None:
        mode = ModeArgs().mode()
    layout, graph, plain, plain_kw = split_call(args, kwargs, static_argnums)
    names = graph_arg_names(fun, layout)
    prep = (prep_cache or PrepareCache())(graph) if graph else None
    if prep is not None and not mode.graph:
        check_tree(prep, graph, fun, layout, where.split("(", 1)[0])
    values = prep.values() if prep is not None else []
    holder: dict = {}

    def inner(leaves, plain, plain_kw):
        objs, gd = enter_values(prep, leaves) if prep is not None else ((), None)
        entry = snapshot(objs, mode) if gd is not None else None
        a, kw = assemble(layout, objs, plain, plain_kw)
        out, as_hijax = call_without_cells(fun, a, kw)  # the cell rule: temporaries plain
        if gd is not None:
            idx, new, inner_flat = collect_updates(
                objs, leaves, gd, where=where, names=names, values=True, mode=mode, entry=entry
            )
            nodes = inner_flat.nodes
        else:
            idx, new, nodes = [], [], []
        if post_out is not None:
            out = post_out(out)
        out, spec = export_output(out, nodes, where=where, as_hijax=as_hijax and restore_modes)
        holder["idx"], holder["spec"] = idx, spec
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
        transformed = transform(inner, in_spec(prep, layout, graph), out_spec(prep))
    new, out = transformed(values, plain, plain_kw)
    if prep is not None and write:
        idx = holder["idx"]
        if all_updates:
            new = [new[i] for i in idx]
        write_back(prep.leaves, idx, new, values=True)
    return import_output(out, holder["spec"], prep.flat.nodes if prep is not None else None)


# -- remat ------------------------------------------------------------------------------
@overload
def remat(
    fun: F,
    *,
    prevent_cse: bool = True,
    static_argnums: int | tuple[int, ...] = (),
    policy: Callable | None = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> F: ...
@overload
def remat(
    fun: None = None,
    *,
    prevent_cse: bool = True,
    static_argnums: int | tuple[int, ...] = (),
    policy: Callable | None = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[[F], F]: ...
def remat(
    fun: Callable | None = None,
    *,
    prevent_cse: bool = True,
    static_argnums: int | tuple[int, ...] = (),
    policy: Callable | None = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.checkpoint`` for functions of nnx objects: recompute activations in backward.

    Example::

        @nnx.remat(policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
        def block(layer, x):
            return layer(x)

    Also usable on a method: ``__call__ = nnx.remat(__call__)``.

    Args:
      fun: the function (or use ``@nnx.remat(...)`` with options).
      prevent_cse: as in ``jax.checkpoint``.
      static_argnums: static arguments, as in ``jax.checkpoint``.
      policy: which intermediates to save, as in ``jax.checkpoint``.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """
    mode_args = ModeArgs(graph, graph_updates)
    statics = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    def wrap(f):
        cache = PrepareCache()

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            return lift(
                lambda g: jax.checkpoint(g, prevent_cse=prevent_cse, policy=policy),
                f,
                args,
                kwargs,
                where=f"nnx.remat({getattr(f, '__name__', 'f')})",
                static_argnums=statics,
                prep_cache=cache,
                mode=mode_args.mode(),
            )

        return wrapper

    return wrap if fun is None else wrap(fun)


checkpoint = remat


# -- eval_shape ---------------------------------------------------------------------------
def _plain_vars(out):
    has_storage = any(
        isinstance(x, Variable) and storage_mode(x) in (REF, HIJAX)
        for x in flatten(out).leaves
        if is_graph_node(x)
    )
    return vars_as(out, ref=False, hijax=False) if has_storage else out


def eval_shape(fun: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fun`` abstractly: the output's arrays are ``jax.ShapeDtypeStruct``\\ s.

    Example::

        abstract = nnx.eval_shape(lambda: MLP(2, 1024, 1, rngs=nnx.Rngs(0)))
        abstract.linear1.kernel.shape  # no memory allocated

    Variables of the abstract output hold ``ShapeDtypeStruct`` values. Under
    ``nnx.var_defaults(hijax=True)`` they are hijax Variables, so a model
    restored into this target (``nnx.restore_checkpoint``) is hijax too; ref
    Variables come back plain (a ``jax.Ref`` needs an array). Writes the
    function makes to its arguments' Variables are not applied: they would be
    abstract.

    Args:
      fun: the function.
      *args: its positional arguments.
      **kwargs: its keyword arguments; ``graph=False`` (tree mode, see
        :func:`nnx.jit`) and ``graph_updates=False`` among them are this
        transform's own (None: the current :func:`nnx.set_graph_mode` settings).
    """
    # graph/graph_updates come out of **kwargs: a ParamSpec signature cannot name
    # keyword-only parameters of its own (PEP 612), and these keep the function's type.
    graph: bool | None = kwargs.pop("graph", None)  # type: ignore[assignment]
    graph_updates: bool | None = kwargs.pop("graph_updates", None)  # type: ignore[assignment]
    hijax_at: list[int] = []  # which Variables of the output are to be hijax
    all_hijax = var_defaults().hijax  # new Variables are made plain inside (the cell rule)

    def plain_out(out):
        hijax_at[:] = [
            i
            for i, x in enumerate(_variables_of(out))
            if all_hijax or storage_mode(x) == HIJAX
        ]
        return _plain_vars(out)

    out = lift(
        lambda g: functools.partial(jax.eval_shape, g),
        fun,
        args,
        kwargs,
        where=f"nnx.eval_shape({getattr(fun, '__name__', 'f')})",
        post_out=plain_out,
        write=False,
        restore_modes=False,  # abstract values: no array to put in a cell or a ref
        mode=ModeArgs(graph, graph_updates).mode(),
    )
    if hijax_at:  # a hijax Variable can hold an abstract value: give back its mode
        chosen = {id(v) for i, v in enumerate(_variables_of(out)) if i in set(hijax_at)}
        out = vars_as(out, hijax=True, only=lambda _, x: id(x) in chosen)
    return out


def _variables_of(tree) -> list:
    return [x for x in flatten(tree).leaves if isinstance(x, Variable)]


# -- checkify ---------------------------------------------------------------------------
def checkify(
    fun: Callable[P, R],
    errors=None,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[P, tuple[Any, R]]:
    """``jax.experimental.checkify.checkify`` for functions of nnx objects.

    Example::

        from jax.experimental import checkify
        @nnx.checkify
        def f(model, x):
            checkify.check(jnp.all(x > 0), "x must be positive")
            return model(x)

        err, y = f(model, x)
        err.throw()

    Args:
      fun: the function.
      errors: the error kinds to check (``checkify.user_checks`` by default).
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """
    mode_args = ModeArgs(graph, graph_updates)
    from jax.experimental import checkify as ck

    errs = ck.user_checks if errors is None else errors
    cache = PrepareCache()

    @functools.wraps(fun)
    def wrapper(*args, **kwargs):
        err_box: list = []

        def transform(g):
            def run(*a):
                err, out = ck.checkify(g, errors=errs)(*a)
                err_box.append(err)
                return out

            return run

        out = lift(
            transform,
            fun,
            args,
            kwargs,
            where="nnx.checkify",
            prep_cache=cache,
            mode=mode_args.mode(),
        )
        return err_box[0], out

    return wrapper


# -- shard_map ----------------------------------------------------------------------------
@overload
def shard_map(
    fun: F,
    *,
    mesh: Any,
    in_specs: Any,
    out_specs: Any,
    **shard_map_kwargs: Any,
) -> F: ...
@overload
def shard_map(
    fun: None = None,
    *,
    mesh: Any,
    in_specs: Any,
    out_specs: Any,
    **shard_map_kwargs: Any,
) -> Callable[[F], F]: ...
def shard_map(
    fun: Callable | None = None,
    *,
    mesh: Any,
    in_specs: Any,
    out_specs: Any,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    **shard_map_kwargs,
) -> Any:
    """``jax.shard_map`` for functions of nnx objects.

    Example::

        P = jax.sharding.PartitionSpec
        mesh = jax.make_mesh((len(jax.devices()),), ("data",))
        @nnx.shard_map(mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"))
        def forward(model, x):       # model replicated, x split over "data"
            return model(x)

    For an nnx argument the spec is one ``PartitionSpec`` for all its arrays
    or a State/dict mapping its paths to specs. Written Variables come back
    with the spec they went in with.

    Args:
      fun: the function (or use ``@nnx.shard_map(...)`` with options).
      mesh: the mesh.
      in_specs: per positional argument, as described above.
      out_specs: as in ``jax.shard_map``.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
      **shard_map_kwargs: passed to ``jax.shard_map``.
    """
    mode_args = ModeArgs(graph, graph_updates)

    def wrap(f):
        cache = PrepareCache()

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            leaf_specs: list = []

            def in_spec(prep, layout, graph):
                from nnx.transforms._boundary import GRAPH, PLAIN_ARG, graph_arg_index

                pos, _ = layout
                specs = in_specs if isinstance(in_specs, (tuple, list)) else (in_specs,) * len(pos)
                plain_specs = tuple(s for s, c in zip(specs, pos) if c is PLAIN_ARG)
                if prep is not None:
                    g_specs = [specs[i] for i in graph_arg_index(layout) if isinstance(i, int)]
                    owners, paths = prep.owners(graph), prep.paths
                    for i in range(len(prep.leaves)):
                        s = g_specs[owners[i]]
                        if isinstance(s, Mapping):
                            s = _lookup(s, paths[i][1:])
                        leaf_specs.append(s if s is not None else jax.sharding.PartitionSpec())
                _ = GRAPH
                return (list(leaf_specs), plain_specs, {})

            def out_spec(prep):
                return (list(leaf_specs), out_specs)

            def transform(g, ins, outs):
                sm = jax.shard_map(g, mesh=mesh, in_specs=ins, out_specs=outs, **shard_map_kwargs)
                if not (at_top_level() and isinstance(mesh, jax.sharding.Mesh)):
                    return sm

                def call(values, plain, plain_kw):
                    # values read from refs and hijax cells are committed to the device
                    # they live on: place them on the mesh as their specs say
                    values = [
                        jax.device_put(v, jax.sharding.NamedSharding(mesh, s))
                        for v, s in zip(values, ins[0])
                    ]
                    return sm(values, plain, plain_kw)

                return call

            return lift(
                transform,
                f,
                args,
                kwargs,
                where=f"nnx.shard_map({getattr(f, '__name__', 'f')})",
                all_updates=True,
                prep_cache=cache,
                in_spec=in_spec,
                out_spec=out_spec,
                mode=mode_args.mode(),
            )

        return wrapper

    return wrap if fun is None else wrap(fun)


def _lookup(mapping, path):
    node = mapping
    for k in path:
        if isinstance(node, Variable):
            node = node.get_value()
        if not isinstance(node, Mapping) or k not in node:
            return None
        node = node[k]
    return node.get_value() if isinstance(node, Variable) else node


# -- tangents of nnx arguments ------------------------------------------------------------
def _zero_tangent(x):
    if isinstance(x, jax.ShapeDtypeStruct):
        shape, dtype = x.shape, x.dtype
    else:
        shape, dtype = np.shape(x), jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros(shape, dtype)
    return np.zeros(shape, dtype=jax.dtypes.float0)


class _Abstract:
    """Paths and abstract values of a node's leaves (no tracers kept)."""

    def __init__(self, node):
        sub = flatten(node, with_paths=True)
        self.paths = sub.paths
        self.leaves = [
            jax.ShapeDtypeStruct(np.shape(v), jnp.result_type(v))
            for v in (x.get_value() if isinstance(x, Variable) else x for x in sub.leaves)
        ]


def _leaf_tangents(node, tangent, where: str) -> list:
    """Per-leaf tangents of ``node`` from a State/mapping or an object of the same structure."""
    sub = node if isinstance(node, _Abstract) else flatten(node, with_paths=True)
    return _tangents_at(sub.paths, sub.leaves, tangent, where)


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


def _split_graph_plain(args):
    is_g = [is_graph_node(a) or _contains_graph(a) for a in args]
    return is_g


def _contains_graph(x) -> bool:
    return any(is_graph_node(leaf) for leaf in jax.tree.leaves(x, is_leaf=is_graph_node))


def _values_fn(fun, args, where, mode):
    """``(g, per-arg values, is_graph, slices, apply)``: ``g(*per_arg_values)`` calls ``fun``.

    The graph arguments are flattened *jointly* (sharing kept: ``f(m, m)`` sees one
    object inside, as with jit); each graph argument's values are the leaves it
    reaches first (``slices[k]`` gives their range, paths and Variables), so a
    Variable reached through two arguments crosses once, with the first.
    """
    is_g = _split_graph_plain(args)
    graph = tuple(a for a, g in zip(args, is_g) if g)
    prep = Prepared(flatten(graph)) if graph else None
    if prep is not None and not mode.graph:
        check_tree(prep, graph, fun, None, where.split("(", 1)[0])
    joint = prep.values() if prep is not None else []
    owners = prep.owners(graph) if prep is not None else []
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
    holder: dict = {}

    def g(*per_arg):
        leaves: list = []
        plain = []
        for sl, v in zip(slices, per_arg):
            if sl is None:
                plain.append(v)
            else:
                leaves.extend(v)
        if prep is not None:
            objs, gd = enter_values(prep, leaves)
        else:
            objs, gd = (), None
        entry = snapshot(objs, mode) if gd is not None else None
        oi, pi = iter(objs), iter(plain)
        call = [next(oi) if isg else next(pi) for isg in is_g]
        out, _ = call_without_cells(fun, call, {})
        if gd is not None:
            idx, new, _ = collect_updates(
                objs, leaves, gd, where=where, values=True, mode=mode, entry=entry
            )
        else:
            idx, new = [], []
        holder["idx"] = idx
        if _contains_graph(out):
            raise TransformError(
                f"{where}: the function must return arrays (pytrees of them), not nnx objects."
            )
        return out, new

    def apply(new):
        if prep is not None:
            write_back(prep.leaves, holder["idx"], new, values=True)

    return g, vals, is_g, slices, apply


def jvp(
    fun: Callable[..., R],
    primals: tuple,
    tangents: tuple,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> tuple[R, Any]:
    """``jax.jvp`` where primals may hold nnx objects.

    Example::

        t = nnx.state(model, nnx.Param)          # any State with the same paths
        y, y_dot = nnx.jvp(lambda m: m(x), (model,), (t,))

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
def vjp(
    fun: Callable,
    *primals,
    has_aux: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.vjp`` where primals may hold nnx objects.

    Example::

        y, vjp_fn = nnx.vjp(lambda m: m(x), model)
        (grads,) = vjp_fn(jnp.ones_like(y))      # a State of the model's Variables

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


# -- custom_vjp ---------------------------------------------------------------------------
class custom_vjp:  # noqa: N801 (mirrors jax.custom_vjp)
    """``jax.custom_vjp`` for functions whose arguments may hold nnx objects.

    Example::

        @nnx.custom_vjp
        def f(m, x):
            return m.w[...] * x

        def f_fwd(m, x):
            return f(m, x), (m.w[...], x)

        def f_bwd(res, g):
            w, x = res
            return {"w": g * x}, g * w      # the nnx argument's cotangent: a State/dict by path

        f.defvjp(f_fwd, f_bwd)

    ``bwd`` returns one cotangent per positional argument; for an nnx
    argument, a State or mapping of its paths (missing Variables get zeros).
    The function may not write Variables (a custom derivative cannot carry
    state updates).

    Args:
      fun: the function.
      nondiff_argnums: arguments that are not differentiated.
      graph: False for tree mode: an object reachable twice from the
        arguments is an ``nnx.AliasingError``; None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the arguments inside;
        None for the current setting.
    """

    def __init__(
        self,
        fun: Callable,
        nondiff_argnums: tuple[int, ...] = (),
        *,
        graph: bool | None = None,
        graph_updates: bool | None = None,
    ):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self._mode = ModeArgs(graph, graph_updates)
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args):
        if self.fwd is None or self.bwd is None:
            raise TransformError("nnx.custom_vjp: call defvjp(fwd, bwd) before calling it.")
        where = f"nnx.custom_vjp({getattr(self.fun, '__name__', 'f')})"
        nd = set(self.nondiff_argnums)
        is_g = [
            i not in nd and (is_graph_node(a) or _contains_graph(a)) for i, a in enumerate(args)
        ]
        flats = [flatten(a, with_paths=True) if g else None for a, g in zip(args, is_g)]
        mode = self._mode.mode()
        if not mode.graph:
            graph = tuple(a for a, g in zip(args, is_g) if g)
            check_tree(Prepared(flatten(graph)), graph, self.fun, None, "nnx.custom_vjp")

        preps = [Prepared(f) if f is not None else None for f in flats]
        vals = tuple(
            [x.get_value() if isinstance(x, Variable) else x for x in f.leaves] if f else a
            for a, f in zip(args, flats)
        )
        diff_pos = [i for i in range(len(args)) if i not in nd]
        abstract = [_Abstract(a) if g else None for a, g in zip(args, is_g)]
        fun, fwd, bwd = self.fun, self.fwd, self.bwd

        def rebuild(per_arg):
            objs, state = [], []
            for p, v in zip(preps, per_arg):
                if p is None:
                    objs.append(v)
                else:
                    o, gd = enter_values(p, list(v))
                    objs.append(o)
                    state.append((o, gd, list(v), snapshot(o, mode)))
            return objs, state

        def no_writes(state):
            for o, gd, leaves, entry in state:
                idx, _, _ = collect_updates(
                    o, leaves, gd, where=where, values=True, mode=mode, entry=entry
                )
                if idx:
                    raise TransformError(
                        f"{where}: the function wrote a Variable. A custom derivative cannot "
                        "carry state updates; compute the new state outside, or use nnx.grad."
                    )

        def full_args(nd_args, diff_args):
            out = [None] * len(args)
            for i, a in zip(sorted(nd), nd_args):
                out[i] = a
            for i, a in zip(diff_pos, diff_args):
                out[i] = a
            return out

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def call(nd_args, *diff_args):
            objs, state = rebuild(full_args(nd_args, diff_args))
            out = fun(*objs)
            no_writes(state)
            return out

        def call_fwd(nd_args, *diff_args):
            objs, state = rebuild(full_args(nd_args, diff_args))
            out, res = fwd(*objs)
            no_writes(state)
            return out, res

        def call_bwd(nd_args, res, g):
            cts = bwd(res, g)
            if not isinstance(cts, tuple):
                cts = (cts,)
            out = []
            for ct, i in zip(cts, diff_pos):
                if preps[i] is not None:
                    out.append(_leaf_tangents(abstract[i], ct, where))
                else:
                    out.append(ct)
            return tuple(out)

        call.defvjp(call_fwd, call_bwd)
        nd_args = tuple(vals[i] for i in sorted(nd))
        return call(_Hashable(nd_args), *(vals[i] for i in diff_pos))


class _Hashable:
    """Non-differentiated arguments of a custom_vjp, passed by identity."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __iter__(self):
        return iter(self.value)

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other
