import jax
import jax.numpy as jnp
import numpy as np

import nnx


def plus_bias(y, bias):
    """``y + bias`` with the bias broadcast to ``y``'s trailing axes explicitly (rank
    promotion raises in these tests)."""
    return y + jnp.broadcast_to(bias, jnp.shape(y))


def test_lora_is_low_rank_update_around_base():
    rngs = nnx.Rngs(0)
    base = nnx.Linear(3, 4, rngs=rngs)
    lora = nnx.LoRA(
        3, 2, 4, base_module=base, b_initializer=nnx.initializers.normal(1.0), rngs=rngs
    )
    x = jax.random.normal(jax.random.key(1), (5, 3))
    expected = x @ lora.lora_a[...] @ lora.lora_b[...] + base(x)
    np.testing.assert_allclose(lora(x), expected, rtol=1e-5, atol=1e-5)
    assert lora.lora_a.shape == (3, 2) and lora.lora_b.shape == (2, 4)


def test_lora_starts_as_the_base_layer():
    layer = nnx.LoRALinear(3, 4, lora_rank=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    assert layer.bias is not None
    np.testing.assert_allclose(layer(x), plus_bias(x @ layer.kernel[...], layer.bias[...]), rtol=1e-6)


def test_lora_params_are_their_own_kind():
    layer = nnx.LoRALinear(3, 4, lora_rank=2, rngs=nnx.Rngs(0))
    assert issubclass(nnx.LoRAParam, nnx.Param)
    _, lora_params, rest = nnx.split(layer, nnx.LoRAParam, ...)
    assert set(lora_params["lora"]) == {"lora_a", "lora_b"}
    assert set(rest) == {"kernel", "bias"}


def test_lora_gradient_only_wrt_lora_params():
    layer = nnx.LoRALinear(3, 4, lora_rank=2, b_initializer=nnx.initializers.ones, rngs=nnx.Rngs(0))
    graphdef, lora_params, rest = nnx.split(layer, nnx.LoRAParam, ...)
    x = jnp.ones((1, 3))

    def loss(p):
        return jnp.sum(nnx.merge(graphdef, p, rest)(x))

    grads = jax.grad(loss)(nnx.vars_as(lora_params, mutable=False))
    a = layer.lora.lora_a[...]
    # d/dB sum(x A B) = (x A)^T 1
    np.testing.assert_allclose(
        grads["lora"]["lora_b"][...], jnp.broadcast_to((x @ a).T, (2, 4)), rtol=1e-5
    )
