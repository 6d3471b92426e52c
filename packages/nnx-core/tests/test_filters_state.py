"""Filter forms and State."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Count

import nnx


class Model(nnx.Module):
    def __init__(self):
        self.linear = nnx.Dict(kernel=nnx.Param(jnp.ones((2, 2))), bias=nnx.Param(jnp.zeros(2)))
        self.bn = nnx.Dict(mean=nnx.BatchStat(jnp.zeros(2)))
        self.count = Count(jnp.array(0))
        self.tagged = nnx.Variable(jnp.ones(1), tag="dropout")
        self.layers = [nnx.Param(jnp.ones(1)), nnx.Param(jnp.ones(1))]


def paths(state):
    return sorted(tuple(map(str, p)) for p, _ in state.flat_state())


@pytest.mark.parametrize(
    "filter_, expected",
    [
        (nnx.Param, [("layers", "0"), ("layers", "1"), ("linear", "bias"), ("linear", "kernel")]),
        ("bn", [("bn", "mean")]),
        (lambda path, x: isinstance(x, Count), [("count",)]),
        (nnx.PathContains("bias"), [("linear", "bias")]),
        (nnx.OfType(nnx.BatchStat), [("bn", "mean")]),
        (nnx.WithTag("dropout"), [("tagged",)]),
        (nnx.All(nnx.Param, "linear"), [("linear", "bias"), ("linear", "kernel")]),
        (nnx.Any(nnx.BatchStat, Count), [("bn", "mean"), ("count",)]),
        (nnx.Not(nnx.Param), [("bn", "mean"), ("count",), ("tagged",)]),
        ([nnx.BatchStat, Count], [("bn", "mean"), ("count",)]),
        (nnx.Nothing, []),
        (False, []),
    ],
)
def test_filter_forms(filter_, expected):
    assert paths(nnx.state(Model(), filter_)) == expected


@pytest.mark.parametrize("everything", [..., True, nnx.Everything])
def test_everything_forms(everything):
    assert len(nnx.state(Model(), everything).flat_state()) == 7


def test_invalid_filter_message():
    with pytest.raises(TypeError, match="Invalid filter 3"):
        nnx.state(Model(), 3)


def test_state_mapping_and_attribute_access():
    _, state = nnx.split(Model())
    assert state.linear.kernel is state["linear"]["kernel"]
    flat = state.flat_state()
    assert flat[0][0] == ("bn", "mean")
    rebuilt = nnx.State.from_flat(flat)
    assert rebuilt == state


def test_state_filter_split_merge():
    _, state = nnx.split(Model())
    params, rest = state.split(nnx.Param, ...)
    assert len(params.flat_state()) == 4 and len(rest.flat_state()) == 3
    with pytest.raises(nnx.FilterError, match="bn/mean"):
        state.split(nnx.Param)
    merged = nnx.State.merge(params, rest)
    assert merged == state
    only = state.filter(nnx.BatchStat)
    assert paths(only) == [("bn", "mean")]


def test_pure_dict_round_trip_keeps_int_keys():
    _, state = nnx.split(Model())
    pure = state.to_pure_dict()
    assert isinstance(pure["layers"][0], jax.Array) and 0 in pure["layers"]
    pure["layers"][1] = jnp.full(1, 5.0)
    pure["count"] = jnp.array(3)
    # keys as strings, as some checkpoint formats write them
    pure["layers"] = {str(k): v for k, v in pure["layers"].items()}
    state.replace_by_pure_dict(pure)
    assert float(state["layers"][1][...][0]) == 5.0 and int(state["count"][...]) == 3


def test_replace_by_pure_dict_missing_entry():
    _, state = nnx.split(Model())
    with pytest.raises(nnx.StructureError, match="no entry for 'bn'"):
        state.replace_by_pure_dict({"linear": {}})


def test_state_equality_compares_values():
    _, a = nnx.split(Model())
    _, b = nnx.split(Model())
    assert a == b
    b["count"][...] = jnp.array(1)
    assert a != b


def test_state_repr_is_readable():
    _, state = nnx.split(Model())
    text = repr(state)
    assert text.startswith("State({") and "'kernel': Param(value=float32[2,2])" in text


def test_state_pytree_order_is_sorted_paths():
    _, state = nnx.split(Model())
    leaves = jax.tree.leaves(state)
    assert len(leaves) == 7
    np.testing.assert_array_equal(leaves[0], np.zeros(2))  # bn/mean first
