"""Graph updates: a structural change made inside a transform comes out (#14).

Flax NNX 0.12's transforms guide ("Graph updates propagation"): inside a
transform "you can modify graph structure as needed, including updating existing
attributes, adding/deleting attributes, swapping attributes, sharing (new)
references between objects, sharing Variables between objects". nnx carries the
new structure out of nnx.jit, nnx.grad, nnx.vmap, nnx.remat and nnx.checkify and
moves it into the caller's own objects after JAX returned.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import random

import nnx


class Count(nnx.Variable):
    pass


class Weights(nnx.Module):
    def __init__(self, kernel, bias, count):
        self.kernel, self.bias = nnx.Param(kernel), nnx.Param(bias)
        self.count = Count(count)


def test_the_guides_crazy_vector_dot_under_vmap():
    weights = Weights(
        kernel=random.uniform(random.key(0), (10, 2, 3)),
        bias=jnp.ones((10, 3)),
        count=jnp.arange(10),
    )
    kernel, bias = weights.kernel, np.asarray(weights.bias[...])
    x = jax.random.normal(random.key(1), (10, 2))

    def crazy_vector_dot(weights, x):
        assert weights.kernel.ndim == 2, "Batch dimensions not allowed"
        weights.count += 1
        y = x @ weights.kernel + weights.bias
        weights.some_property = ["a", 2, False]  # add attribute
        del weights.bias  # delete attribute
        weights.new_param = weights.kernel  # share reference
        return y

    y = nnx.vmap(crazy_vector_dot, in_axes=0, out_axes=1)(weights, x)

    expected = np.einsum("bi,bij->jb", np.asarray(x), np.asarray(kernel[...])) + bias.T
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_array_equal(weights.count[...], np.arange(10) + 1)
    assert not hasattr(weights, "bias")
    assert weights.new_param is weights.kernel is kernel  # the caller's own Param
    assert weights.some_property == ["a", 2, False]
    assert set(nnx.to_pure_dict(nnx.state(weights))) == {"count", "kernel"}


class Foo(nnx.Module):
    def __init__(self):
        self.a = nnx.Param(jnp.array(1.0))
        self.b = nnx.Param(jnp.array(2.0))


def test_jit_swaps_variables_keeping_their_identity():
    m = Foo()
    a, b = m.a, m.b

    @nnx.jit
    def swap(m):
        m.a, m.b = m.b, m.a

    swap(m)
    assert m.a is b and m.b is a
    assert float(m.a[...]) == 2.0 and float(m.b[...]) == 1.0
    swap(m)  # the second call sees the new structure (a new compilation)
    assert m.a is a and m.b is b


def test_jit_adds_a_self_reference_and_a_submodule_that_is_also_returned():
    m = Foo()

    @nnx.jit
    def grow(m):
        m.me = m
        m.sub = Foo()
        m.sub.a[...] = 7.0
        return m.sub

    out = grow(m)
    assert m.me is m
    assert out is m.sub and isinstance(out, Foo)  # one new object, not two
    assert float(m.sub.a[...]) == 7.0 and float(m.sub.b[...]) == 2.0


def test_values_written_and_structure_changed_in_one_call():
    m = Foo()

    @nnx.jit
    def f(m, x):
        m.a[...] = m.a[...] + x
        if hasattr(m, "b"):
            del m.b
        m.c = nnx.BatchStat(x * 3.0)
        return m.a[...] * 2.0

    out = f(m, jnp.array(0.5))
    assert float(out) == 3.0 and float(m.a[...]) == 1.5
    assert not hasattr(m, "b") and type(m.c) is nnx.BatchStat and float(m.c[...]) == 1.5
    out = f(m, jnp.array(1.0))  # again, with b gone and c present from the start
    assert float(m.a[...]) == 2.5 and float(m.c[...]) == 3.0


def test_a_shared_submodule_is_changed_once_for_every_holder():
    class Holder(nnx.Module):
        def __init__(self, inner):
            self.inner = inner

    inner = Foo()
    h1, h2 = Holder(inner), Holder(inner)

    @nnx.jit
    def f(h1, h2):
        h1.inner.extra = nnx.Param(jnp.array(5.0))
        return h2.inner.extra[...]

    assert float(f(h1, h2)) == 5.0
    assert h1.inner is inner and h2.inner is inner
    assert float(inner.extra[...]) == 5.0


def test_an_nnx_list_keeps_its_identity_and_grows():
    class Seq(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([Foo()])

    s = Seq()
    layers, first = s.layers, s.layers[0]

    @nnx.jit
    def f(s):
        s.layers.append(Foo())

    f(s)
    assert s.layers is layers and len(layers) == 2 and layers[0] is first
    assert float(layers[1].b[...]) == 2.0


def test_an_error_after_the_surgery_changes_nothing():
    m = Foo()

    @nnx.jit
    def f(m):
        m.a[...] = 10.0
        del m.b
        m.note = "x"
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        f(m)
    assert float(m.a[...]) == 1.0 and hasattr(m, "b") and not hasattr(m, "note")


def test_grad_carries_the_change_and_differentiates_as_before():
    m = Foo()

    def loss(m, x):
        m.seen = True
        m.extra = nnx.BatchStat(x)
        return m.a[...] * x + m.b[...] ** 2

    g = nnx.grad(loss)(m, jnp.array(3.0))
    assert float(g["a"][...]) == 3.0 and float(g["b"][...]) == 4.0  # x, 2 b
    assert m.seen is True and float(m.extra[...]) == 3.0


def test_remat_carries_the_change():
    m = Foo()

    def f(m):
        m.b = m.a  # share: b now names a's Variable
        return m.a[...]

    nnx.remat(f)(m)
    assert m.b is m.a


def test_vmap_stacks_a_new_variable_along_the_arguments_axis():
    class Stack(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.arange(6.0).reshape(3, 2))  # 3 members along axis 1 below

    s = Stack()

    def f(s):
        s.doubled = nnx.Param(s.w[...] * 2.0)

    nnx.vmap(f, in_axes=1)(s)
    assert s.doubled.shape == (3, 2)  # on axis 1 as w, members in place
    np.testing.assert_array_equal(s.doubled[...], np.arange(6.0).reshape(3, 2) * 2.0)

    t = Stack()
    nnx.vmap(f, in_axes=0)(t)
    np.testing.assert_array_equal(t.doubled[...], np.arange(6.0).reshape(3, 2) * 2.0)


@pytest.mark.parametrize("mode", ["ref", "hijax"])
def test_graph_updates_in_every_variable_mode(mode):
    with nnx.var_defaults(**{mode: True}):
        m = Foo()
        a = m.a

        @nnx.jit
        def f(m):
            m.a[...] = m.a[...] + 1.0
            del m.b
            m.c = nnx.Param(jnp.array(4.0))

        f(m)
    assert m.a is a and float(m.a[...]) == 2.0 and not hasattr(m, "b")
    assert nnx.storage_mode(m.a).name == mode.upper()
    assert nnx.storage_mode(m.c).name == mode.upper()  # made under the defaults
    assert float(m.c[...]) == 4.0


def test_without_graph_updates_the_structure_stays_inside():
    m = Foo()

    @nnx.jit(graph_updates=False)
    def f(m):
        m.a[...] = 3.0
        m.note = "x"

    f(m)
    assert float(m.a[...]) == 3.0 and not hasattr(m, "note")


def test_a_returned_nnx_list_or_dict_is_the_callers_object():
    class M(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([nnx.Param(jnp.ones(2))])
            self.table = nnx.Dict(a=nnx.Param(jnp.zeros(2)))

    m = M()
    layers, table = nnx.jit(lambda m: (m.layers, m.table))(m)
    assert layers is m.layers and table is m.table  # identity, as for a Module returned
    new = nnx.jit(lambda: nnx.Dict(x=nnx.Param(jnp.ones(1))))()
    assert type(new) is nnx.Dict and type(new["x"]) is nnx.Param
