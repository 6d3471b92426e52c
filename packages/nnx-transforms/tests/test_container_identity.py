"""A shared nnx.List / nnx.Dict crosses the transforms as one object (#14)."""

import jax.numpy as jnp
import numpy as np

import nnx


class Shared(nnx.Module):
    def __init__(self):
        d = nnx.Dict(w=nnx.Param(jnp.ones(2)))
        self.a = d
        self.b = d
        lst = nnx.List([nnx.BatchStat(jnp.zeros(1))])
        self.c = lst
        self.e = lst


def test_jit_sees_one_container_and_a_write_through_one_path_is_seen_at_the_other():
    m = Shared()
    seen = []

    @nnx.jit
    def step(m):
        seen.append((m.a is m.b, m.c is m.e))
        m.a["w"][...] = m.b["w"][...] * 3.0
        m.e[0][...] = m.c[0][...] + 1.0

    step(m)
    step(m)
    assert seen == [(True, True)]  # traced once, sharing inside
    assert m.a is m.b and m.c is m.e
    np.testing.assert_array_equal(m.b["w"][...], [9.0, 9.0])
    np.testing.assert_array_equal(m.c[0][...], [2.0])


def test_jit_cache_sees_an_edit_of_the_shared_container():
    m = Shared()
    traces = []

    @nnx.jit
    def total(m):
        traces.append(len(m.a))
        return sum(v[...].sum() for v in m.b.values())

    assert float(total(m)) == 2.0
    m.b["extra"] = nnx.Param(jnp.full(3, 2.0))  # an edit through the second path
    assert float(total(m)) == 8.0
    assert traces == [1, 2]


def test_vmap_and_grad_keep_the_sharing():
    m = Shared()

    def loss(m):
        assert m.a is m.b
        return (m.a["w"][...] * m.b["w"][...]).sum()

    grads = nnx.grad(loss)(m)
    np.testing.assert_array_equal(grads["a"]["w"][...], [2.0, 2.0])

    @nnx.vmap(in_axes=(None, 0))
    def scale(m, x):
        assert m.a is m.b
        return m.b["w"][...] * x

    out = scale(m, jnp.arange(3.0))
    np.testing.assert_array_equal(out, [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
