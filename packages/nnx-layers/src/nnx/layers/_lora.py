"""Low-rank adaptation: ``LoRA`` (a low-rank update, optionally around a base layer) and ``LoRALinear``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from nnx.core import Module, Param, Rngs
from nnx.layers import initializers
from nnx.layers._common import (
    Dtype,
    Initializer,
    PrecisionLike,
    PromoteDtypeFn,
    check_positive,
    make_param,
    promote_dtype,
    require_rngs,
)
from nnx.layers._errors import ShapeError
from nnx.layers._linear import Linear

default_a_initializer = initializers.he_uniform()
default_b_initializer = initializers.zeros


class LoRAParam(Param):
    """The kind of LoRA's parameters, so they can be trained alone: ``nnx.split(model, nnx.LoRAParam, ...)``."""


class LoRA(Module):
    """A low-rank update ``x @ lora_a @ lora_b``, added to ``base_module(x)`` when given.

    Example::

        base = nnx.Linear(3, 4, rngs=rngs)
        layer = nnx.LoRA(3, 2, 4, base_module=base, rngs=rngs)
        x = jnp.ones((1, 3))
        y = layer(x)            # base(x) + x @ A @ B; B starts at zero, so y == base(x)
        print(bool(jnp.allclose(y, base(x))))  # True
        _, lora_params, rest = nnx.split(layer, nnx.LoRAParam, ...)

    ``lora_a`` has shape (in_features, lora_rank), ``lora_b`` (lora_rank, out_features),
    both of kind ``lora_param_type``.
    """

    def __init__(
        self,
        in_features: int,
        lora_rank: int,
        out_features: int,
        *,
        base_module: Callable[..., Any] | None = None,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        a_initializer: Initializer = default_a_initializer,
        b_initializer: Initializer = default_b_initializer,
        lora_param_type: type[Param] = LoRAParam,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        precision: PrecisionLike = None,
        rngs: Rngs,
        a_metadata: Mapping[str, Any] | None = None,
        b_metadata: Mapping[str, Any] | None = None,
    ):
        check_positive(
            "LoRA", in_features=in_features, lora_rank=lora_rank, out_features=out_features
        )
        self.lora_a: Param[jax.Array] = make_param(
            a_initializer,
            rngs,
            (in_features, lora_rank),
            param_dtype,
            layer="LoRA",
            name="lora_a",
            metadata=a_metadata,
            kind=lora_param_type,
        )
        self.lora_b: Param[jax.Array] = make_param(
            b_initializer,
            rngs,
            (lora_rank, out_features),
            param_dtype,
            layer="LoRA",
            name="lora_b",
            metadata=b_metadata,
            kind=lora_param_type,
        )
        self.base_module = base_module
        self.in_features = in_features
        self.lora_rank = lora_rank
        self.out_features = out_features
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.promote_dtype = promote_dtype

    def __call__(self, x: jax.Array, **kwargs: Any) -> jax.Array:
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"LoRA(in_features={self.in_features}) expects inputs whose last axis has size "
                f"{self.in_features}, got shape {x.shape}."
            )
        x, a, b = self.promote_dtype((x, self.lora_a[...], self.lora_b[...]), dtype=self.dtype)
        out = jnp.matmul(jnp.matmul(x, a, precision=self.precision), b, precision=self.precision)
        if self.base_module is not None:
            out = out + self.base_module(x, **kwargs)
        return out


class LoRALinear(Linear):
    """A ``Linear`` with a LoRA update: ``x @ kernel + bias + x @ lora.lora_a @ lora.lora_b``.

    Example::

        layer = nnx.LoRALinear(3, 4, lora_rank=2, rngs=nnx.Rngs(0))
        y = layer(jnp.ones((1, 3)))

    Takes every ``Linear`` argument; ``lora_*`` configure the ``lora`` submodule, which
    shares the layer's ``precision``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lora_rank: int,
        lora_dtype: Dtype | None = None,
        lora_param_dtype: Dtype = jnp.float32,
        a_initializer: Initializer = default_a_initializer,
        b_initializer: Initializer = default_b_initializer,
        lora_param_type: type[Param] = LoRAParam,
        lora_promote_dtype: PromoteDtypeFn = promote_dtype,
        rngs: Rngs,
        a_metadata: Mapping[str, Any] | None = None,
        b_metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        require_rngs(rngs, "LoRALinear")
        super().__init__(in_features, out_features, rngs=rngs, **kwargs)
        self.lora = LoRA(
            in_features,
            lora_rank,
            out_features,
            dtype=lora_dtype,
            param_dtype=lora_param_dtype,
            a_initializer=a_initializer,
            b_initializer=b_initializer,
            lora_param_type=lora_param_type,
            promote_dtype=lora_promote_dtype,
            precision=self.precision,
            rngs=rngs,
            a_metadata=a_metadata,
            b_metadata=b_metadata,
        )

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        return super().__call__(inputs, out_sharding=out_sharding) + self.lora(inputs)
