"""nnx.move_into (the caller's objects take a rebuilt graph's contents) and
unflatten(return_flat=True), the two pieces the transforms' graph updates use."""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Dense(nnx.Module):
    def __init__(self, w):
        self.kernel = nnx.Param(jnp.asarray(w))
        self.bias = nnx.Param(jnp.zeros(2))


def test_the_docstring_example():
    model = Dense(np.ones((2, 2)))
    fresh = nnx.clone(model)
    fresh.note = "changed"
    del fresh.bias
    moved = nnx.move_into([(fresh, model)])
    assert model.note == "changed" and not hasattr(model, "bias")
    assert moved == {id(fresh): model}


def test_children_with_targets_are_replaced_and_new_children_kept():
    model, sub = Dense(np.ones((2, 2))), Dense(np.zeros((2, 2)))
    model.sub = sub
    fresh = nnx.clone(model)
    fresh.extra = Dense(np.eye(2))  # new: stays the fresh object
    fresh.extra.parent = fresh.sub  # a new object pointing at a moved one
    fresh.sub.kernel[...] = jnp.full((2, 2), 3.0)
    nnx.move_into([(fresh, model), (fresh.sub, sub)], rest=[fresh.extra])
    assert model.sub is sub and float(sub.kernel[0, 0]) == 3.0
    assert model.extra is fresh.extra and model.extra.parent is sub


def test_a_variable_keeps_its_identity_and_mode_and_takes_value_and_metadata():
    with nnx.var_defaults(ref=True):
        v = nnx.Param(jnp.zeros(3))
    fresh = nnx.Param(jnp.ones(3), note="hi")
    nnx.move_into([(fresh, v)])
    np.testing.assert_array_equal(v[...], np.ones(3))
    assert v.get_metadata("note") == "hi" and nnx.storage_mode(v).name == "REF"


def test_nnx_list_and_dict_keep_identity():
    items = nnx.List([1, 2])
    table = nnx.Dict(a=1)
    nnx.move_into([(nnx.List([3]), items), (nnx.Dict(b=2), table)])
    assert list(items) == [3] and dict(table) == {"b": 2}


def test_a_type_mismatch_is_a_type_error():
    with pytest.raises(TypeError, match="cannot move a Dense into a List"):
        nnx.move_into([(Dense(np.ones((2, 2))), nnx.List())])


def test_unflatten_return_flat_gives_the_flattening_of_what_was_built():
    model = Dense(np.ones((2, 2)))
    model.tied = model.kernel
    flat = nnx.flatten(model)
    values = [v.get_value() * 2 for v in flat.leaves]
    obj, built = nnx.unflatten(flat.graphdef, values, return_flat=True)
    again = nnx.flatten(obj)
    assert built.graphdef == again.graphdef == flat.graphdef
    assert all(a is b for a, b in zip(built.leaves, again.leaves))
    assert all(a is b for a, b in zip(built.nodes, again.nodes))
    assert built.leaves[0] is obj.bias and obj.tied is obj.kernel
