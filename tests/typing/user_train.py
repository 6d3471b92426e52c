"""A user's training file, as an editor (pyright/Pylance) sees it.

Checked by tools/check_typing.py: no error on ordinary lines, an error on each line
marked ``# error``, and each ``reveal_type(...)  # reveal: TEXT`` shows a type that
contains TEXT.
"""

from __future__ import annotations

from functools import partial
from typing import reveal_type

import jax
import jax.numpy as jnp
import optax

import nnx


class Model(nnx.Module):
    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.bn = nnx.BatchNorm(dout, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(self.bn(self.linear(x)))


model = Model(2, 3, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
reveal_type(optimizer)  # reveal: Optimizer[Model]
annotated: nnx.Optimizer[Model] = optimizer


def loss_fn(model: Model, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - y) ** 2)


@nnx.jit
def train_step(
    model: Model, optimizer: nnx.Optimizer[Model], x: jax.Array, y: jax.Array
) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit(donate_argnums=(0,))
def eval_step(model: Model, x: jax.Array) -> jax.Array:
    return model(x)


@partial(nnx.jit, static_argnames="train")
def predict(model: Model, x: jax.Array, *, train: bool = False) -> jax.Array:
    return model(x)


@nnx.jit(static_argnums=2)
def forward_n(model: Model, x: jax.Array, n: int) -> jax.Array:
    return model(x) * n


x, y = jnp.ones((4, 2)), jnp.ones((4, 3))
loss = train_step(model, optimizer, x, y)
reveal_type(train_step)  # reveal: JitWrapped[(model: Model, optimizer: Optimizer[Model], x: Array, y: Array), Array]
reveal_type(loss)  # reveal: Array
reveal_type(eval_step(model, x))  # reveal: Array
reveal_type(predict(model, x, train=True))  # reveal: Array
reveal_type(forward_n(model, x, 3))  # reveal: Array

grad_fn = nnx.grad(loss_fn)
reveal_type(grad_fn)  # reveal: Model

(loss2, aux), grads2 = nnx.value_and_grad(lambda m: (loss_fn(m, x, y), 1), has_aux=True)(model)
reveal_type(aux)  # reveal: Literal[1]

params = nnx.state(model, nnx.Param)
reveal_type(params)  # reveal: State
rest_a, rest_b = nnx.state(model, nnx.Param, nnx.BatchStat)
reveal_type(rest_a)  # reveal: State
graphdef, state = nnx.split(model)
graphdef2, p, rest = nnx.split(model, nnx.Param, ...)
merged = nnx.merge(graphdef, state)
reveal_type(merged)  # reveal: Model
merged.linear(x)

kernel = model.linear.kernel
shifted = kernel + 1.0
scaled = 2.0 * kernel
kernel[...] = kernel[...] - 0.1
kernel.value = jnp.zeros((2, 3))
reveal_type(kernel)  # reveal: Param[Array]
reveal_type(kernel[...])  # reveal: Array
count = nnx.Param(jnp.zeros(3))
reveal_type(count)  # reveal: Param[Array]

# The lines below must be flagged.
train_step(model, x)  # error
bad: int = model.linear  # error
text: str = kernel[...]  # error
n: int = kernel[...]  # error
wrong_value: str = kernel.value  # error
train_step(model, optimizer, x, y, 1)  # error
eval_step(model, x, y)  # error
predict(model, x, training=True)  # error
forward_n(model, x, "3")  # error
