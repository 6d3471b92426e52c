"""Control flow over nnx objects: ``cond``, ``switch``, ``fori_loop``, ``while_loop``.

JAX's control-flow primitives take plain values, so the state of the nnx
objects goes in as plain values and every branch or loop step returns the
current value of every leaf (both branches of a ``cond`` then have the same
output type, and a loop carry keeps its type). Writes come out afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax

from nnx.core import Pytree, Variable, is_graph_node
from nnx.transforms._boundary import (
    ModeArgs,
    call_without_cells,
)
from nnx.transforms._crossing import Crossing
from nnx.transforms._errors import CarryError, StructureError

R = TypeVar("R")
T = TypeVar("T")


# -- cond / switch -------------------------------------------------------------------------
def _branches_call(
    select: Callable, branches: Sequence[Callable], operands: tuple, what: str, mode
):
    first = branches[0] if branches else (lambda *a: None)  # noqa: ARG005
    # patches: a structural change that every branch makes alike comes out (Flax NNX)
    c = Crossing(
        first, operands, {}, where=f"nnx.{what}", mode=mode, what=f"nnx.{what}", patches=True
    )
    specs: list = []  # each traced branch's output spec, to compare
    written: set[int] = set()  # what any branch changed: every branch returns it

    def make(fun):
        where = f"nnx.{what}({getattr(fun, '__name__', 'branch')})"

        def inner(leaves, plain):
            c.where = where
            idx, new, out = c.run(leaves, plain, {}, fun=fun)
            changed = dict(zip(idx, new))
            patch_leaves = new[len(idx) :]  # the operands' new structure, if it changed
            current = [changed.get(i, v) for i, v in enumerate(leaves)]
            for spec in specs:  # JAX compares only the leaves: check the objects first
                if spec != c.spec:
                    raise StructureError(_branch_mismatch(where, spec, c.spec))
            specs.append(c.spec)
            written.update(idx)
            return current, out, patch_leaves

        return inner

    current, out, patch_leaves = select([make(f) for f in branches], c.values(), c.plain)
    idx = sorted(written)
    return c.finish(idx, [current[i] for i in idx], out, patch_leaves=patch_leaves)


def _branch_mismatch(where: str, a, b) -> str:
    changed = [s is not None and s.patch is not None for s in (a, b)]
    if any(changed):
        how = (
            "one branch changes it and another does not"
            if changed[0] != changed[1]
            else ("the branches change it differently")
        )
        return (
            f"{where}: the structure of the operands changed inside ({how}). A structural "
            "change (an attribute added, deleted or swapped, a new submodule) comes out of "
            "a cond/switch only when every branch makes the same one; make it in every "
            "branch, or outside the cond. Nothing was written."
        )
    return (
        f"{where}: the branches return different nnx objects (or one returns nnx objects "
        "and another does not). Every branch must return outputs of the same structure: "
        "the same classes, attributes and Variable kinds."
    )


def cond(
    pred,
    true_fun: Callable[..., R],
    false_fun: Callable[..., R],
    *operands,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> R:
    """``jax.lax.cond`` whose operands may hold nnx objects.

    Example::

        class Counter(nnx.Module):
            def __init__(self):
                self.count = nnx.Variable(jnp.array(0))
        counter = Counter()
        def reset(counter):
            counter.count[...] = 0
        def step(counter):
            counter.count[...] += 1

        nnx.cond(counter.count[...] >= 10, reset, step, counter)   # updates counter

    Writes that either branch makes to the operands' Variables come out.

    Args:
      pred: the condition (a scalar boolean).
      true_fun: called with the operands when ``pred`` is true.
      false_fun: called with the operands otherwise.
      *operands: the arguments of the branches.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes of the operands inside;
        None for the current setting.
    """
    return _branches_call(
        lambda inners, v, p: jax.lax.cond(pred, inners[0], inners[1], v, p),
        (true_fun, false_fun),
        operands,
        "cond",
        ModeArgs(graph, graph_updates).mode(),
    )


def switch(
    index,
    branches: Sequence[Callable[..., R]],
    *operands,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> R:
    """``jax.lax.switch`` whose operands may hold nnx objects.

    Example::

        a, b, c = (nnx.Linear(2, 2, rngs=rngs) for _ in range(3))
        i = jnp.array(1)
        y = nnx.switch(i, [a, b, c], x)    # b(x)

    Args:
      index: which branch to call (clamped to the range, as in JAX).
      branches: the functions.
      *operands: the arguments of the branches.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current setting.
      graph_updates: False leaves structural changes of the operands inside;
        None for the current setting.
    """
    return _branches_call(
        lambda inners, v, p: jax.lax.switch(index, inners, v, p),
        tuple(branches),
        operands,
        "switch",
        ModeArgs(graph, graph_updates).mode(),
    )


# -- loops ------------------------------------------------------------------------------
class _LoopCarry:
    """A loop value split into nnx objects (carried as leaf values) and plain parts."""

    def __init__(self, init_val, where: str, mode, what: str, fun):
        self.where = where
        self.mode = mode
        tops, self.treedef = jax.tree.flatten(init_val, is_leaf=is_graph_node)
        self.is_graph = [isinstance(t, (Pytree, Variable)) for t in tops]
        self.graph = tuple(t for t, g in zip(tops, self.is_graph) if g)
        self.plain = [t for t, g in zip(tops, self.is_graph) if not g]
        # the loop value's nnx objects cross as the arguments of one Crossing
        self.c = Crossing(fun, self.graph, {}, where=where, mode=mode, what=what, arg_names=False)
        self.prep = self.c.prep
        self.values = self.c.values()
        self.changed: set[int] = set()

    def init(self):
        return (self.values, self.plain)

    def build(self, carry):
        leaves, plain = carry
        _, _, state = self.c.enter(leaves, (), {})
        g, p = iter(state[0]), iter(plain)
        tops = [next(g) if isg else next(p) for isg in self.is_graph]
        return jax.tree.unflatten(self.treedef, tops), (state, plain)

    def finish(self, out, state, *, check_out: bool = True):
        cstate, plain_in = state
        objs, leaves = cstate[0], cstate[2]
        idx, new, _ = self.c.changes(cstate)
        self.changed.update(idx)
        changed = dict(zip(idx, new))
        current = [changed.get(i, v) for i, v in enumerate(leaves)]
        if not check_out:
            return current, plain_in
        tops, treedef = jax.tree.flatten(out, is_leaf=is_graph_node)
        if treedef != self.treedef:
            raise CarryError(
                f"{self.where}: the loop value changed structure in one step: it went in as "
                f"{self.treedef} and came out as {treedef}. Return a value of the same "
                "structure (the same nnx objects, arrays of the same shapes and dtypes)."
            )
        g = iter(objs)
        new_plain = []
        for t, isg in zip(tops, self.is_graph):
            if isg:
                if t is not next(g):
                    raise CarryError(
                        f"{self.where}: the loop must return the same nnx objects it received "
                        f"(it returned a different {type(t).__name__}). Update their "
                        "Variables in place instead of creating new objects."
                    )
            else:
                new_plain.append(t)
        for _k, (a, b) in enumerate(zip(plain_in, new_plain)):
            ta, tb = jax.tree.map(jax.typeof, a), jax.tree.map(jax.typeof, b)
            if jax.tree.structure(ta) != jax.tree.structure(tb) or any(
                (x.shape, x.dtype) != (y.shape, y.dtype)
                for x, y in zip(jax.tree.leaves(ta), jax.tree.leaves(tb))
            ):
                raise CarryError(
                    f"{self.where}: a part of the loop value changed type in one step: "
                    f"{ta} went in, {tb} came out. Keep shapes and dtypes (cast the new "
                    "value)."
                )
        return current, new_plain

    def result(self, carry):
        leaves, plain = carry
        idx = sorted(self.changed)
        self.c.finish(idx, [leaves[i] for i in idx], None)
        g, p = iter(self.graph), iter(plain)
        tops = [next(g) if isg else next(p) for isg in self.is_graph]
        return jax.tree.unflatten(self.treedef, tops)


def fori_loop(
    lower,
    upper,
    body_fun: Callable,
    init_val: T,
    *,
    unroll=None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> T:
    """``jax.lax.fori_loop`` whose loop value may hold nnx objects.

    Example::

        model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        def body(i, val):
            model, x = val
            return model, model(x)        # same model object, new x

        model, y = nnx.fori_loop(0, 3, body, (model, x))

    The body must return the same nnx objects it received; what it writes
    into their Variables carries to the next step and comes out at the end.

    Args:
      lower: the first index.
      upper: the index after the last.
      body_fun: ``body_fun(i, val) -> val``.
      init_val: the loop value (may hold nnx objects).
      unroll: as in ``jax.lax.fori_loop``.
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes inside; None for the
        current setting.
    """
    lc = _LoopCarry(
        init_val,
        f"nnx.fori_loop({getattr(body_fun, '__name__', 'body')})",
        ModeArgs(graph, graph_updates).mode(),
        "nnx.fori_loop",
        body_fun,
    )

    def body(i, carry):
        val, state = lc.build(carry)
        out, _ = call_without_cells(body_fun, (i, val), {})  # the cell rule: temporaries plain
        return lc.finish(out, state)

    kwargs = {} if unroll is None else {"unroll": unroll}
    return lc.result(jax.lax.fori_loop(lower, upper, body, lc.init(), **kwargs))


def while_loop(
    cond_fun: Callable[[T], Any],
    body_fun: Callable[[T], T],
    init_val: T,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> T:
    """``jax.lax.while_loop`` whose loop value may hold nnx objects.

    Example::

        class Counter(nnx.Module):
            def __init__(self):
                self.count = nnx.Variable(jnp.array(0))
        counter = Counter()
        def cond(val):
            counter, _ = val
            return counter.count[...] < 5
        def body(val):
            counter, x = val
            counter.count[...] += 1
            return counter, x * 2

        counter, x = nnx.while_loop(cond, body, (counter, x))

    Args:
      cond_fun: ``cond_fun(val) -> bool``.
      body_fun: ``body_fun(val) -> val``.
      init_val: the loop value (may hold nnx objects).
      graph: False for tree mode (see :func:`nnx.jit`); None for the current
        :func:`nnx.set_graph_mode` setting.
      graph_updates: False leaves structural changes inside; None for the
        current setting.
    """
    lc = _LoopCarry(
        init_val,
        f"nnx.while_loop({getattr(body_fun, '__name__', 'body')})",
        ModeArgs(graph, graph_updates).mode(),
        "nnx.while_loop",
        body_fun,
    )

    def cond(carry):
        val, _ = lc.build(carry)
        return call_without_cells(cond_fun, (val,), {})[0]

    def body(carry):
        val, state = lc.build(carry)
        out, _ = call_without_cells(body_fun, (val,), {})  # the cell rule: temporaries plain
        return lc.finish(out, state)

    return lc.result(jax.lax.while_loop(cond, body, lc.init()))
