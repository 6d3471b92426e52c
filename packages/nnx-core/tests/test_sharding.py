"""Sharding metadata to PartitionSpecs / NamedShardings, on 8 simulated CPU devices."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

import nnx


def test_partition_specs_follow_sharding_names():
    init = nnx.with_partitioning(jax.nn.initializers.ones, (None, "model"))

    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(init(jax.random.key(0), (4, 8)))
            self.b = nnx.Param(jnp.zeros(8))

    specs = nnx.get_partition_spec(nnx.state(M()))
    assert specs["w"].get_value() == P(None, "model")
    assert specs["b"].get_value() == P()


def test_named_shardings_on_a_2x4_mesh():
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, nnx
        assert len(jax.devices()) == 8
        mesh = jax.make_mesh((2, 4), ("data", "model"))
        init = nnx.with_partitioning(jax.nn.initializers.lecun_normal(), (None, "model"))

        class M(nnx.Module):
            def __init__(self):
                self.w = nnx.Param(init(jax.random.key(0), (4, 8)))
                self.b = nnx.Param(jnp.zeros(8), sharding_names=("model",))

            def __call__(self, x):
                return x @ self.w + self.b

        model = M()
        state = nnx.state(model)
        nnx.shard_state(state, mesh)
        assert model.w[...].sharding.spec == jax.sharding.PartitionSpec(None, "model")
        assert len(model.w[...].addressable_shards) == 8
        shard = model.w[...].addressable_shards[0].data
        assert shard.shape == (4, 2), shard.shape
        shardings = nnx.get_named_sharding(state, mesh)
        g, s = nnx.split(model)
        f = jax.jit(lambda s, x: nnx.merge(g, s)(x), in_shardings=(shardings, None))
        x = jnp.ones((2, 4))
        y = f(s, x)
        import numpy as np
        np.testing.assert_allclose(y, x @ model.w[...] + model.b[...], rtol=1e-5)
        print("ok")
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
