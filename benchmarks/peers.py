"""The same tiny-MLP training step written with the libraries nnx is measured against.

Imported by ``jit_overhead.py`` only when Flax and Equinox are installed (the
``bench`` environment of hatch.toml installs them: ``hatch run bench:jit``). Each
``make_*`` returns ``run(x, y) -> loss`` with the state kept between calls, exactly
like the nnx cases, so all cases time the same program: forward, backward and one
Adam update of a ``depth``-layer MLP of width 4.

- ``flax_jit``:    Flax NNX's ``nnx.jit`` + ``nnx.value_and_grad`` + ``nnx.Optimizer``,
                   the style of its "Flax Basics" guide;
- ``flax_split``:  Flax NNX's recommended fast pattern: ``nnx.split`` once, a plain
                   ``jax.jit`` over ``(graphdef, state)``, ``nnx.merge``/``nnx.split``
                   inside;
- ``equinox``:     ``eqx.filter_jit`` + ``eqx.filter_value_and_grad`` + optax, the model
                   and optimizer state returned each step.
"""

from __future__ import annotations

import equinox as eqx
import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx as fnnx

WIDTH = 4


class _FLinear(fnnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.w = fnnx.Param(jax.random.normal(rngs.params(), (din, dout)) * 0.1)
        self.b = fnnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        return x @ self.w + self.b


class _FMLP(fnnx.Module):
    def __init__(self, depth, *, rngs):
        self.layers = fnnx.List([_FLinear(WIDTH, WIDTH, rngs=rngs) for _ in range(depth)])

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.tanh(layer(x))
        return x


def _floss(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def make_flax_jit(depth: int):
    model = _FMLP(depth, rngs=fnnx.Rngs(0))
    optimizer = fnnx.Optimizer(model, optax.adam(1e-3), wrt=fnnx.Param)

    @fnnx.jit
    def step(model, optimizer, x, y):
        loss, grads = fnnx.value_and_grad(_floss)(model, x, y)
        optimizer.update(model, grads)
        return loss

    return lambda x, y: step(model, optimizer, x, y)


def make_flax_split(depth: int):
    model = _FMLP(depth, rngs=fnnx.Rngs(0))
    optimizer = fnnx.Optimizer(model, optax.adam(1e-3), wrt=fnnx.Param)
    graphdef, state = fnnx.split((model, optimizer))

    @jax.jit
    def step(state, x, y):
        model, optimizer = fnnx.merge(graphdef, state)
        loss, grads = fnnx.value_and_grad(_floss)(model, x, y)
        optimizer.update(model, grads)
        return fnnx.state((model, optimizer)), loss

    box = [state]

    def run(x, y):
        box[0], loss = step(box[0], x, y)
        return loss

    return run


class _ELinear(eqx.Module):
    w: jax.Array
    b: jax.Array

    def __init__(self, key):
        self.w = jax.random.normal(key, (WIDTH, WIDTH)) * 0.1
        self.b = jnp.zeros((WIDTH,))

    def __call__(self, x):
        return x @ self.w + self.b


class _EMLP(eqx.Module):
    layers: list

    def __init__(self, depth, key):
        self.layers = [_ELinear(k) for k in jax.random.split(key, depth)]

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.tanh(layer(x))
        return x


def make_equinox(depth: int):
    tx = optax.adam(1e-3)
    model = _EMLP(depth, jax.random.key(0))
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, x, y):
        loss, grads = eqx.filter_value_and_grad(_floss)(model, x, y)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    box = [model, opt_state]

    def run(x, y):
        box[0], box[1], loss = step(box[0], box[1], x, y)
        return loss

    return run


MAKERS = {"flax_jit": make_flax_jit, "flax_split": make_flax_split, "equinox": make_equinox}
VERSIONS = {"flax": flax.__version__, "equinox": eqx.__version__}
