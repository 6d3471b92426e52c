"""The boundary primitives that transforms build on: flatten, unflatten, FlattenCache."""

import jax
import jax.numpy as jnp
import numpy as np
from core_helpers import Linear

import nnx


class Opt(nnx.Module):
    def __init__(self, model):
        self.model = model
        self.step = nnx.Variable(jnp.array(0))


def test_flatten_joint_arguments_keeps_sharing():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    opt = Opt(model)
    flat = nnx.flatten((model, opt), with_paths=True)
    assert len(flat.leaves) == 3  # kernel, bias once; step
    assert flat.paths[0] == (0, "bias")
    raws = [v.get_raw_value() for v in flat.leaves]
    m2, o2 = nnx.unflatten(flat.graphdef, raws)
    assert o2.model is m2 and m2 is not model


def test_unflatten_with_raw_values_makes_new_variables_of_the_recorded_kind():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    model.kernel.tag = "k"
    flat = nnx.flatten(model)
    new = nnx.unflatten(flat.graphdef, [jnp.zeros_like(v[...]) for v in flat.leaves])
    assert type(new.kernel) is nnx.Param and new.kernel.tag == "k"
    np.testing.assert_array_equal(new.kernel[...], np.zeros((2, 3)))
    np.testing.assert_array_equal(model.kernel[...], flat.leaves[1][...])  # untouched


def test_unflatten_wraps_plain_values_for_ref_and_hijax_slots():
    with nnx.var_defaults(ref=True):
        r = nnx.Variable(jnp.ones(2))
    with nnx.var_defaults(hijax=True):
        h = nnx.Variable(jnp.ones(2))
    flat = nnx.flatten([r, h])
    r2, h2 = nnx.unflatten(flat.graphdef, [jnp.zeros(2), jnp.zeros(2)])
    assert r2.ref and isinstance(r2.get_raw_value(), jax.Ref)
    assert h2.hijax
    np.testing.assert_array_equal(h2[...], np.zeros(2))


def test_ref_index_maps_returned_inputs_back_to_the_callers_objects():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    inp = nnx.flatten(model)
    inner = nnx.unflatten(inp.graphdef, [v.get_raw_value() for v in inp.leaves])
    inner_ids = {id(o): i for i, o in enumerate(nnx.flatten(inner).nodes)}
    new_param = nnx.Param(jnp.ones(1))
    out = nnx.flatten((inner, inner.kernel, new_param), ref_index=inner_ids)
    assert len(out.leaves) == 1  # only the new Param travels
    rebuilt = nnx.unflatten(out.graphdef, [new_param.get_raw_value()], index_ref=inp.nodes)
    assert rebuilt[0] is model and rebuilt[1] is model.kernel
    assert isinstance(rebuilt[2], nnx.Param) and rebuilt[2] is not new_param


def test_flatten_cache_reuses_until_structure_changes():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    cache = nnx.FlattenCache()
    a = cache.flatten((model,))
    model.kernel[...] = jnp.zeros((2, 3))  # value change: same structure
    assert cache.flatten((model,)) is a
    model.extra = nnx.Param(jnp.ones(1))  # structure change
    b = cache.flatten((model,))
    assert b is not a and len(b.leaves) == 3
    other = Linear(2, 3, rngs=nnx.Rngs(1))
    c = cache.flatten((other,))
    assert c is not b and c.leaves[0] is other.bias


def test_flatten_cache_sees_list_mutation():
    class Stack(nnx.Module):
        def __init__(self):
            self.layers = [Linear(2, 2, rngs=nnx.Rngs(0))]

    s = Stack()
    cache = nnx.FlattenCache()
    assert len(cache.flatten((s,)).leaves) == 2
    s.layers.append(Linear(2, 2, rngs=nnx.Rngs(1)))
    assert len(cache.flatten((s,)).leaves) == 4


def test_filter_leaves():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    model.count = nnx.Variable(jnp.array(0))
    flat = nnx.flatten(model, with_paths=True)
    assert nnx.filter_leaves(flat, nnx.Param) == [True, False, True]
    assert nnx.filter_leaves(flat, "count") == [False, True, False]


def test_unflatten_reuses_variables_or_copies_them():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    flat = nnx.flatten(model)
    again = nnx.unflatten(flat.graphdef, flat.leaves)
    assert again is not model and again.kernel is model.kernel
    fresh = nnx.unflatten(flat.graphdef, flat.leaves, copy_variables=True)
    assert fresh.kernel is not model.kernel
    np.testing.assert_array_equal(fresh.kernel[...], model.kernel[...])
    assert [type(v).__name__ for v in flat.variables] == ["Param", "Param"]
    assert flat.graphdef.num_leaves == len(flat.leaves) == 2


def test_flatten_leaves_hold_raw_arrays_after_the_variables_order_is_sorted_paths():
    class M(nnx.Module):
        def __init__(self):
            self.z = nnx.Param(jnp.ones(1))
            self.a = jnp.zeros(2)  # a raw array attribute is a leaf too

    flat = nnx.flatten(M(), with_paths=True)
    assert flat.paths == [("a",), ("z",)]
    assert isinstance(flat.leaves[0], jax.Array) and isinstance(flat.leaves[1], nnx.Param)
    raws = [x.get_raw_value() if isinstance(x, nnx.Variable) else x for x in flat.leaves]
    m2 = nnx.unflatten(flat.graphdef, raws)
    np.testing.assert_array_equal(m2.a, [0.0, 0.0])


def test_graph_epoch_moves_on_structure_changes_only():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    e = nnx.graph_epoch()
    model.kernel[...] += 1.0
    model.kernel += 1.0  # `self.x += 1` re-assigns the same object: no structural change
    model.bias.value = jnp.ones(3)
    assert nnx.graph_epoch() == e
    for change in (
        lambda: setattr(model, "extra", nnx.Param(jnp.ones(1))),
        lambda: delattr(model, "extra"),
        lambda: setattr(model.kernel, "tag", "k"),
        lambda: setattr(model, "din", 5),
    ):
        before = nnx.graph_epoch()
        change()
        assert nnx.graph_epoch() != before


def test_flatten_cache_sees_metadata_changes_other_objects_and_arity():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    cache = nnx.FlattenCache()
    a = cache.flatten((model,))
    model.kernel.tag = "k"
    b = cache.flatten((model,))
    assert b is not a and b.graphdef != a.graphdef
    assert cache.flatten((model,)) is b
    c = cache.flatten((model, model))  # another arity
    assert c is not b and len(c.leaves) == 2
    x = jnp.ones(2)  # arrays are passed through too (held strongly)
    d = cache.flatten((model, x))
    assert cache.flatten((model, x)) is d
    assert cache.flatten((model, jnp.ones(2))) is not d


def test_filter_leaves_without_paths_uses_the_graphdef_paths():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    flat = nnx.FlattenCache().flatten((model,))
    assert flat.paths is None
    assert nnx.filter_leaves(flat, "kernel") == [False, True]
    assert nnx.filter_leaves(flat, lambda path, x: path == (0, "bias")) == [True, False]
