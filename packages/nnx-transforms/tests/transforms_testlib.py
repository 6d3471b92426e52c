"""Small layers shared by the transform tests (only nnx-core is needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import nnx


def add_bias(y, b):
    """``y + b``, ``b`` broadcast explicitly over ``y``'s leading axes (the tests run
    with ``jax_numpy_rank_promotion="raise"``, root conftest.py)."""
    b = b[...]
    return y + jnp.reshape(b, (1,) * (y.ndim - b.ndim) + b.shape)


class Linear(nnx.Module):
    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (din, dout)) * 0.5)
        self.b = nnx.Param(jnp.zeros((dout,)) + 0.1)

    def __call__(self, x):
        return add_bias(x @ self.w, self.b)


class BatchNorm(nnx.Module):
    """Running mean only: enough to check BatchStat updates."""

    def __init__(self, n: int, *, momentum: float = 0.9):
        self.mean = nnx.BatchStat(jnp.zeros((n,)))
        self.momentum = momentum
        self.use_running_average = False

    def __call__(self, x):
        if self.use_running_average:
            return x - jnp.broadcast_to(self.mean[...], x.shape)
        m = jnp.mean(x, axis=0)
        self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * m
        return x - jnp.broadcast_to(m, x.shape)


class Dropout(nnx.Module):
    """Keeps its own random stream (like Flax's Dropout)."""

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        self.rate = rate
        self.rngs = rngs["dropout"].fork()

    def __call__(self, x):
        keep = jax.random.bernoulli(self.rngs(), 1 - self.rate, x.shape)
        return jnp.where(keep, x / (1 - self.rate), 0.0)


class MLP(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = Linear(din, dmid, rngs=rngs)
        self.bn = BatchNorm(dmid)
        self.dropout = Dropout(0.5, rngs=rngs)
        self.linear2 = Linear(dmid, dout, rngs=rngs)

    def __call__(self, x):
        return self.linear2(jnp.tanh(self.dropout(self.bn(self.linear1(x)))))


class Counter(nnx.Module):
    def __init__(self):
        self.count = nnx.BatchStat(jnp.array(0))

    def __call__(self):
        self.count[...] += 1


class SGD(nnx.Module):
    """A tiny optimizer that holds the model (like seed 003's Optimizer)."""

    def __init__(self, model, lr: float = 0.1):
        self.model = model
        self.lr = lr
        self.step = nnx.Variable(jnp.array(0, jnp.uint32))

    def update(self, grads):
        params = nnx.state(self.model, nnx.Param)
        for (_path, p), (_, g) in zip(params.flat_state(), grads.flat_state()):
            p[...] = p[...] - self.lr * g[...]
        self.step[...] += 1


def mlp_reference(params, mean, x, momentum=0.9):
    """The MLP without dropout, in plain JAX: (y, new running mean)."""
    h = add_bias(x @ params["linear1"]["w"], params["linear1"]["b"])
    m = jnp.mean(h, axis=0)
    new_mean = momentum * mean + (1 - momentum) * m
    h = jnp.tanh(h - jnp.broadcast_to(m, h.shape))
    return add_bias(h @ params["linear2"]["w"], params["linear2"]["b"]), new_mean
