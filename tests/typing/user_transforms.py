"""The other transforms and graph functions, as a user writes them.

Checked by tools/check_typing.py (see user_train.py): every transform keeps the
decorated function's parameters and return type, bare (``@nnx.vmap``) and with options
(``@nnx.vmap(in_axes=...)``); ``split``/``state``/``merge`` keep the node's type.
"""

from __future__ import annotations

from typing import reveal_type

import jax
import jax.numpy as jnp

import nnx


class Block(nnx.Module):
    def __init__(self, d: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(d, d, rngs=rngs)
        self.count = nnx.Variable(jnp.array(0))

    @nnx.jit
    def forward(self, x: jax.Array) -> jax.Array:
        return self.linear(x)

    @nnx.remat
    def checkpointed(self, x: jax.Array) -> jax.Array:
        return self.linear(x)


block = Block(2, rngs=nnx.Rngs(0))
x = jnp.ones((4, 2))

# a jitted method binds self: the call takes x only
reveal_type(block.forward)  # reveal: (x: Array) -> Array
reveal_type(block.forward(x))  # reveal: Array
reveal_type(block.checkpointed(x))  # reveal: Array
reveal_type(Block.forward)  # reveal: JitWrapped[(self: Block, x: Array), Array]


@nnx.vmap(in_axes=(None, 0))
def per_example(block: Block, x: jax.Array) -> jax.Array:
    return block.linear(x)


reveal_type(per_example)  # reveal: VmapWrapped[(block: Block, x: Array), Array]
reveal_type(per_example(block, x))  # reveal: Array


@nnx.vmap
def create(key: jax.Array) -> Block:
    return Block(2, rngs=nnx.Rngs(key))


reveal_type(create(jax.random.split(jax.random.key(0), 3)))  # reveal: Block


@nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
def cumulative(total: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return total + x, total


reveal_type(cumulative)  # reveal: ScanWrapped[(total: Array, x: Array), tuple[Array, Array]]
final, partials = cumulative(jnp.zeros(2), x)
reveal_type(final)  # reveal: Array


def loss(block: Block, x: jax.Array) -> jax.Array:
    return jnp.sum(block.linear(x))


def loss_aux(block: Block, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    y = block.linear(x)
    return jnp.sum(y), {"y": y}


reveal_type(nnx.grad(loss))  # reveal: GradWrapped[(block: Block, x: Array), Any]
grads, aux = nnx.grad(loss_aux, has_aux=True)(block, x)
reveal_type(aux)  # reveal: dict[str, Array]
value, grads2 = nnx.value_and_grad(loss)(block, x)
reveal_type(value)  # reveal: Array
(value2, aux2), grads3 = nnx.value_and_grad(loss_aux, has_aux=True)(block, x)
reveal_type(aux2)  # reveal: dict[str, Array]


@nnx.value_and_grad(argnums=nnx.DiffState(0, nnx.Param))
def loss2(block: Block, x: jax.Array) -> jax.Array:
    return loss(block, x)


reveal_type(loss2)  # reveal: GradWrapped[(block: Block, x: Array), tuple[Array, Any]]
reveal_type(nnx.remat(loss))  # reveal: (block: Block, x: Array) -> Array
reveal_type(nnx.eval_shape(lambda: Block(2, rngs=nnx.Rngs(0))))  # reveal: Block
reveal_type(nnx.eval_shape(loss, block, x))  # reveal: Array


def step(block: Block) -> jax.Array:
    return block.linear(x)


reveal_type(nnx.cond(True, step, step, block))  # reveal: Array
reveal_type(nnx.switch(1, [step, step], block))  # reveal: Array
reveal_type(nnx.fori_loop(0, 3, lambda i, b: b, block))  # reveal: Block
reveal_type(nnx.while_loop(lambda c: c[1] < 3, lambda c: (c[0], c[1] + 1), (block, 0)))  # reveal: tuple[Block, int]

y_out, y_dot = nnx.jvp(step, (block,), (nnx.state(block, nnx.Param),))
reveal_type(y_out)  # reveal: Array
y_out2, pullback = nnx.vjp(step, block)
reveal_type(y_out2)  # reveal: Array
reveal_type(pullback)  # reveal: (Any) -> tuple[Any, ...]
y_out3, pullback3, vjp_aux = nnx.vjp(lambda b: (b.linear(x), 1.0), block, has_aux=True)
reveal_type(vjp_aux)  # reveal: float

# graph functions keep the node's type
graphdef, state = nnx.split(block)
reveal_type(graphdef)  # reveal: GraphDef[Block]
reveal_type(nnx.merge(graphdef, state))  # reveal: Block
graphdef2, params, rest = nnx.split(block, nnx.Param, ...)
reveal_type(params)  # reveal: State
reveal_type(nnx.state(block))  # reveal: State
reveal_type(nnx.state(block, nnx.Param, nnx.Variable))  # reveal: tuple[State, ...]
reveal_type(nnx.graphdef(block))  # reveal: GraphDef[Block]
reveal_type(nnx.clone(block))  # reveal: Block
reveal_type(block.linear.bias)  # reveal: Param[Array] | None
reveal_type(block.count)  # reveal: Variable[Array]

# The lines below must be flagged.
block.forward(x, x)  # error
per_example(block)  # error
nnx.grad(loss)(block, "x")  # error
merged_wrong: int = nnx.merge(graphdef, state)  # error
one, two = nnx.split(block)  # ok: graphdef and one State
one, two, three = nnx.split(block)  # error


@nnx.split_rngs(splits=3)
@nnx.vmap(in_axes=(0,), out_axes=0)
def create_stack(rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(2, 2, rngs=rngs)


reveal_type(create_stack(nnx.Rngs(0)))  # reveal: Linear
create_stack(1, 2)  # error
