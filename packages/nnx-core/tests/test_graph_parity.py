"""Flax NNX 0.12's graph and State helpers, written from its documented behaviour."""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Linear

import nnx


class StatefulLinear(nnx.Module):
    def __init__(self, din, dout, rngs):
        self.w = nnx.Param(jax.random.uniform(rngs(), (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.count = nnx.Variable(jnp.array(0, dtype=jnp.uint32))

    def increment(self):
        self.count[...] += 1

    def __call__(self, x):
        self.increment()
        return x @ self.w + self.b[None]


# -- pure ---------------------------------------------------------------------------
def test_pure_replaces_variables_by_their_values():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    _, state = nnx.split(model)
    shapes = jax.tree.map(jnp.shape, nnx.pure(state))
    assert isinstance(shapes, nnx.State)
    assert shapes.to_pure_dict() == {"bias": (3,), "kernel": (2, 3)}
    assert nnx.pure(state)["kernel"] is model.kernel[...]


@pytest.mark.parametrize("mode", [{"ref": True}, {"hijax": True}])
def test_pure_gives_plain_arrays_for_ref_and_hijax_variables(mode):
    with nnx.var_defaults(**mode):
        model = Linear(2, 3, rngs=nnx.Rngs(0))
    leaves = jax.tree.leaves(nnx.pure(nnx.state(model)))
    assert all(type(x) is type(jnp.zeros(1)) for x in leaves)


# -- call ---------------------------------------------------------------------------
def test_call_runs_a_method_of_a_split_pair_inside_jit_and_returns_the_new_pair():
    linear = StatefulLinear(3, 2, nnx.Rngs(0))
    linear_state = nnx.split(linear)

    @jax.jit
    def forward(x, linear_state):
        y, linear_state = nnx.call(linear_state)(x)
        return y, linear_state

    x = jnp.ones((1, 3))
    y, linear_state = forward(x, linear_state)
    y, linear_state = forward(x, linear_state)
    np.testing.assert_allclose(y, x @ linear.w[...] + linear.b[None], rtol=1e-6)
    assert int(nnx.merge(*linear_state).count[...]) == 2
    assert int(linear.count[...]) == 0  # the original object is untouched


def test_call_reaches_methods_of_sub_nodes_by_index_and_attribute():
    rngs = nnx.Rngs(0)
    nodes = dict(a=StatefulLinear(3, 2, rngs), b=StatefulLinear(2, 1, rngs))
    node_state = nnx.split(nodes)
    out, node_state2 = nnx.call(node_state)["b"].increment()
    assert out is None
    nodes2 = nnx.merge(*node_state2)
    assert int(nodes2["a"].count[...]) == 0 and int(nodes2["b"].count[...]) == 1
    # the pair passed in is left as it was (pure)
    assert int(nnx.merge(*node_state)["b"].count[...]) == 0

    class Holder(nnx.Module):
        def __init__(self):
            self.inner = StatefulLinear(2, 2, nnx.Rngs(1))

    _, pair = nnx.call(nnx.split(Holder())).inner.increment()
    assert int(nnx.merge(*pair).inner.count[...]) == 1


# -- recursive_map --------------------------------------------------------------------
class Block(nnx.Module):
    def __init__(self, rngs):
        self.lin = Linear(4, 4, rngs=rngs)
        self.conv = Linear(4, 2, rngs=rngs)


def test_recursive_map_visits_children_before_parents_in_sorted_order():
    seen = []

    def record(path, node):
        if isinstance(node, nnx.Module):
            seen.append(("." + ".".join(path), type(node).__name__))
        return node

    model = Block(nnx.Rngs(0))
    new = nnx.recursive_map(record, model)
    assert seen == [(".conv", "Linear"), (".lin", "Linear"), (".", "Block")]
    assert new is not model and new.lin is not model.lin  # the structure is cloned
    assert new.lin.kernel is model.lin.kernel  # Variables are not copied


def test_recursive_map_replaces_nodes_and_shares_the_result_of_a_shared_node():
    class Doubled(nnx.Module):
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, x):
            return 2 * self.inner(x)

    model = Block(nnx.Rngs(0))
    model.again = model.lin  # shared
    model.layers = [model.conv, 3]

    def wrap(path, node):
        return Doubled(node) if isinstance(node, Linear) else node

    new = nnx.recursive_map(wrap, model)
    assert isinstance(new.lin, Doubled) and new.again is new.lin
    assert isinstance(new.layers[0], Doubled) and new.layers[0] is new.conv
    x = jnp.ones((1, 4))
    np.testing.assert_allclose(new.lin(x), 2 * model.lin(x), rtol=1e-6)
    assert isinstance(model.lin, Linear)  # the original keeps its layers


def test_recursive_map_sees_variables_and_static_leaves_too():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    seen = {}

    def record(path, x):
        seen[path] = type(x).__name__
        return x

    nnx.recursive_map(record, model)
    assert seen == {
        ("bias",): "Param",
        ("din",): "int",
        ("dout",): "int",
        ("kernel",): "Param",
        (): "Linear",
    }


# -- iter_module_children ---------------------------------------------------------------
def test_iter_module_children_yields_direct_module_attributes_only():
    model = Block(nnx.Rngs(0))
    model.stack = [Linear(2, 2, rngs=nnx.Rngs(1))]
    assert [(k, type(m).__name__) for k, m in nnx.iter_module_children(model)] == [
        ("conv", "Linear"),
        ("lin", "Linear"),
    ]
    assert list(nnx.iter_module_children(model.lin)) == []  # Params are not modules
    assert [k for k, _ in nnx.iter_module_children(model.stack, graph=False)] == [0]  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(ValueError, match="expected a graph node.*got int"):
        list(nnx.iter_module_children(3))


# -- State and FlatState ----------------------------------------------------------------
def test_flat_state_has_paths_leaves_filter_split_and_round_trips():
    model = StatefulLinear(2, 2, nnx.Rngs(0))
    flat = nnx.state(model).flat_state()
    assert isinstance(flat, nnx.FlatState) and isinstance(flat, list)
    assert flat.paths == (("b",), ("count",), ("w",))
    assert flat.leaves[0] is model.b
    assert flat[0] == (("b",), model.b) and isinstance(flat[1:], nnx.FlatState)
    params = cast(nnx.FlatState, flat.filter(nnx.Param))
    assert params.paths == (("b",), ("w",))
    params, rest = flat.split(nnx.Param, ...)
    assert rest.paths == (("count",),)
    with pytest.raises(nnx.FilterError, match="No filter matched Variable at path 'count'"):
        flat.split(nnx.Param)
    merged = nnx.FlatState.merge(rest, params)
    assert merged.paths == flat.paths
    assert merged.to_nested_state() == nnx.state(model)
    doubled = jax.tree.map(lambda v: v * 2, flat)  # a pytree of its leaves
    assert isinstance(doubled, nnx.FlatState) and doubled.paths == flat.paths
    assert nnx.to_flat_state(nnx.state(model)).paths == flat.paths
    assert nnx.from_flat_state(flat) == nnx.state(model)
    assert nnx.FlatState.from_sorted_keys_values(flat.paths, flat.leaves) == flat


def test_state_from_flat_path_raw_mapping_and_difference():
    model = StatefulLinear(2, 2, nnx.Rngs(0))
    state = nnx.state(model)
    rebuilt = nnx.State.from_flat_path(dict(state.flat_state()))
    assert rebuilt == state and isinstance(rebuilt["w"], nnx.Param)
    assert nnx.State.from_flat_path(state.flat_state()) == state
    assert state.raw_mapping["w"] is model.w
    params = nnx.state(model, nnx.Param)
    rest = state - params
    assert [p for p, _ in rest.flat_state()] == [("count",)]
    assert (state - nnx.State({})) == state


def test_map_state_applies_f_to_each_path_and_leaf():
    model = StatefulLinear(2, 2, nnx.Rngs(0))
    seen = []

    def f(path, v):
        seen.append(path)
        return v[...] + 1

    out = nnx.map_state(f, nnx.state(model, nnx.Param))
    assert seen == [("b",), ("w",)]
    np.testing.assert_allclose(out["b"], np.ones(2))
    np.testing.assert_allclose(out["w"], model.w[...] + 1)


def test_restore_int_paths_turns_string_digits_back_into_int_keys():
    class Stack(nnx.Module):
        def __init__(self):
            self.layers = [Linear(2, 2, rngs=nnx.Rngs(i)) for i in range(2)]

    model = Stack()
    pure = nnx.state(model).to_pure_dict()
    as_saved = {"layers": {str(k): v for k, v in pure["layers"].items()}}  # what orbax writes
    restored = nnx.restore_int_paths(as_saved)
    assert set(restored["layers"]) == {0, 1}
    assert restored["layers"][1]["kernel"] is pure["layers"][1]["kernel"]
    assert nnx.restore_int_paths({"a": {"x1": 1, "-2": 2}}) == {"a": {"x1": 1, -2: 2}}


def test_graph_state_and_pure_state_are_the_types_split_returns():
    graphdef, state = pair = nnx.split(Linear(2, 2, rngs=nnx.Rngs(0)))
    # split gives a plain State; nnx.unpack gives a GraphState, which is a State too
    assert type(state) is nnx.State and issubclass(nnx.GraphState, nnx.State)
    assert isinstance(graphdef, nnx.GraphDef) and len(pair) == 2
    assert nnx.PureState == tuple[nnx.GraphDef, nnx.State]
