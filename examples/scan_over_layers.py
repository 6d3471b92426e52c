"""A deep residual MLP as one stacked layer: `nnx.vmap` creates it, `nnx.scan` applies it.

    python examples/scan_over_layers.py [--layers 8] [--steps 200]

Creating N layers under `nnx.vmap` gives one module whose every Variable has a leading
axis of size N, so the program compiles one layer instead of N. `nnx.scan` runs the
layers one after another with the activations as the carry. The script checks the
scan against a Python loop over the layers, then fits a toy regression with
`nnx.jit` + `nnx.Optimizer` through the scanned stack.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import nnx


class Block(nnx.Module):
    """One residual layer: x + Linear(gelu(LayerNorm(x)))."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.linear = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + 0.5 * self.linear(nnx.gelu(self.norm(x)))


class ScannedMLP(nnx.Module):
    def __init__(self, din: int, dim: int, dout: int, num_layers: int, *, rngs: nnx.Rngs):
        self.embed = nnx.Linear(din, dim, rngs=rngs)

        @nnx.vmap(in_axes=0, out_axes=0)  # one Block per key: Variables stacked on axis 0
        def create_stack(key: jax.Array) -> Block:
            return Block(dim, rngs=nnx.Rngs(key))

        self.blocks = create_stack(jax.random.split(rngs.params(), num_layers))
        self.head = nnx.Linear(dim, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)  # block i gets slice i
        def forward(block: Block, x: jax.Array) -> jax.Array:
            return block(x)

        return self.head(forward(self.blocks, self.embed(x)))


def loop_forward(model: ScannedMLP, x: jax.Array) -> jax.Array:
    """The same model applied with a Python loop over the stack (for the check)."""
    graphdef, state = nnx.split(model.blocks)
    h = model.embed(x)
    num_layers = jax.tree.leaves(state)[0].shape[0]
    for i in range(num_layers):
        block = nnx.merge(graphdef, jax.tree.map(lambda v, i=i: v[i], state))
        h = block(h)
    return model.head(h)


@nnx.jit
def train_step(model: ScannedMLP, optimizer: nnx.Optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(grads)
    return loss


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)

    rngs = nnx.Rngs(0)
    model = ScannedMLP(1, args.dim, 1, args.layers, rngs=rngs)
    kernel = model.blocks.linear.kernel
    print(f"blocks.linear.kernel: {kernel.shape} (layers, in, out), one compiled layer")

    x = jnp.linspace(-3, 3, 128)[:, None]
    y = jnp.sin(2 * x) + 0.1 * rngs.normal(x.shape)
    err = float(jnp.max(jnp.abs(model(x) - loop_forward(model, x))))
    print(f"max |scan - python loop| = {err:.2e}")
    assert err < 1e-4, "the scan and the loop disagree"

    optimizer = nnx.Optimizer(model, optax.adam(3e-3))
    first = None
    for step in range(1, args.steps + 1):
        loss = float(train_step(model, optimizer, x, y))
        first = loss if first is None else first
        if step == 1 or step % 50 == 0 or step == args.steps:
            print(f"step {step:4d}: loss {loss:.4f}")
    print(f"loss {first:.4f} -> {loss:.4f} after {args.steps} steps")
    return {"first_loss": first, "last_loss": loss, "scan_vs_loop": err}


if __name__ == "__main__":
    main()
