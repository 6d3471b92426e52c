"""Models pickle (stdlib `pickle`) and copy: a checkpoint of the whole object, or a copy
sent to another process, computes what the original computes."""

import copy
import pickle
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

TOL: dict[str, Any] = dict(rtol=1e-6, atol=1e-6)


def _layers():
    rngs = nnx.Rngs(0)
    part = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
    x3, seq = jnp.ones((2, 3)), jnp.ones((2, 5, 2))
    return {
        "Linear(partitioned)": (nnx.Linear(3, 4, kernel_init=part, rngs=rngs), x3),
        "LinearGeneral": (nnx.LinearGeneral(3, (2, 2), rngs=rngs), x3),
        "Einsum": (nnx.Einsum("ab,bc->ac", (3, 4), rngs=rngs), x3),
        "Conv": (nnx.Conv(2, 3, (3,), rngs=rngs), seq),
        "ConvTranspose": (nnx.ConvTranspose(2, 3, (3,), rngs=rngs), seq),
        "Embed": (nnx.Embed(5, 3, rngs=rngs), jnp.array([1, 4])),
        "BatchNorm": (nnx.BatchNorm(3, rngs=rngs), x3),
        "LayerNorm": (nnx.LayerNorm(3, rngs=rngs), x3),
        "RMSNorm": (nnx.RMSNorm(3, rngs=rngs), x3),
        "GroupNorm": (nnx.GroupNorm(4, num_groups=2, rngs=rngs), jnp.ones((2, 4))),
        "Dropout": (nnx.Dropout(0.5, rngs=rngs), x3),
        "MultiHeadAttention": (
            nnx.MultiHeadAttention(2, 4, decode=False, rngs=rngs),
            jnp.ones((2, 5, 4)),
        ),
        "RNN(LSTMCell)": (nnx.RNN(nnx.LSTMCell(2, 3, rngs=rngs)), seq),
        "RNN(GRUCell)": (nnx.RNN(nnx.GRUCell(2, 3, rngs=rngs)), seq),
        "RNN(OptimizedLSTMCell)": (nnx.RNN(nnx.OptimizedLSTMCell(2, 3, rngs=rngs)), seq),
        "SpectralNorm": (nnx.SpectralNorm(nnx.Linear(3, 4, rngs=rngs), rngs=rngs), x3),
        "WeightNorm": (nnx.WeightNorm(nnx.Linear(3, 4, rngs=rngs), rngs=rngs), x3),
        "PReLU": (nnx.PReLU(0.2), x3),
        "LoRALinear": (nnx.LoRALinear(3, 4, lora_rank=2, rngs=rngs), x3),
        "Sequential": (nnx.Sequential(nnx.Linear(3, 3, rngs=rngs), nnx.gelu), x3),
    }


def _value(v):
    return v[...] if isinstance(v, nnx.Variable) else v


@pytest.mark.parametrize("name", list(_layers()))
def test_layer_survives_pickle_and_deepcopy(name):
    layer, x = _layers()[name]
    for restored in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert type(restored) is type(layer)
        a, b = nnx.state(layer), nnx.state(restored)
        for (pa, va), (pb, vb) in zip(a.flat_state(), b.flat_state()):
            # (WeightNorm's scales are plain arrays in the state, as in Flax)
            assert pa == pb and type(va) is type(vb)
            assert getattr(va, "metadata", None) == getattr(vb, "metadata", None)
            leaves_a, leaves_b = jax.tree.leaves(_value(va)), jax.tree.leaves(_value(vb))
            for u, w in zip(leaves_a, leaves_b):
                if jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
                    u, w = jax.random.key_data(u), jax.random.key_data(w)
                np.testing.assert_array_equal(u, w)
        # the restored layer computes what the original does (same random stream too)
        np.testing.assert_allclose(restored(x), copy.deepcopy(layer)(x), **TOL)


def test_initializers_pickle_compute_jax_numbers_and_compare_by_arguments():
    key = jax.random.key(3)
    for ours, theirs in [
        (nnx.initializers.lecun_normal(), jax.nn.initializers.lecun_normal()),
        (nnx.initializers.normal(0.02), jax.nn.initializers.normal(0.02)),
        (
            nnx.initializers.variance_scaling(2.0, "fan_out", "uniform", in_axis=0),
            jax.nn.initializers.variance_scaling(2.0, "fan_out", "uniform", in_axis=0),
        ),
        (orthogonal := nnx.initializers.orthogonal(), jax.nn.initializers.orthogonal()),
    ]:
        np.testing.assert_array_equal(ours(key, (4, 6)), theirs(key, (4, 6)))
        if ours is not orthogonal:  # (no 16-bit QR on the CPU)
            np.testing.assert_array_equal(
                ours(key, (4, 6), jnp.float16), theirs(key, (4, 6), jnp.float16)
            )
        again = pickle.loads(pickle.dumps(ours))
        assert again == ours and hash(again) == hash(ours)
        np.testing.assert_array_equal(again(key, (4, 6)), theirs(key, (4, 6)))
    assert nnx.initializers.normal(0.02) != nnx.initializers.normal(0.03)
    assert repr(nnx.initializers.normal(0.02)) == "nnx.initializers.normal(0.02)"
    # layers made alike have equal GraphDefs (their initializers are static attributes)
    a = nnx.Linear(2, 2, kernel_init=nnx.initializers.normal(0.1), rngs=nnx.Rngs(0))
    b = nnx.Linear(2, 2, kernel_init=nnx.initializers.normal(0.1), rngs=nnx.Rngs(1))
    assert nnx.graphdef(a) == nnx.graphdef(b)
