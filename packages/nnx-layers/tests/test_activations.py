"""Activations: the jax.nn set is exported, and each one computes its textbook formula."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

X = np.linspace(-4.0, 4.0, 17)
TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# name -> numpy formula written from its definition
FORMULAS = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "celu": lambda x: np.where(x > 0, x, np.expm1(x)),  # alpha = 1
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "softplus": _softplus,
    "soft_sign": lambda x: x / (1 + np.abs(x)),
    "log_sigmoid": lambda x: -_softplus(-x),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "squareplus": lambda x: (x + np.sqrt(x**2 + 4)) / 2,
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0, 1),
    "identity": lambda x: x,
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_elementwise_activation_matches_its_formula(name):
    np.testing.assert_allclose(getattr(nnx, name)(jnp.asarray(X)), FORMULAS[name](X), **TOL)


def test_exact_gelu_uses_erf():
    from math import erf

    expected = [0.5 * x * (1 + erf(x / np.sqrt(2))) for x in X]
    np.testing.assert_allclose(nnx.gelu(jnp.asarray(X), approximate=False), expected, **TOL)


def test_softmax_family_by_hand():
    z = np.array([[1.0, 2.0, 4.0], [0.0, -1.0, 3.0]])
    e = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(nnx.softmax(jnp.asarray(z)), e / e.sum(-1, keepdims=True), **TOL)
    lse = np.log(np.exp(z).sum(-1))
    np.testing.assert_allclose(nnx.log_softmax(jnp.asarray(z)), z - lse[:, None], **TOL)
    np.testing.assert_allclose(nnx.logsumexp(jnp.asarray(z), axis=-1), lse, **TOL)
    np.testing.assert_allclose(
        nnx.logmeanexp(jnp.asarray(z), axis=-1), np.log(np.exp(z).mean(-1)), **TOL
    )
    np.testing.assert_allclose(nnx.softmax(jnp.asarray(z), axis=0).sum(0), [1.0, 1.0, 1.0], **TOL)


def test_glu_standardize_log1mexp_one_hot_by_hand():
    x = np.array([[1.0, -2.0, 0.5, 3.0]])
    np.testing.assert_allclose(nnx.glu(jnp.asarray(x)), x[:, :2] * _sigmoid(x[:, 2:]), **TOL)
    s = nnx.standardize(jnp.asarray(x))
    np.testing.assert_allclose(s, (x - x.mean()) / np.sqrt(x.var() + 1e-5), **TOL)
    pos = np.array([0.1, 1.0, 5.0])
    np.testing.assert_allclose(nnx.log1mexp(jnp.asarray(pos)), np.log(1 - np.exp(-pos)), **TOL)
    np.testing.assert_array_equal(nnx.one_hot(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_parameters_of_activations_are_honoured():
    np.testing.assert_allclose(
        nnx.leaky_relu(jnp.asarray(X), negative_slope=0.2), np.where(X >= 0, X, 0.2 * X), **TOL
    )
    np.testing.assert_allclose(
        nnx.celu(jnp.asarray(X), alpha=2.0), np.where(X > 0, X, 2 * np.expm1(X / 2)), **TOL
    )
    np.testing.assert_allclose(
        nnx.elu(jnp.asarray(X), alpha=0.5), np.where(X > 0, X, 0.5 * np.expm1(X)), **TOL
    )


# jax.nn functions that are not activations nnx.layers re-exports, with the reason
NOT_REEXPORTED = {
    "dot_product_attention": "nnx.dot_product_attention is the layer's own (same argument names as Flax)",
    "initializers": "nnx.initializers",
    "get_scaled_dot_general_config": "low-level quantization config, not an activation",
    "scaled_dot_general": "low-level quantized contraction, not an activation",
    "scaled_matmul": "low-level quantized contraction, not an activation",
}


def test_every_jax_nn_function_is_exported_from_nnx_layers():
    names = [n for n in dir(jax.nn) if not n.startswith("_") and callable(getattr(jax.nn, n))]
    missing = [n for n in names if n not in nnx.layers.__all__ and n not in NOT_REEXPORTED]
    assert not missing, f"jax.nn functions missing from nnx.layers: {missing}"
    for n in names:
        if n in nnx.layers.__all__ and n not in NOT_REEXPORTED:
            assert getattr(nnx, n) is getattr(jax.nn, n), n


def test_prelu_learnable_slope():
    act = nnx.PReLU(negative_slope_init=0.1)
    np.testing.assert_allclose(act(jnp.array([-1.0, 2.0])), [-0.1, 2.0], rtol=1e-6)
    assert isinstance(act.negative_slope, nnx.Param) and act.negative_slope.shape == ()
    g = jax.grad(lambda s: jnp.sum(jnp.where(X >= 0, X, s * X)))(0.1)
    graphdef, params = nnx.split(act)
    g_layer = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(jnp.asarray(X))))(
        nnx.vars_as(params, mutable=False)
    )
    np.testing.assert_allclose(g_layer["negative_slope"][...], g, rtol=1e-5)
    np.testing.assert_allclose(g, X[X < 0].sum(), rtol=1e-5)
