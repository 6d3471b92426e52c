"""Training with hijax Variables and plain `jax.jit` (seed 002's style).

    python examples/hijax_train.py [--steps 300]

A hijax Variable is itself a JAX type: a plain `jax.jit` function can take the model
as an argument, or just close over it, and the writes it makes (parameters, BatchNorm
statistics, the optimizer's state) land in the Python objects. `jax.grad` needs values
it may differentiate, so the step splits the parameters off and gives `jax.grad` an
immutable copy of them (`nnx.vars_as(params, mutable=False)`), while the rest (the
BatchNorm statistics) stays mutable and is updated in place by the forward pass.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import nnx


class MLP(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.bn = nnx.BatchNorm(dmid, momentum=0.9, rngs=rngs)
        self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(nnx.gelu(self.bn(self.linear1(x))))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)

    with nnx.var_defaults(hijax=True):  # Variables created here are hijax
        rngs = nnx.Rngs(0)
        model = MLP(2, 64, 1, rngs=rngs)
        optimizer = nnx.Optimizer(model, optax.adamw(3e-3), wrt=nnx.Param)
    print(f"model.linear1.kernel.hijax = {model.linear1.kernel.hijax}")

    x = rngs.uniform((256, 2), minval=-1.0, maxval=1.0)
    y = jnp.sin(3 * x[:, :1]) * jnp.cos(2 * x[:, 1:])

    @jax.jit  # plain JAX: no nnx transform anywhere
    def train_step(model, optimizer, x, y):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss_fn(params):
            model = nnx.merge(graphdef, params, rest)  # `rest` stays mutable: BN writes it
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(nnx.vars_as(params, mutable=False))
        optimizer.update(model, grads)  # writes go to the hijax Variables
        return loss

    @jax.jit
    def eval_loss(x, y):  # the model can also just be closed over
        return jnp.mean((model(x) - y) ** 2)

    first = None
    for step in range(1, args.steps + 1):
        loss = float(train_step(model, optimizer, x, y))
        first = loss if first is None else first
        if step == 1 or step % 100 == 0 or step == args.steps:
            print(f"step {step:4d}: loss {loss:.4f}")
    model.eval()  # BatchNorm uses the running statistics the steps wrote
    final = float(eval_loss(x, y))
    print(
        f"optimizer.step = {int(optimizer.step[...])}; "
        f"bn.mean[:3] = {jnp.round(model.bn.mean[:3], 3)}"
    )
    print(f"loss {first:.4f} -> {final:.4f} (eval mode) after {args.steps} steps")
    return {"first_loss": first, "eval_loss": final}


if __name__ == "__main__":
    main()
