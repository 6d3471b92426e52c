"""Activation functions (JAX's own, re-exported) and ``PReLU``, a learnable one.

Example::

    y = nnx.gelu(x)
    p = nnx.softmax(jnp.array([1.0, 2.0, 3.0]), axis=-1)
    act = nnx.PReLU()   # y = x if x >= 0 else slope * x
    print(act(jnp.array([-1.0, 2.0])))  # [-0.01  2.  ]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
from nnx.layers._dtypes import promote_dtype


class PReLU(Module):
    """Parametric ReLU: ``x`` where ``x >= 0``, ``negative_slope * x`` elsewhere.

    Example::

        act = nnx.PReLU(negative_slope_init=0.1)
        act(jnp.array([-1.0, 2.0]))   # [-0.1, 2.0]

    The slope is a scalar ``Param`` named ``negative_slope`` (with
    ``negative_slope_metadata``). With ``dtype`` the input and slope are cast by
    ``promote_dtype``; without, the slope takes the input's dtype. ``rngs`` is accepted
    and unused (the slope is a constant).
    """

    def __init__(
        self,
        negative_slope_init: float = 0.01,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        promote_dtype: Callable[..., Any] = promote_dtype,
        negative_slope_metadata: Mapping[str, Any] | None = None,
        *,
        rngs: Any = None,  # noqa: ARG002
    ):
        self.negative_slope: Param[jax.Array] = Param(
            jnp.asarray(negative_slope_init, dtype=param_dtype),
            **dict(negative_slope_metadata or {}),
        )
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype

    def __call__(self, inputs: jax.Array) -> jax.Array:
        slope = self.negative_slope[...]
        if self.dtype is not None:
            inputs, slope = self.promote_dtype((inputs, slope), dtype=self.dtype)
        else:
            slope = jnp.asarray(slope, jnp.result_type(inputs))
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
