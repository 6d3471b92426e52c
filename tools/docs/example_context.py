# What every docstring example may use without defining it: the names below (and
# nothing else). tests/test_docs_docstrings.py runs each example in a fresh copy of this
# namespace, and the API reference's index page shows this file, so a reader knows what
# `model`, `x` or `MLP` in an example stand for.
import jax
import jax.numpy as jnp
import numpy as np  # noqa: F401  (examples may use np)
import optax

import nnx


class MLP(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.bn = nnx.BatchNorm(dmid, rngs=rngs)
        self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(nnx.relu(self.bn(self.dropout(self.linear1(x)))))


def loss_fn(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


rngs = nnx.Rngs(0)
model = MLP(2, 16, 1, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
