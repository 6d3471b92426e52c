"""``Sequential``: call layers one after another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnx.core import List, Module


class Sequential(Module):
    """Applies its layers in order; each one's output is the next one's input.

    Example::

        model = nnx.Sequential(
            nnx.Linear(2, 8, rngs=rngs),
            nnx.relu,
            nnx.Linear(8, 1, rngs=rngs),
        )
        y = model(jnp.ones((4, 2)))

    The first layer receives all the arguments. A tuple output is unpacked into the
    positional arguments of the next layer, a dict output into its keywords. Layers
    may be modules or plain functions; they live in ``self.layers`` (a list you can
    index, slice and edit).
    """

    def __init__(self, *fns: Callable[..., Any]):
        # an nnx.List, as in Flax NNX (a module of its own: nnx.iter_modules yields it)
        self.layers: list[Any] = List(fns)  # modules or functions, edited by users

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output: Any = None
        for i, f in enumerate(self.layers):
            if not callable(f):
                raise TypeError(
                    f"Sequential.layers[{i}] is a {type(f).__name__}, which is not callable."
                )
            if i > 0:
                if isinstance(output, tuple):
                    args, kwargs = output, {}
                elif isinstance(output, dict):
                    args, kwargs = (), output
                else:
                    args, kwargs = (output,), {}
            output = f(*args, **kwargs)
        if not self.layers:
            return args[0] if len(args) == 1 and not kwargs else args
        return output

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self.layers[i])
        return self.layers[i]
