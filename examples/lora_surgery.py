"""Model surgery: wrap a trained MLP's Linear layers with LoRA, then fine-tune only LoRA.

    python examples/lora_surgery.py [--pretrain-steps 300] [--finetune-steps 300]

Modules are ordinary mutable Python objects, so surgery is attribute assignment
(seed 003's "Model Surgery"). A Variable subclass (`LoraParam`) names the new
parameters, and that type is the filter that picks what trains: the optimizer
(`wrt=LoraParam`) and the gradient (`nnx.DiffState(0, LoraParam)`) see only them;
the pretrained weights stay exactly as they were. (nnx-layers ships the same idea
ready-made: `nnx.LoRA`, `nnx.LoRALinear`, `nnx.LoRAParam`.)
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnx


class Linear(nnx.Module):
    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.uniform(rngs.params(), (din, dout)) / din**0.5)
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.din, self.dout = din, dout

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w + self.b


class MLP(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = Linear(din, dmid, rngs=rngs)
        self.bn = nnx.BatchNorm(dmid, rngs=rngs)
        self.linear2 = Linear(dmid, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(nnx.gelu(self.bn(self.linear1(x))))


class LoraParam(nnx.Param):
    pass


class LoraLinear(nnx.Module):
    """`linear(x) + x @ A @ B`; B starts at zero, so the surgery keeps the outputs."""

    def __init__(self, linear: Linear, rank: int, *, rngs: nnx.Rngs):
        self.linear = linear
        self.A = LoraParam(jax.random.normal(rngs.params(), (linear.din, rank)) / rank)
        self.B = LoraParam(jnp.zeros((rank, linear.dout)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x) + x @ self.A @ self.B


def mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


@nnx.jit
def pretrain_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(mse)(model, x, y)  # every Param
    optimizer.update(grads)
    return loss


@nnx.jit
def finetune_step(model, optimizer, x, y):
    diff = nnx.DiffState(0, LoraParam)  # differentiate the LoRA parameters only
    loss, grads = nnx.value_and_grad(mse, argnums=diff)(model, x, y)
    optimizer.update(grads)
    return loss


def task(rngs: nnx.Rngs, shift: float):
    x = rngs.uniform((256, 4), minval=-2.0, maxval=2.0)
    y = jnp.stack([jnp.sin(x[:, 0] + shift) * x[:, 1], jnp.cos(x[:, 2] * x[:, 3] + shift)], -1)
    return x, y


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args(argv)

    rngs = nnx.Rngs(0)
    model = MLP(4, 64, 2, rngs=rngs)
    x_a, y_a = task(rngs, shift=0.0)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    for _ in range(args.pretrain_steps):
        loss = pretrain_step(model, optimizer, x_a, y_a)
    print(f"pretrained on task A: loss {float(loss):.4f}")

    # the new task: the same inputs, shifted targets
    x_b, y_b = task(rngs, shift=0.7)
    model.eval()
    before_surgery = model(x_b)
    model.train()

    # model surgery: replace attributes; the old Linear lives on inside the wrapper
    model.linear1 = LoraLinear(model.linear1, args.rank, rngs=rngs)
    model.linear2 = LoraLinear(model.linear2, args.rank, rngs=rngs)
    model.eval()
    np.testing.assert_allclose(model(x_b), before_surgery, rtol=1e-5, atol=1e-5)
    model.train()
    lora = nnx.state(model, LoraParam)
    frozen = nnx.state(model, nnx.All(nnx.Param, nnx.Not(LoraParam)))
    count = lambda s: sum(v.size for v in jax.tree.leaves(s))
    print(f"surgery: {count(lora)} LoRA parameters to train, {count(frozen)} frozen")
    frozen_before = jax.tree.map(np.asarray, frozen)

    start = float(mse(model, x_b, y_b))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=LoraParam)
    for _ in range(args.finetune_steps):
        loss = finetune_step(model, optimizer, x_b, y_b)
    print(f"fine-tuned LoRA on task B: loss {start:.4f} -> {float(loss):.4f}")

    frozen_after = nnx.state(model, nnx.All(nnx.Param, nnx.Not(LoraParam)))
    unchanged = all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(frozen_before), jax.tree.leaves(frozen_after))
    )
    print(f"pretrained weights unchanged: {unchanged}")
    assert unchanged
    return {"start": start, "end": float(loss)}


if __name__ == "__main__":
    main()
