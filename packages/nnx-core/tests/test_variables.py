import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Count, Counter

import nnx


def test_index_read_and_write_keep_identity():
    v = nnx.Variable(jnp.array([1, 2, 3]))
    same = v
    v[...] = v[...] * 2
    v[1] = 10
    assert same is v
    np.testing.assert_array_equal(v[...], [2, 10, 6])


def test_inplace_operators_update_the_same_variable():
    v = nnx.Param(jnp.array(1.0))
    ident = id(v)
    v += 2
    v *= 3
    v -= 1
    assert id(v) == ident
    assert float(v[...]) == 8.0


def test_module_inplace_attribute_update_as_in_seed_003():
    counter = Counter()
    count = counter.count
    counter()
    counter()
    assert counter.count is count
    assert int(counter.count.value) == 2


def test_arithmetic_and_comparison_act_on_the_value():
    v = nnx.Variable(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(v + 1, [2.0, 3.0])
    np.testing.assert_allclose(1 + v, [2.0, 3.0])
    np.testing.assert_allclose(v * v, [1.0, 4.0])
    np.testing.assert_allclose(jnp.ones((2, 2)) @ v, [3.0, 3.0])
    np.testing.assert_array_equal(v > 1.5, [False, True])
    np.testing.assert_allclose(-v, [-1.0, -2.0])
    np.testing.assert_allclose(jnp.sum(v), 3.0)  # __jax_array__  # pyright: ignore[reportArgumentType]
    np.testing.assert_allclose(np.asarray(v), [1.0, 2.0])


def test_value_property_and_get_set():
    v = nnx.Variable(jnp.zeros(2))
    v.value = jnp.ones(2)
    np.testing.assert_array_equal(v.get_value(), [1.0, 1.0])
    v.set_value(jnp.full(2, 3.0))
    np.testing.assert_array_equal(v.value, [3.0, 3.0])
    assert v.get_raw_value() is v.value


def test_dict_values_by_key():
    v = nnx.Variable({"a": jnp.array(0), "b": jnp.array(2)})
    v["a"] += 1
    v["b"] *= 2
    v["c"] = jnp.array(7)
    assert int(v["a"]) == 1 and int(v["b"]) == 4 and int(v["c"]) == 7


def test_metadata_is_readable_settable_and_survives_split_merge():
    v = nnx.Param(jnp.ones(2), sharding_names=(None,), tag="w")
    assert v.sharding_names == (None,)
    assert v.out_sharding == (None,)  # alias
    v.tag = "weights"
    v.note = 3

    class M(nnx.Module):
        def __init__(self):
            self.w = v

    g, s = nnx.split(M())
    m2 = nnx.merge(g, s, copy=True)
    assert m2.w is not v
    assert m2.w.tag == "weights" and m2.w.note == 3 and m2.w.sharding_names == (None,)


def test_value_attributes_fall_through():
    v = nnx.Param(jnp.ones((2, 3), jnp.float16))
    assert v.shape == (2, 3) and v.dtype == jnp.float16
    with pytest.raises(AttributeError, match="no metadata or value attribute 'nope'"):
        v.nope


def test_user_subclass_behaves_like_variable():
    c = Count(jnp.array(5))
    c += 1
    assert isinstance(c, nnx.Variable) and int(c[...]) == 6
    leaves = jax.tree.leaves(c)
    assert len(leaves) == 1 and int(leaves[0]) == 6
    assert type(jax.tree.map(lambda x: x, c)) is Count


def test_kinds_hierarchy():
    assert issubclass(nnx.Perturbation, nnx.Intermediate)
    assert issubclass(nnx.RngKey, nnx.RngState) and issubclass(nnx.RngCount, nnx.RngState)
    for kind in (nnx.Param, nnx.BatchStat, nnx.Cache, nnx.Intermediate):
        assert issubclass(kind, nnx.Variable)


def test_with_partitioning_records_sharding_names():
    init = nnx.with_partitioning(jax.nn.initializers.ones, (None, "model"))
    p = nnx.Param(init(jax.random.key(0), (2, 4)))
    assert p.sharding_names == (None, "model")
    np.testing.assert_array_equal(p[...], np.ones((2, 4)))


def test_variable_is_a_pytree_with_metadata_in_the_treedef():
    v = nnx.Param(jnp.ones(2), tag="a")
    w = nnx.Param(jnp.ones(2), tag="b")
    assert jax.tree.structure(v) != jax.tree.structure(w)
    out = jax.jit(lambda p: p[...] * 2)(v)
    np.testing.assert_array_equal(out, [2.0, 2.0])


def test_grad_through_plain_variable():
    v = nnx.Param(jnp.array([1.0, 2.0]))
    g = jax.grad(lambda p: jnp.sum(p[...] ** 2))(v)
    assert isinstance(g, nnx.Param)
    np.testing.assert_allclose(g[...], [2.0, 4.0])


def test_vmap_over_plain_variable():
    v = nnx.Param(jnp.arange(6.0).reshape(3, 2))
    out = jax.vmap(lambda p: p[...].sum())(v)
    np.testing.assert_allclose(out, [1.0, 5.0, 9.0])


def test_ref_value_rejected_with_a_hint():
    with pytest.raises(nnx.HijaxError, match="ref=True"):
        nnx.Variable(jax.new_ref(jnp.ones(2)))


def test_writing_a_captured_variable_inside_jit_raises_trace_context_error():
    v = nnx.Variable(jnp.array(0))

    @jax.jit
    def f():
        v[...] = v[...] + 1

    with pytest.raises(
        nnx.TraceContextError,
        match=r"Cannot mutate Variable from a different trace level: this Variable \(int32\[\]\) was created outside this JAX transform",
    ):
        f()
    assert int(v[...]) == 0


def test_deepcopy_and_pickle_roundtrip():
    import copy
    import pickle

    v = nnx.Param(jnp.arange(3.0), tag="x")
    c = copy.deepcopy(v)
    assert c is not v and c.tag == "x"
    np.testing.assert_array_equal(c[...], v[...])
    p = pickle.loads(pickle.dumps(v))
    assert type(p) is nnx.Param and p.tag == "x"
    np.testing.assert_array_equal(p[...], v[...])
