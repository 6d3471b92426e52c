"""Raw array attributes as state (#20): a replaced array inside nnx.jit is seen outside."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Counted(nnx.Module):
    def __init__(self):
        self.count = jnp.array(0)  # a raw array attribute, not a Variable
        self.w = nnx.Param(jnp.ones(2))

    def __call__(self, x):
        self.count += 1
        return x * self.w[...]


def test_a_raw_array_counter_inside_jit_is_seen_outside():
    m = Counted()
    f = nnx.jit(lambda m, x: m(x))
    for _ in range(3):
        np.testing.assert_allclose(f(m, jnp.ones(2)), [1.0, 1.0])
    assert int(m.count) == 3


def test_an_array_replaced_in_a_dict_argument_comes_out():
    m = Counted()
    c = {"m": m, "s": jnp.array(1.0)}

    @nnx.jit
    def g(c):
        c["s"] = c["s"] * 2
        return c["m"](jnp.ones(2)) * c["s"]

    np.testing.assert_allclose(g(c), [2.0, 2.0])
    np.testing.assert_allclose(g(c), [4.0, 4.0])
    assert float(c["s"]) == 4.0 and int(m.count) == 2


def test_an_array_in_a_tuple_cannot_be_written_and_says_so():
    class HoldsTuple(nnx.Module):
        def __init__(self):
            self.pair = (jnp.array(0.0), nnx.Param(jnp.ones(1)))

    @nnx.jit
    def f(m, other):
        other.w[...] = other.w[...] + 1  # a Variable write that must not happen alone
        m.pair = (m.pair[0] + 1, m.pair[1])

    m, other = HoldsTuple(), Counted()
    with pytest.raises(nnx.StructureError, match="held by a tuple.*Nothing was written"):
        f(m, other)
    np.testing.assert_allclose(other.w[...], [1.0, 1.0])
    assert float(m.pair[0]) == 0.0
