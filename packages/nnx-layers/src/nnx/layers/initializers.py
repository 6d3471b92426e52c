"""Initializers: functions ``init(key, shape, dtype) -> array`` used by every layer.

Example::

    import nnx
    init = nnx.initializers.lecun_normal()
    w = init(jax.random.key(0), (3, 4), jnp.float32)
    layer = nnx.Linear(3, 4, kernel_init=nnx.initializers.xavier_uniform(), rngs=nnx.Rngs(0))

Factories (``lecun_normal()``, ``normal(stddev)``, ``variance_scaling(...)``) return an
initializer; ``zeros`` and ``ones`` are initializers themselves (``zeros_init()`` and
``ones_init()`` return them). These are JAX's own initializers
(:mod:`jax.nn.initializers`), so they compose with any JAX code.
"""

from __future__ import annotations

from jax.nn.initializers import (
    Initializer,
    constant,
    delta_orthogonal,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    normal,
    ones,
    orthogonal,
    truncated_normal,
    uniform,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
    zeros,
)


def zeros_init() -> Initializer:
    """The initializer that returns zeros: ``zeros_init()(key, (2,)) -> [0., 0.]``."""
    return zeros


def ones_init() -> Initializer:
    """The initializer that returns ones: ``ones_init()(key, (2,)) -> [1., 1.]``."""
    return ones


__all__ = [
    "Initializer",
    "constant",
    "delta_orthogonal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "ones_init",
    "orthogonal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
    "zeros_init",
]
