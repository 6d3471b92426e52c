"""Activation functions (JAX's own, re-exported) and ``PReLU``, a learnable one.

Example::

    y = nnx.gelu(x)
    p = nnx.softmax(jnp.array([1.0, 2.0, 3.0]), axis=-1)
    act = nnx.PReLU()   # y = x if x >= 0 else slope * x
    print(act(jnp.array([-1.0, 2.0])))  # [-0.01  2.  ]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import (
    celu,
    elu,
    gelu,
    glu,
    hard_sigmoid,
    hard_silu,
    hard_swish,
    hard_tanh,
    identity,
    leaky_relu,
    log1mexp,
    log_sigmoid,
    log_softmax,
    logmeanexp,
    logsumexp,
    mish,
    one_hot,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    soft_sign,
    softmax,
    softplus,
    sparse_plus,
    sparse_sigmoid,
    squareplus,
    standardize,
    swish,
    tanh,
)

from nnx.core import Module, Param
from nnx.layers._common import Dtype


class PReLU(Module):
    """Parametric ReLU: ``x`` where ``x >= 0``, ``negative_slope * x`` elsewhere.

    Example::

        act = nnx.PReLU(negative_slope_init=0.1)
        act(jnp.array([-1.0, 2.0]))   # [-0.1, 2.0]

    The slope is a scalar ``Param`` named ``negative_slope``.
    """

    def __init__(
        self, negative_slope_init: float = 0.01, param_dtype: Dtype = jnp.float32, *, rngs=None
    ):
        self.negative_slope = Param(jnp.asarray(negative_slope_init, dtype=param_dtype))

    def __call__(self, inputs: jax.Array) -> jax.Array:
        slope = jnp.asarray(self.negative_slope[...], inputs.dtype)
        return jnp.where(inputs >= 0, inputs, slope * inputs)


__all__ = [
    "PReLU",
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "identity",
    "leaky_relu",
    "log1mexp",
    "log_sigmoid",
    "log_softmax",
    "logmeanexp",
    "logsumexp",
    "mish",
    "one_hot",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "standardize",
    "swish",
    "tanh",
]
