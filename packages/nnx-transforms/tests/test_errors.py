"""Errors of the transforms: type and text, and no half-updated state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Counter, Linear

import nnx


@pytest.mark.parametrize(
    "transform",
    [
        lambda f: nnx.jit(f),
        lambda f: nnx.vmap(f, in_axes=0),
        lambda f: nnx.grad(lambda x: (f(x), jnp.sum(x))[1]),
        lambda f: nnx.remat(f),
    ],
    ids=["jit", "vmap", "grad", "remat"],
)
def test_writing_a_captured_plain_variable_raises_trace_context_error(transform):
    captured = Counter()

    def f(x):
        captured.count[...] = captured.count[...] + jnp.sum(x).astype(jnp.int32)
        return x

    with pytest.raises(nnx.TraceContextError, match="Pass the object that holds it"):
        transform(f)(jnp.ones((2,)))
    assert int(captured.count[...]) == 0


def test_structure_change_inside_names_the_path():
    m = Linear(2, 2, rngs=nnx.Rngs(0))

    @nnx.jit
    def surgery(model):
        model.extra = nnx.Param(jnp.ones(()))

    with pytest.raises(nnx.StructureError, match="'model/extra'.*outside"):
        surgery(m)
    assert not hasattr(m, "extra")


def test_replacing_a_raw_array_attribute_inside_is_an_error():
    class HoldsArray(nnx.Module):
        def __init__(self):
            self.a = jnp.zeros(2)

    h = HoldsArray()

    def f(h):
        h.a = h.a + 1

    with pytest.raises(nnx.StructureError, match="'h/a' was replaced.*nnx.Variable"):
        nnx.jit(f)(h)


def test_returning_a_captured_variable_is_an_escape_error():
    captured = nnx.Variable(jnp.ones(2))
    with pytest.raises(nnx.transforms.EscapeError, match="created outside the transform"):
        nnx.jit(lambda x: captured)(jnp.ones(2))


def test_same_variable_as_carry_and_scanned_is_an_aliasing_error():
    c = Counter()
    holder = Counter()
    holder.count = c.count
    with pytest.raises(nnx.AliasingError, match="count.*different axis"):
        nnx.scan(lambda a, b: (a, 0), in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))(c, holder)


@pytest.mark.parametrize("kind", ["jit", "vmap", "grad", "scan"])
def test_exception_leaves_no_variable_half_updated(kind):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    w0, b0 = m.w[...], m.b[...]

    def f(m, *rest):
        m.b[...] = m.b[...] + 1  # written first ...
        raise ValueError("user error")  # ... then the user function fails

    with pytest.raises(ValueError, match="user error"):
        if kind == "jit":
            nnx.jit(f)(m)
        elif kind == "vmap":
            nnx.vmap(f, in_axes=(None, 0))(m, jnp.ones(3))
        elif kind == "grad":
            nnx.grad(f)(m)
        else:
            nnx.scan(f, in_axes=(None, 0), out_axes=0)(m, jnp.ones(3))
    np.testing.assert_array_equal(m.w[...], w0)
    np.testing.assert_array_equal(m.b[...], b0)


def test_immutable_variable_written_inside_raises():
    v = nnx.vars_as(nnx.Variable(jnp.zeros(2)), mutable=False)
    with pytest.raises(nnx.ImmutableVariableError):
        nnx.jit(lambda v: v.set_value(jnp.ones(2)))(v)


def test_unhashable_static_argument():
    with pytest.raises(TypeError, match="Static arguments must be hashable"):
        nnx.jit(lambda x, s: x, static_argnums=1)(jnp.ones(2), [1, 2])


def test_same_ref_variable_twice_fails_in_jax_but_is_shared_by_nnx_jit():
    with nnx.use_refs(True):
        v = nnx.Variable(jnp.zeros(2))
    with pytest.raises(ValueError, match="only one reference to a mutable array"):
        jax.jit(lambda a, b: None)(v.get_raw_value(), v.get_raw_value())

    @nnx.jit
    def f(a, b):
        a[...] += 1
        b[...] += 1

    f(v, v)  # one Variable, reached twice: flattened once
    np.testing.assert_array_equal(v[...], [2.0, 2.0])
