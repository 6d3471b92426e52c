"""``nnx.add_axis_metadata`` / ``nnx.remove_axis_metadata`` (Flax NNX's
``nnx.spmd.add_axis`` / ``remove_axis``): the axis rule of ``vmap(transform_metadata=)``
over a whole tree, for code that stacks Variables with a raw JAX transform."""

import jax
import jax.numpy as jnp
import pytest

import nnx


def _stacked_state():
    return nnx.State(
        {
            "a": nnx.Param(jnp.ones((4, 2, 3)), sharding_names=("x", None)),
            "b": jnp.ones(2),
            "c": nnx.Param(jnp.ones(2)),
        }
    )


def test_add_and_remove_axis_in_place():
    state = _stacked_state()
    a = state["a"]
    out = nnx.spmd.add_axis(state, 0, {nnx.PARTITION_NAME: "batch"})
    assert out is state and out["a"] is a  # in place, the same tree back
    assert a.get_metadata("sharding_names") == ("batch", "x", None)
    assert state["c"].get_metadata("sharding_names", None) is None  # no names: untouched
    nnx.spmd.remove_axis(state, 0, {nnx.PARTITION_NAME: "batch"})
    assert a.get_metadata("sharding_names") == ("x", None)
    nnx.add_axis_metadata(state, -1, {nnx.PARTITION_NAME: None})
    assert a.get_metadata("sharding_names") == ("x", None, None)


def test_a_named_variable_needs_the_partition_name():
    with pytest.raises(ValueError, match=r"names no axis: pass \{nnx.PARTITION_NAME: name\}"):
        nnx.spmd.add_axis(_stacked_state(), 0, {})
    # nothing named: nothing to say
    nnx.spmd.add_axis(nnx.State({"c": nnx.Param(jnp.ones(2))}), 0, {})


def test_remove_axis_checks_the_name():
    state = _stacked_state()
    with pytest.raises(ValueError, match="have no 'batch' at 0"):
        nnx.remove_axis_metadata(state, 0, {nnx.PARTITION_NAME: "batch"})


def test_a_refusal_leaves_every_variable_as_it_was():
    # all or nothing: "a" has the name at 0, "z" does not, so nothing is removed
    state = nnx.State(
        {
            "a": nnx.Param(jnp.ones((4, 2)), sharding_names=("batch", "x")),
            "z": nnx.Param(jnp.ones((4, 2)), sharding_names=("other", "x")),
        }
    )
    with pytest.raises(ValueError, match="have no 'batch' at 0"):
        nnx.remove_axis_metadata(state, 0, {nnx.PARTITION_NAME: "batch"})
    assert state["a"].get_metadata("sharding_names") == ("batch", "x")
    assert state["z"].get_metadata("sharding_names") == ("other", "x")


def test_hooks_run_and_modules_are_walked():
    calls = []
    v = nnx.Param(
        jnp.ones((3, 2)),
        on_add_axis=lambda var, i, name: calls.append(("add", i, name)),
        on_remove_axis=lambda var, i, name: calls.append(("remove", i, name)),
    )

    class Holder(nnx.Module):
        def __init__(self):
            self.v = v
            self.again = v  # shared: once

    m = Holder()
    nnx.add_axis_metadata(m, 1, {nnx.PARTITION_NAME: "layers"})
    nnx.remove_axis_metadata(m, 1, {nnx.PARTITION_NAME: "layers"})
    assert calls == [("add", 1, "layers"), ("remove", 1, "layers")]


def test_matches_what_vmap_records():
    # the same names as nnx.vmap(transform_metadata=) gives a Variable it creates
    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "ens"})
    def make(x):
        return nnx.Param(x, sharding_names=("x",))

    made = make(jnp.ones((3, 2)))
    by_hand = nnx.Param(jnp.ones((3, 2)), sharding_names=("x",))
    nnx.add_axis_metadata([by_hand], 0, {nnx.PARTITION_NAME: "ens"})
    assert made.get_metadata("sharding_names") == by_hand.get_metadata("sharding_names")
    assert jax.tree.leaves(made) != []
