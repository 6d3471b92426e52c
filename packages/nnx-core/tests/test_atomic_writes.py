"""Every core function that writes several Variables is all-or-nothing.

Each test snapshots the whole model (structure, every value, every object's
identity), provokes an error, and checks that the model is exactly as before.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Linear

import nnx


class Two(nnx.Module):
    def __init__(self, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.l1 = Linear(2, 3, rngs=rngs)
        self.l2 = Linear(3, 1, rngs=rngs)
        self.count = nnx.BatchStat(jnp.array(0))


def snapshot(node):
    """Structure, values and object identities: what an error must leave alone."""
    flat = nnx.flatten(node, with_paths=True)
    values = []
    for path, leaf in zip(flat.paths, flat.leaves):
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        values.append((path, id(leaf), jax.tree.map(np.array, value)))
    return flat.graphdef, [id(x) for x in flat.nodes], values


def assert_unchanged(node, before):
    graphdef, ids, values = snapshot(node)
    assert graphdef == before[0]
    assert ids == before[1]
    assert len(values) == len(before[2])
    for (p, i, v), (q, j, w) in zip(values, before[2]):
        assert (p, i) == (q, j)
        jax.tree.map(np.testing.assert_array_equal, v, w)


def test_update_with_an_extra_key_writes_nothing():
    m = Two()
    st = jax.tree.map(lambda x: x + 1, nnx.state(m))
    st["zz_extra"] = nnx.Param(jnp.ones(1))  # sorted after every real path
    before = snapshot(m)
    with pytest.raises(nnx.StructureError, match="no Variable or array at 'zz_extra'"):
        nnx.update(m, st)
    assert_unchanged(m, before)


def test_update_with_the_state_of_another_model_writes_nothing():
    class Other(nnx.Module):
        def __init__(self):
            self.l1 = Linear(2, 3, rngs=nnx.Rngs(1))
            self.l3 = Linear(3, 1, rngs=nnx.Rngs(2))

    m = Two()
    before = snapshot(m)
    with pytest.raises(nnx.StructureError, match="no Variable or array at 'l3/bias'"):
        nnx.update(m, nnx.state(Other()))
    assert_unchanged(m, before)


def test_update_with_a_value_of_another_shape_names_the_path_and_both_shapes():
    m = Two()
    st = nnx.state(m)
    st["count"] = nnx.BatchStat(jnp.array(5))  # a valid write, sorted before l1
    st["l1"]["kernel"] = nnx.Param(jnp.ones((5, 5)))
    before = snapshot(m)
    with pytest.raises(
        nnx.StructureError,
        match=r"'l1/kernel' has shape \(5, 5\), but the Param there holds \(2, 3\).*"
        r"assign a new Variable",
    ):
        nnx.update(m, st)
    assert_unchanged(m, before)


def test_update_checks_the_shape_of_each_array_inside_a_pytree_value():
    class M(nnx.Module):
        def __init__(self):
            self.v = nnx.Variable({"a": jnp.zeros(2), "b": jnp.zeros(3)})

    m = M()
    before = snapshot(m)
    with pytest.raises(nnx.StructureError, match=r"'v/b' has shape \(4,\).*holds \(3,\)"):
        nnx.update(m, nnx.State({"v": nnx.Variable({"a": jnp.ones(2), "b": jnp.ones(4)})}))
    assert_unchanged(m, before)


def test_update_refuses_a_raw_array_of_another_shape():
    class M(nnx.Module):
        def __init__(self):
            self.a = jnp.zeros(2)
            self.w = jnp.zeros((2, 2))

    m = M()
    before = snapshot(m)
    with pytest.raises(nnx.StructureError, match=r"'w' has shape \(3,\), but the array"):
        nnx.update(m, nnx.State({"a": jnp.ones(2), "w": jnp.ones(3)}))
    assert_unchanged(m, before)


def test_model_surgery_that_changes_a_shape_assigns_a_new_variable():
    m = Two()
    m.l1.kernel = nnx.Param(jnp.ones((2, 5)))
    m.l1.bias = nnx.Param(jnp.zeros(5))
    m.l2 = Linear(5, 1, rngs=nnx.Rngs(3))
    y = m.l2(m.l1(jnp.ones((1, 2))))
    assert y.shape == (1, 1)
    st = jax.tree.map(lambda x: x * 0, nnx.state(m))
    nnx.update(m, st)  # the new shapes are the model's now
    np.testing.assert_array_equal(m.l1.kernel[...], np.zeros((2, 5)))


@pytest.mark.parametrize("mode", [{}, {"ref": True}, {"hijax": True}])
def test_update_may_change_the_dtype_as_flax_code_does_to_cast_a_model(mode):
    with nnx.var_defaults(**mode):
        m = Two()
    kernel = m.l1.kernel
    pure = nnx.state(m, nnx.Param).to_pure_dict()
    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), pure)
    nnx.update(m, bf16)
    assert m.l1.kernel is kernel  # the same Variable, now holding bfloat16
    assert m.l1.kernel[...].dtype == jnp.bfloat16 and m.l2.bias[...].dtype == jnp.bfloat16
    assert m.count[...].dtype == jnp.int32  # not in the State: untouched
    assert m.l1.kernel.ref == bool(mode.get("ref")) and m.l1.kernel.hijax == bool(mode.get("hijax"))


def test_update_refuses_an_immutable_target_before_writing_any_other():
    m = Two()
    m.l2 = nnx.vars_as(m.l2, mutable=False)
    st = jax.tree.map(lambda x: x + 1, nnx.state(m))
    before = snapshot(m)
    with pytest.raises(nnx.ImmutableVariableError, match="Cannot write to an immutable Param"):
        nnx.update(m, st)
    assert_unchanged(m, before)


def test_a_write_that_fails_midway_is_undone():
    class Picky(nnx.Variable):
        def set_value(self, value):
            if float(jnp.sum(value)) < 0:
                raise RuntimeError("Picky refuses negative values")
            super().set_value(value)

    class M(nnx.Module):
        def __init__(self):
            self.a = nnx.Param(jnp.zeros(2))
            self.b = Picky(jnp.zeros(2), ref=True)
            self.c = nnx.Param(jnp.zeros(2), hijax=True)
            self.d = jnp.zeros(2)

    m = M()
    ref = m.b.get_raw_value()
    before = snapshot(m)
    st = nnx.State({"a": jnp.ones(2), "b": -jnp.ones(2), "c": jnp.ones(2), "d": jnp.ones(2)})
    with pytest.raises(RuntimeError, match="refuses negative"):
        nnx.update(m, st)
    assert_unchanged(m, before)
    assert m.b.get_raw_value() is ref


def test_update_from_several_states_checks_all_of_them_first():
    m = Two()
    params, rest = nnx.state(m, nnx.Param, ...)
    params = jax.tree.map(lambda x: x + 1, params)
    rest["count"] = nnx.BatchStat(jnp.zeros(3))  # the second State is the bad one
    before = snapshot(m)
    with pytest.raises(nnx.StructureError, match=r"'count' has shape \(3,\)"):
        nnx.update(m, params, rest)
    assert_unchanged(m, before)


def test_merge_that_fails_leaves_its_states_as_they_were():
    m = Two()
    g, params, rest = nnx.split(m, nnx.Param, ...)
    extra = nnx.State({"zz": nnx.Param(jnp.ones(1))})
    p_before, r_before = params.flat_state(), rest.flat_state()
    with pytest.raises(nnx.StructureError, match="paths the GraphDef does not: 'zz'"):
        nnx.merge(g, params, rest, extra)
    with pytest.raises(nnx.StructureError, match="no State provides a value for 'count'"):
        nnx.merge(g, params)
    assert params.flat_state() == p_before and rest.flat_state() == r_before


def test_pop_that_fails_removes_nothing():
    Pair = collections.namedtuple("Pair", "a b")

    class M(nnx.Module):
        def __init__(self):
            self.first = nnx.Intermediate(jnp.zeros(1))
            self.pair = Pair(nnx.Intermediate(jnp.ones(1)), 3)
            self.last = nnx.Intermediate(jnp.zeros(1))

    m = M()
    before = snapshot(m)
    with pytest.raises(nnx.StructureError, match="field of the namedtuple Pair"):
        nnx.pop(m, nnx.Intermediate)
    assert_unchanged(m, before)


def test_replace_by_pure_dict_with_a_key_the_state_lacks_names_it_and_writes_nothing():
    m = Two()
    st = nnx.state(m)
    pure = jax.tree.map(lambda x: x + 1, st.to_pure_dict())
    pure["l1"]["kernl"] = jnp.ones((2, 3))  # a typo
    flat_before = [(p, id(v)) for p, v in st.flat_state()]
    before = snapshot(m)
    with pytest.raises(nnx.StructureError, match="'l1/kernl'.*the State has no such entry"):
        st.replace_by_pure_dict(pure)
    with pytest.raises(nnx.StructureError, match="'l1/kernl'"):
        nnx.replace_by_pure_dict(st, pure)
    assert [(p, id(v)) for p, v in st.flat_state()] == flat_before
    assert_unchanged(m, before)


def test_replace_by_pure_dict_with_a_wrong_shape_writes_nothing():
    m = Two()
    st = nnx.state(m)
    pure = st.to_pure_dict()
    pure["count"] = jnp.array(7)
    pure["l2"]["kernel"] = jnp.ones((1, 3))
    flat_before = [(p, id(v)) for p, v in st.flat_state()]
    with pytest.raises(nnx.StructureError, match=r"'l2/kernel' has shape \(1, 3\)"):
        st.replace_by_pure_dict(pure)
    assert [(p, id(v)) for p, v in st.flat_state()] == flat_before
    assert int(st["count"][...]) == 0


def test_iter_graph_iterates_a_snapshot_while_the_loop_deletes_attributes():
    m = Two()
    m.extra = nnx.Param(jnp.ones(1))
    expected = [p for p, _ in nnx.iter_graph(m)]
    seen = []
    for path, _ in nnx.iter_graph(m):
        seen.append(path)
        if hasattr(m, "extra"):
            del m.extra  # the bare KeyError of issue 12
            del m.l2.bias
    assert seen == expected  # the graph as it was when the loop started
    assert not hasattr(m, "extra")
    assert ("l2", "bias") not in [p for p, _ in nnx.iter_graph(m)]


def test_iter_children_and_iter_modules_tolerate_deletions_while_iterating():
    m = Two()
    names = []
    for name, _ in m.iter_children():
        names.append(name)
        if hasattr(m, "l2"):
            del m.l2
    assert names == ["count", "l1", "l2"]  # graph-node children: the Variable too (Flax)
    for path, _module in m.iter_modules():
        if path == ("l1",):
            del m.l1
    assert not hasattr(m, "l1")
