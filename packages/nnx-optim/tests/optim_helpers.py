"""A small model and an independent optax loop shared by the nnx-optim tests."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnx

MODES = {"plain": {}, "ref": {"ref": True}, "hijax": {"hijax": True}}

X = jnp.linspace(-1.0, 1.0, 12).reshape(6, 2)
Y = jnp.stack([jnp.sin(X[:, 0]), jnp.cos(X[:, 1]), X[:, 0] * X[:, 1]], axis=1)


class LoRAParam(nnx.Param):
    pass


class Linear(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (din, dout)) * 0.5)
        self.bias = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        return x @ self.kernel + self.bias[None]


class MLP(nnx.Module):
    """Two layers, a non-trained statistic and an optional LoRA adapter."""

    def __init__(self, *, rngs, lora=False):
        self.l1 = Linear(2, 8, rngs=rngs)
        self.l2 = Linear(8, 3, rngs=rngs)
        self.calls = nnx.BatchStat(jnp.array(0.0))
        self.lora = LoRAParam(jnp.full((2, 3), 0.1)) if lora else None

    def __call__(self, x):
        y = self.l2(jnp.tanh(self.l1(x)))
        if self.lora is not None:
            y = y + x @ self.lora
        return y


def loss_of(model):
    return jnp.mean((model(X) - Y) ** 2)


def make(mode="plain", **kw):
    with nnx.var_defaults(**MODES[mode]) if MODES[mode] else _null():
        return MLP(rngs=nnx.Rngs(0), **kw)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        pass


def pure_params(model, wrt: nnx.Filter = nnx.Param):
    """The selected values as a nested dict of arrays (fresh copies)."""
    return jax.tree.map(jnp.array, nnx.state(model, wrt).to_pure_dict())


def forward(p, x):
    """The model's forward pass written directly on a pure dict (independent of nnx)."""
    h = jnp.tanh(x @ p["l1"]["kernel"] + p["l1"]["bias"][None])
    y = h @ p["l2"]["kernel"] + p["l2"]["bias"][None]
    if "lora" in p:
        y = y + x @ p["lora"]
    return y


def _deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(a[k], v) if isinstance(v, dict) and k in a else v
    return out


def reference_loop(model, tx, steps, wrt: nnx.Filter = nnx.Param, *, return_state=False, **extra):
    """Plain optax on pure dicts: the numbers nnx.Optimizer must reproduce.

    Returns the parameters after ``steps`` steps (and the optax state if
    ``return_state``)."""
    everything = pure_params(model, nnx.Param)
    params = pure_params(model, wrt)

    def loss(p):
        return jnp.mean((forward(_deep_merge(everything, p), X) - Y) ** 2)

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params, **extra)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for _ in range(steps):
        params, opt_state = step(params, opt_state)
    return (params, opt_state) if return_state else params


@functools.partial(jax.jit, static_argnums=0)
def _grads(graphdef, params, rest):
    return jax.grad(lambda p: loss_of(nnx.merge(graphdef, p, rest)))(params)


def frozen_grads(model, wrt: nnx.Filter = nnx.Param):
    """Gradients as a State of immutable Variables (seed 002's split/merge form)."""
    graphdef, params, rest = nnx.split(model, wrt, ...)
    return _grads(graphdef, nnx.vars_as(params, mutable=False), nnx.to_arrays(rest))


def assert_params_close(model, expected, wrt: nnx.Filter = nnx.Param, tol=1e-6):
    got = nnx.state(model, wrt).to_pure_dict()
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def pure_value_fn(p):
    """The loss on a pure dict of parameters (what a line search re-evaluates)."""
    return jnp.mean((forward(p, X) - Y) ** 2)


def assert_trees_close(got, expected, tol=1e-6):
    """Same structure and leaves within ``tol`` (States compare as pure dicts)."""
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
