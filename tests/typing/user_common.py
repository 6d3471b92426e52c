"""Everyday nnx code that must type-check without false errors.

Checked by tools/check_typing.py (see user_train.py).
"""

from __future__ import annotations

from typing import reveal_type

import jax
import jax.numpy as jnp
import optax

import nnx


class MLP(nnx.Module):
    def __init__(self, din: int, dhidden: int, dout: int, *, rngs: nnx.Rngs):
        self.layers = nnx.Sequential(
            nnx.Linear(din, dhidden, rngs=rngs),
            nnx.relu,
            nnx.Linear(dhidden, dout, rngs=rngs),
        )
        self.norm = nnx.LayerNorm(dout, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.conv = nnx.Conv(1, 2, kernel_size=(3, 3), rngs=rngs)
        self.embed = nnx.Embed(10, dout, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=1, in_features=dout, qkv_features=dout, decode=False, rngs=rngs
        )
        self.blocks = nnx.List([nnx.Linear(dout, dout, rngs=rngs) for _ in range(2)])
        self.count = nnx.Variable(jnp.array(0))
        self.rngs = rngs

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count[...] += 1
        self.count.value = self.count.value + 1
        y = self.dropout(self.norm(self.layers(x)))
        for block in self.blocks:
            y = block(y)
        self.sow(nnx.Intermediate, "y", y)
        return y + nnx.gelu(y) + jax.nn.sigmoid(y)


rngs = nnx.Rngs(0, dropout=1)
model = MLP(2, 8, 3, rngs=rngs)
key = rngs.dropout()
reveal_type(rngs.params())  # reveal: Array
noise = jax.random.normal(rngs(), (3,))
y = model(jnp.ones((4, 2)))
model.eval()
model.train()
model.set_attributes(deterministic=True)

optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
metrics = nnx.MultiMetric(loss=nnx.metrics.Average("loss"), accuracy=nnx.metrics.Accuracy())
metrics.update(loss=jnp.array(1.0), logits=jnp.ones((4, 3)), labels=jnp.zeros(4, jnp.int32))
results = metrics.compute()
metrics.reset()

state = nnx.state(model)
nnx.update(model, state)
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
model2 = nnx.merge(graphdef, params, rest)
reveal_type(model2.layers)  # reveal: Sequential
intermediates = nnx.pop(model, nnx.Intermediate)
for path, node in nnx.iter_graph(model):
    print(path, type(node).__name__)
pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
abstract = nnx.eval_shape(lambda: MLP(2, 8, 3, rngs=nnx.Rngs(0)))
init = nnx.initializers.lecun_normal()
w = init(jax.random.key(0), (2, 3), jnp.float32)
sharded = nnx.with_partitioning(nnx.initializers.zeros_init(), ("data", None))
p = nnx.Param(jnp.ones(3), sharding_names=("data",))
p2 = p.replace(jnp.zeros(3))
total = sum(jnp.sum(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
graphdef3, state3 = nnx.graph.split(model)
