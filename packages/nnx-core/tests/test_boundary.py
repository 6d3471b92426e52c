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
