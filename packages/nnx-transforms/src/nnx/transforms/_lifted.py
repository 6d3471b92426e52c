"""Transforms that are :func:`~nnx.transforms._boundary.lift` around one JAX transform:
``remat`` (``jax.checkpoint``), ``eval_shape`` and ``checkify``.

The boundary does everything (nnx state crosses as plain values, writes come
out); each transform here only says which JAX call to make.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import jax

from nnx.core import Variable, flatten, is_graph_node, storage_mode, var_defaults, vars_as
from nnx.transforms._boundary import (
    HIJAX,
    REF,
    ModeArgs,
    PrepareCache,
)
from nnx.transforms._crossing import lift

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


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
            i for i, x in enumerate(_variables_of(out)) if all_hijax or storage_mode(x) == HIJAX
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
