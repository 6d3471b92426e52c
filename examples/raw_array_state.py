"""A model whose parameters are plain JAX arrays, trained with nnx (Flax NNX's "array leaves").

    python examples/raw_array_state.py [--steps 200]

Attributes of type `jax.Array` are dynamic state, like Variables: they have paths
(`linear1/w`), filters see them, and `nnx.jit` carries them in and writes them back. A
path predicate picks the parameters, for the optimizer (`wrt=is_param`) and for the
gradient (`nnx.DiffState(0, is_param)`). The run is checked against the same training
written by hand: `jax.grad` and `optax.sgd` over a dict of the same arrays.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import nnx


class Linear(nnx.Module):
    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.w = jax.random.normal(rngs.params(), (din, dout)) / jnp.sqrt(din)  # a raw array
        self.b = jnp.zeros((dout,))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w + self.b


class MLP(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.linear1 = Linear(1, 32, rngs=rngs)
        self.linear2 = Linear(32, 1, rngs=rngs)
        self.steps = jnp.array(0)  # a raw-array counter, not a parameter (is_param skips it)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(nnx.relu(self.linear1(x)))


def is_param(path: tuple, value: object) -> bool:
    """The parameters are the raw arrays named `w` and `b`, wherever they are."""
    del value
    return path[-1] in ("w", "b")


def loss_fn(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - y) ** 2)


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    loss = loss_fn(model, x, y)
    grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, is_param))(model, x, y)
    optimizer.update(model, grads)  # new arrays for w and b, written back by nnx.jit
    model.steps = model.steps + 1  # a raw array replaced inside nnx.jit is seen outside
    return loss


def reference(params: dict, x: jax.Array, y: jax.Array, steps: int, lr: float) -> dict:
    """The same training by hand: jax.grad and optax over a dict of arrays."""

    def forward(p, x):
        h = jax.nn.relu(x @ p["linear1"]["w"] + p["linear1"]["b"])
        return h @ p["linear2"]["w"] + p["linear2"]["b"]

    def loss(p):
        return jnp.mean((forward(p, x) - y) ** 2)

    tx = optax.sgd(lr)
    opt_state = tx.init(params)

    @jax.jit
    def step(p, opt_state):
        updates, opt_state = tx.update(jax.grad(loss)(p), opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    for _ in range(steps):
        params, opt_state = step(params, opt_state)
    return params


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args(argv)

    model = MLP(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(args.lr), wrt=is_param)
    params = nnx.state(model, is_param)
    print(f"raw-array parameters: {sorted('/'.join(map(str, p)) for p, _ in params.flat_state())}")
    start = jax.tree.map(jnp.array, nnx.to_pure_dict(params))  # a copy for the reference

    x = jnp.linspace(-1.0, 1.0, 64)[:, None]
    y = jnp.sin(3.0 * x)
    first = float(loss_fn(model, x, y))
    for step in range(1, args.steps + 1):
        loss = float(train_step(model, optimizer, x, y))
        if step == 1 or step % 50 == 0:
            print(f"step {step:4d}: loss {loss:.4f}")
    last = float(loss_fn(model, x, y))
    print(f"loss {first:.4f} -> {last:.4f} after {args.steps} steps")
    print(
        f"model.linear1.w is a jax.Array: {isinstance(model.linear1.w, jax.Array)}; "
        f"model.steps = {int(model.steps)}; optimizer.step = {int(optimizer.step[...])}"
    )

    expected = reference(start, x, y, args.steps, args.lr)
    trained = nnx.to_pure_dict(nnx.state(model, is_param))
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(expected))
    )
    print(f"max |nnx - jax.grad/optax by hand| = {diff:.2e}")
    return {"first_loss": first, "last_loss": last, "max_diff": diff}


if __name__ == "__main__":
    main()
