"""nnx.new_ref: the jax.Ref of ref-mode Variables, which also reads as a NumPy array."""

import jax
import jax.numpy as jnp
import numpy as np

import nnx


class Dense(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (din, dout)))
        self.bias = nnx.Param(jnp.zeros((dout,)))


def test_a_concrete_ref_is_a_jax_ref_that_numpy_reads():
    r = nnx.new_ref(jnp.arange(3.0))
    assert isinstance(r, jax.Ref)
    np.testing.assert_array_equal(np.asarray(r), [0.0, 1.0, 2.0])
    assert np.asarray(r, dtype=np.int32).dtype == np.int32


def test_jax_jit_writes_through_it_as_through_jax_new_ref():
    ours, theirs = nnx.new_ref(jnp.zeros(2)), jax.new_ref(jnp.zeros(2))

    @jax.jit
    def inc(r, x):
        r[...] += x
        return r[...] * 2

    for r in (ours, theirs):
        np.testing.assert_array_equal(inc(r, 1.0), [2.0, 2.0])
        np.testing.assert_array_equal(inc(r, 1.0), [4.0, 4.0])
    np.testing.assert_array_equal(ours[...], theirs[...])
    np.testing.assert_array_equal(jax.jit(lambda x: ours[...] + x)(1.0), [3.0, 3.0])  # closure
    assert jax.grad(lambda x: (ours[...] * x).sum())(3.0) == 4.0


def test_pytrees_and_traced_refs():
    tree = nnx.new_ref({"a": jnp.ones(2), "b": jnp.zeros(())})
    assert all(isinstance(r, jax.Ref) for r in jax.tree.leaves(tree))

    @jax.jit
    def f(x):
        r = nnx.new_ref(x)  # inside a trace: JAX's traced ref
        r[...] += 1
        return r[...]

    np.testing.assert_array_equal(f(jnp.ones(2)), [2.0, 2.0])


def test_ref_mode_variables_store_it_and_numpy_reads_their_state():
    with nnx.var_defaults(ref=True):
        model = Dense(2, 3, rngs=nnx.Rngs(0))
    leaves = jax.tree.leaves(nnx.state(model))
    assert all(isinstance(r, jax.Ref) for r in leaves)
    np.testing.assert_array_equal(np.asarray(leaves[1]), model.kernel[...])


def test_refs_stay_readable_through_nnx_jit_write_back():
    # nnx.jit hands a ref Variable's buffer to jax.jit and writes the result back into the
    # same Ref (nnx.read_stored / write_stored): the Ref nnx.new_ref made is kept.
    import pytest

    transforms = pytest.importorskip("nnx.transforms")
    with nnx.var_defaults(ref=True):
        model = Dense(2, 3, rngs=nnx.Rngs(0))
    ref = model.bias.get_raw_value()

    @transforms.jit
    def step(m):
        m.bias[...] += 1.0

    step(model)
    step(model)
    assert model.bias.get_raw_value() is ref
    np.testing.assert_array_equal(np.asarray(ref), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(nnx.read_stored(model.bias), [2.0, 2.0, 2.0])
