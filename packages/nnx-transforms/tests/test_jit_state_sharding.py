"""``nnx.jit(in_shardings=...)`` takes an ``nnx.StateSharding`` for an object argument:
each Variable gets the sharding of the first filter that matches it (Flax's form)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import nnx


class Model(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.arange(4.0))
        self.calls = nnx.BatchStat(jnp.array(0))

    def __call__(self, x):
        self.calls[...] += 1
        return jnp.sum(self.w[...] * x)


def test_jit_in_shardings_by_filter():
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    split, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    by_filter = nnx.StateSharding({nnx.Param: split, ...: rep})

    step = nnx.jit(lambda m, x: m(x), in_shardings=(by_filter, rep))
    m = Model()
    compiled = step.lower(m, jnp.ones(4)).compile()
    specs = [s.spec for s in jax.tree.leaves(compiled.input_shardings[0])]
    assert specs.count(P("data")) == 1, specs  # w only; calls and x replicated
    np.testing.assert_allclose(step(m, jnp.ones(4)), 6.0)
    assert int(m.calls[...]) == 1
