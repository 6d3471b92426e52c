"""The functional API by hand: split, merge and update around plain `jax.jit`.

    python examples/functional_api.py [--steps 100]

What the nnx transforms do for you, written out (seed 003's "The Functional API"):
`nnx.split` turns a module into a static `GraphDef` and `State`s (pytrees of arrays,
one per filter); inside `jax.jit`, `nnx.merge` rebuilds the module, it runs (and
mutates its own state), `nnx.split` collects the new state; outside, `nnx.update`
writes it back into the original module. The training step keeps the parameters,
the optimizer state and the counter as pure pytrees the whole time.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import nnx


class Count(nnx.Variable):
    """A custom Variable kind: how many times the module ran."""


class StatefulLinear(nnx.Module):
    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.uniform(rngs(), (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.count = Count(jnp.array(0, dtype=jnp.uint32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count += 1
        return x @ self.w + self.b


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args(argv)

    model = StatefulLinear(3, 2, rngs=nnx.Rngs(0))

    # 1. one forward pass, by hand
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array):
        model = nnx.merge(graphdef, state)  # a new module inside the trace
        y = model(x)  # it mutates its own count
        _, state = nnx.split(model)  # collect the new state
        return y, state

    y, state = forward(graphdef, state, jnp.ones((1, 3)))
    print(f"before update: model.count = {int(model.count[...])}")
    nnx.update(model, state)  # write the new state back into the original module
    print(f"after update:  model.count = {int(model.count[...])}")

    # 2. a training loop over pure pytrees: filters split params from the counter
    graphdef, params, counts = nnx.split(model, nnx.Param, Count)
    print(f"params: {sorted(params)}, counts: {sorted(counts)}")
    tx = optax.sgd(0.1)
    opt_state = tx.init(params)

    x = jax.random.normal(jax.random.key(1), (64, 3))
    true_w = jnp.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]])
    y = x @ true_w + 0.5

    @jax.jit
    def train_step(params, counts, opt_state, x, y):
        def loss_fn(params):
            # copy=True: new Variables inside jax.grad's trace (the given ones belong to
            # jit's trace, and writing them from the inner trace would be an error)
            model = nnx.merge(graphdef, params, counts, copy=True)
            loss = jnp.mean((model(x) - y) ** 2)
            return loss, nnx.state(model, Count)  # the mutated counter is an output

        (loss, counts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), counts, opt_state, loss

    for step in range(1, args.steps + 1):
        params, counts, opt_state, loss = train_step(params, counts, opt_state, x, y)
        if step == 1 or step % 25 == 0 or step == args.steps:
            print(f"step {step:4d}: loss {float(loss):.5f}")

    nnx.update(model, params, counts)  # back into the live module
    err = float(jnp.max(jnp.abs(model.w[...] - true_w)))
    print(f"model.count = {int(model.count[...])}; max |w - true_w| = {err:.4f}")
    return {"loss": float(loss), "count": int(model.count[...]), "w_err": err}


if __name__ == "__main__":
    main()
