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
        lambda f: (
            lambda x: nnx.scan(
                lambda c, x: (c, f(x)), in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0)
            )(jnp.zeros(()), x)
        ),
        lambda f: lambda x: nnx.cond(True, f, f, x),
        lambda f: lambda x: nnx.switch(0, [f, f], x),
        lambda f: lambda x: nnx.fori_loop(0, 2, lambda i, x: f(x), x),
        lambda f: lambda x: nnx.while_loop(lambda x: jnp.sum(x) < 4.0, lambda x: f(x) * 2, x),
        lambda f: lambda x: nnx.eval_shape(f, x),
        lambda f: lambda x: nnx.checkify(f)(x),
        lambda f: lambda x: nnx.jvp(f, (x,), (x,)),
        lambda f: lambda x: nnx.vjp(f, x),
    ],
    ids=[
        "jit",
        "vmap",
        "grad",
        "remat",
        "scan",
        "cond",
        "switch",
        "fori_loop",
        "while_loop",
        "eval_shape",
        "checkify",
        "jvp",
        "vjp",
    ],
)
def test_writing_a_captured_plain_variable_raises_trace_context_error(transform):
    captured = Counter()

    def f(x):
        captured.count[...] = captured.count[...] + jnp.sum(x).astype(jnp.int32)
        return x

    with pytest.raises(nnx.TraceContextError, match="Pass the object that holds it"):
        transform(f)(jnp.ones((2,)))
    assert int(captured.count[...]) == 0


def test_structure_change_inside_a_loop_names_the_path():
    # a loop's carry has one structure (Flax's rule too); jit would carry it out
    m = Linear(2, 2, rngs=nnx.Rngs(0))

    def surgery(i, model):
        model.extra = nnx.Param(jnp.ones(()))
        return model

    with pytest.raises(nnx.StructureError, match="'0/extra'.*keeps one structure.*outside"):
        nnx.fori_loop(0, 2, surgery, m)
    assert not hasattr(m, "extra")


def test_replacing_a_raw_array_attribute_inside_is_written_back():
    # raw arrays are state (#20): every transform writes a replaced one back
    # (test_raw_arrays.py has one test per transform)
    class HoldsArray(nnx.Module):
        def __init__(self):
            self.a = jnp.zeros(2)

    h = HoldsArray()

    def f(h):
        h.a = h.a + 1

    nnx.remat(f)(h)
    assert float(h.a[0]) == 1.0
    nnx.jit(f)(h)
    assert float(h.a[0]) == 2.0


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


def _custom_vjp_call(f, m):
    g = nnx.custom_vjp(f)
    g.defvjp(lambda m: (g(m), None), lambda res, ct: (None,))
    return g(m)


def _shard_map_call(f, m):
    mesh = jax.make_mesh((1,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,))
    P = jax.sharding.PartitionSpec
    return nnx.shard_map(f, mesh=mesh, in_specs=(P(),), out_specs=P())(m)


def _split_rngs_call(f, m):
    return nnx.split_rngs(splits=2)(nnx.vmap(f))(m)


# Each runs ``f(m, ...)`` under one transform (or the object itself for the loops).
_RUNNERS = {
    "jit": lambda f, m: nnx.jit(f)(m),
    "vmap": lambda f, m: nnx.vmap(f, in_axes=(None, 0))(m, jnp.ones(3)),  # pyright: ignore[reportCallIssue]
    "grad": lambda f, m: nnx.grad(f)(m),
    "value_and_grad": lambda f, m: nnx.value_and_grad(f, has_aux=True)(m),
    "scan": lambda f, m: nnx.scan(f, in_axes=(None, 0), out_axes=0)(m, jnp.ones(3)),  # pyright: ignore[reportCallIssue]
    "remat": lambda f, m: nnx.remat(f)(m),
    "cond": lambda f, m: nnx.cond(True, f, f, m),
    "switch": lambda f, m: nnx.switch(1, [f, f], m),
    "fori_loop": lambda f, m: nnx.fori_loop(0, 3, lambda i, m: (f(m), m)[1], m),
    "while_loop": lambda f, m: nnx.while_loop(lambda m: True, lambda m: (f(m), m)[1], m),
    "eval_shape": lambda f, m: nnx.eval_shape(f, m),
    "checkify": lambda f, m: nnx.checkify(f)(m),
    "jvp": lambda f, m: nnx.jvp(f, (m,), ({},)),
    "vjp": lambda f, m: nnx.vjp(f, m),
    "custom_vjp": _custom_vjp_call,
    "shard_map": _shard_map_call,
    "split_rngs": _split_rngs_call,
}


@pytest.mark.parametrize("kind", list(_RUNNERS))
def test_exception_leaves_no_variable_half_updated(kind, mode):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    m.rngs = nnx.Rngs(1)
    before = [np.asarray(v[...]) for v in nnx.state(m).leaves() if v.shape == (2, 2)]
    b0 = np.asarray(m.b[...])
    key0 = jax.random.key_data(m.rngs.default.key[...])  # pyright: ignore[reportAttributeAccessIssue]

    def f(m, *rest):
        if kind != "custom_vjp":  # custom_vjp refuses writes before it gets here
            m.b[...] = m.b[...] + 1  # written first ...
        raise ValueError("user error")  # ... then the user function fails

    with pytest.raises(ValueError, match="user error"):
        _RUNNERS[kind](f, m)
    np.testing.assert_array_equal(m.b[...], b0)
    after = [np.asarray(v[...]) for v in nnx.state(m).leaves() if v.shape == (2, 2)]
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.random.key_data(m.rngs.default.key[...]), key0)  # pyright: ignore[reportAttributeAccessIssue]
    m.b[...] = m.b[...] + 1  # and the object is still usable
    np.testing.assert_allclose(m.b[...], b0 + 1)


def test_same_variable_differentiated_through_two_arguments_is_an_aliasing_error():
    a = Linear(2, 2, rngs=nnx.Rngs(0))
    b = Linear(2, 2, rngs=nnx.Rngs(1))
    b.w = a.w  # one Param reachable from both arguments

    def loss(a, b):
        return jnp.sum(a.w[...]) + jnp.sum(b.w[...] * 2)

    with pytest.raises(nnx.AliasingError, match="'b/w' is the same Variable as 'a/w'"):
        nnx.grad(loss, argnums=(0, 1))(a, b)
    # leaving it out of one argument is the fix the message gives
    ga, gb = nnx.grad(loss, argnums=(0, nnx.DiffState(1, nnx.All(nnx.Param, nnx.Not("w")))))(a, b)
    np.testing.assert_allclose(ga["w"][...], np.full((2, 2), 3.0))  # both uses of a.w
    assert set(gb.keys()) == {"b"}


def test_input_returned_on_another_axis_is_an_aliasing_error():
    stack = nnx.vmap(lambda k: Linear(2, 2, rngs=nnx.Rngs(k)))(
        jax.random.split(jax.random.key(0), 3)
    )
    with pytest.raises(nnx.AliasingError, match="'m/b', an input that went in with axis 0"):
        nnx.vmap(lambda m: m, out_axes=1)(stack)
    single = Linear(2, 2, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.AliasingError, match="went in with axis None, at out_axes 0"):
        nnx.vmap(lambda m, x: (m, m(x)), in_axes=(None, 0))(single, jnp.ones((3, 2)))
    c = Counter()
    with pytest.raises(nnx.AliasingError, match="'c/count'.*axis nnx.Carry, at out_axes 0"):
        nnx.scan(lambda c, x: (c, c), in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))(
            c, jnp.ones(3)
        )
    # on the axis it went in with, it comes back as the caller's object
    out, y = nnx.vmap(lambda m, x: (m, m(x)), in_axes=(None, 0), out_axes=(None, 0))(
        single, jnp.ones((3, 2))
    )
    assert out is single and y.shape == (3, 2)
    assert nnx.vmap(lambda m: m)(stack) is stack


def test_ref_variable_captured_and_written_in_vmap_raises_trace_context_error():
    with nnx.use_refs(True):
        captured = Counter()

    def f(x):
        captured()
        return x

    with pytest.raises(nnx.TraceContextError, match="created outside the transform.*argument"):
        nnx.vmap(f)(jnp.ones(3))
    assert int(captured.count[...]) == 0
    # passed as an argument, shared by the members, the write is carried
    nnx.vmap(lambda c, x: c(), in_axes=(None, 0))(captured, jnp.ones(3))
    assert int(captured.count[...]) == 1


def test_scan_output_arity_and_branch_structure_errors():
    with pytest.raises(nnx.transforms.AxisError, match="must return a tuple of 2"):
        nnx.scan(lambda c, x: c, in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))(
            jnp.zeros(()), jnp.ones(3)
        )
    with pytest.raises(nnx.StructureError, match="branches return different nnx objects"):
        nnx.cond(True, lambda: Counter(), lambda: Linear(1, 1, rngs=nnx.Rngs(0)))
    with pytest.raises(nnx.StructureError, match="branches return different nnx objects"):
        nnx.switch(0, [lambda: Counter(), lambda: jnp.zeros(())])


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
