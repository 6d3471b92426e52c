"""Initializers: functions ``init(key, shape, dtype) -> array`` used by every layer.

Example::

    import nnx
    init = nnx.initializers.lecun_normal()
    w = init(jax.random.key(0), (3, 4), jnp.float32)
    layer = nnx.Linear(3, 4, kernel_init=nnx.initializers.xavier_uniform(), rngs=nnx.Rngs(0))

Factories (``lecun_normal()``, ``normal(stddev)``, ``variance_scaling(...)``) return an
initializer; ``zeros`` and ``ones`` are initializers themselves (``zeros_init()`` and
``ones_init()`` return them). They compute JAX's own initializers
(:mod:`jax.nn.initializers`), so they compose with any JAX code; what the factories
return also pickles (so do the models that hold it) and compares equal when made
with the same arguments.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
from jax.nn.initializers import Initializer, ones, zeros


class _Made:
    """An initializer made by one of JAX's factories, kept with how it was made.

    It calls JAX's initializer (same numbers), pickles as the factory's name and
    arguments (a JAX initializer is a closure, which ``pickle`` cannot store, so
    models holding one could not be pickled), and compares equal to one made the
    same way (layers keep their initializers as static attributes, part of a
    GraphDef: two models built alike share their compiled programs).
    """

    __slots__ = ("_name", "_args", "_kwargs", "_init", "_hash")

    def __init__(self, name: str, args: tuple, kwargs: dict):
        self._name, self._args, self._kwargs = name, args, kwargs
        self._init = getattr(jax.nn.initializers, name)(*args, **kwargs)
        try:
            self._hash = hash((name, args, tuple(sorted(kwargs.items()))))
        except TypeError:  # an unhashable argument (an array): compare by identity
            self._hash = None

    def __call__(self, key, shape, dtype: Any = None, *args, **kwargs):
        if dtype is None:
            return self._init(key, shape, *args, **kwargs)
        return self._init(key, shape, dtype, *args, **kwargs)

    def __reduce__(self):
        return (_Made, (self._name, self._args, self._kwargs))

    def __eq__(self, other):
        if self._hash is None or type(other) is not _Made:
            return self is other
        return (self._name, self._args, self._kwargs) == (other._name, other._args, other._kwargs)

    def __hash__(self):
        return id(self) if self._hash is None else self._hash

    def __repr__(self) -> str:
        parts = [repr(a) for a in self._args] + [f"{k}={v!r}" for k, v in self._kwargs.items()]
        return f"nnx.initializers.{self._name}({', '.join(parts)})"


def _factory(name: str):
    made_by = getattr(jax.nn.initializers, name)

    @functools.wraps(made_by)
    def factory(*args, **kwargs) -> Initializer:
        return _Made(name, args, kwargs)

    factory.__module__ = __name__
    return factory


constant = _factory("constant")
delta_orthogonal = _factory("delta_orthogonal")
glorot_normal = _factory("glorot_normal")
glorot_uniform = _factory("glorot_uniform")
he_normal = _factory("he_normal")
he_uniform = _factory("he_uniform")
kaiming_normal = _factory("kaiming_normal")
kaiming_uniform = _factory("kaiming_uniform")
lecun_normal = _factory("lecun_normal")
lecun_uniform = _factory("lecun_uniform")
normal = _factory("normal")
orthogonal = _factory("orthogonal")
truncated_normal = _factory("truncated_normal")
uniform = _factory("uniform")
variance_scaling = _factory("variance_scaling")
xavier_normal = _factory("xavier_normal")
xavier_uniform = _factory("xavier_uniform")


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
