"""Ahead-of-time stages of ``nnx.jit`` (Flax NNX's ``Traced``, ``Lowered``, ``Compiled``).

``nnx.jit(f).trace(*args)`` / ``.lower(*args)`` / ``.lower(...).compile()`` wrap JAX's
stages of the inner ``jax.jit`` (every attribute of JAX's object reads through:
``jaxpr``, ``as_text()``, ``cost_analysis()``, ``input_shardings``, ...), and the
compiled one is called like the function: with the nnx objects, whose updates are
written back as after any call of ``nnx.jit(f)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class _Call(NamedTuple):
    """One call of a JitWrapped, resolved: what it compiles to and what it passes."""

    key: Any
    fn: Any
    donate_mask: Any
    prep: Any
    routes: Any
    graph: tuple
    layout: Any
    plain: tuple
    plain_kw: dict


class _Stage:
    __slots__ = ("_jit", "_stage", "_key")

    def __init__(self, jit_wrapped: Any, stage: Any, key: Any):
        self._jit = jit_wrapped
        self._stage = stage
        self._key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stage, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._jit!r})"


class Traced(_Stage):
    """``nnx.jit(f).trace(*args)``: JAX's ``Traced`` of the call (``.jaxpr``, ...)."""

    __slots__ = ()

    def lower(self, **kwargs: Any) -> Lowered:
        """Lower the traced call (``jax.stages.Traced.lower``)."""
        return Lowered(self._jit, self._stage.lower(**kwargs), self._key)


class Lowered(_Stage):
    """``nnx.jit(f).lower(*args)``: JAX's ``Lowered`` of the call (``.as_text()``, ...)."""

    __slots__ = ()

    def compile(self, *args: Any, **kwargs: Any) -> Compiled:
        """Compile it (``jax.stages.Lowered.compile``): a :class:`Compiled`."""
        return Compiled(self._jit, self._stage.compile(*args, **kwargs), self._key)


class Compiled(_Stage):
    """A compiled ``nnx.jit`` call: call it with the arguments it was lowered for (the
    same object structure, shapes and dtypes); their updates are written back."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        jit = self._jit
        call = jit._prepare(args, kwargs)
        if call.key != self._key:
            raise TypeError(
                f"{jit!r}: this Compiled was lowered for arguments of another structure "
                "(other objects, a different graph, or other static arguments); lower and "
                "compile again for these, or call the nnx.jit function itself."
            )
        return jit._run(
            self._stage,
            call.donate_mask,
            call.prep,
            call.routes,
            call.graph,
            call.layout,
            call.plain,
            call.plain_kw,
        )
