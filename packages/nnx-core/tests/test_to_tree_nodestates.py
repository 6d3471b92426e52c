"""nnx.to_tree / nnx.from_tree in Flax NNX's form: one NodeStates per graph node (#14)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Linear

import nnx


def test_each_graph_node_leaf_becomes_a_nodestates_of_its_split():
    m1 = Linear(1, 1, rngs=nnx.Rngs(0))
    tree = nnx.to_tree((m1, jnp.zeros(2), "tag"))
    ns, arr, tag = tree
    assert isinstance(ns, nnx.NodeStates) and tag == "tag" and arr.shape == (2,)
    graphdef, state = nnx.split(m1)
    assert ns.graphdef == graphdef
    assert ns.states[0]["kernel"] is m1.kernel  # the graph's own Variables, as split gives
    assert [p for p, _ in ns.state.flat_state()] == [p for p, _ in state.flat_state()]
    # the NodeStates is a pytree: its leaves are the States' arrays, the GraphDef is static
    np.testing.assert_array_equal(jax.tree.leaves(tree)[0], m1.bias[...])
    (m2, _, _) = nnx.from_tree(tree)
    assert type(m2) is Linear and m2.kernel is m1.kernel


def test_an_object_reached_from_two_leaves_is_split_once_and_merged_as_one():
    m1 = Linear(1, 1, rngs=nnx.Rngs(0))
    out_tree = nnx.to_tree(((m1,), m1, {"v": m1.kernel}))
    assert sorted(out_tree[0][0].states[0]) == ["bias", "kernel"]
    assert len(out_tree[1].states[0]) == 0  # a reference: no State entry
    assert len(jax.tree.leaves(out_tree)) == 2
    (a,), b, d = nnx.from_tree(out_tree)
    assert a is b and d["v"] is a.kernel


def test_to_tree_carries_graphs_through_jax_jit_and_lax_scan():
    m = Linear(2, 2, rngs=nnx.Rngs(0))

    @jax.jit
    def step(tree, x):
        model, again = nnx.from_tree(tree)
        assert model is again
        model.bias[...] = model.bias[...] + x
        return nnx.to_tree((model, again))

    out = nnx.from_tree(step(nnx.to_tree((m, m)), jnp.ones(2)))
    assert out[0] is out[1]
    np.testing.assert_array_equal(out[0].bias[...], m.bias[...] + 1)

    def body(carry, x):
        (model,) = nnx.from_tree(carry)
        model.bias[...] = model.bias[...] + x
        return nnx.to_tree((model,)), None

    final, _ = jax.lax.scan(body, nnx.to_tree((m,)), jnp.ones((3, 2)))
    (after,) = nnx.from_tree(final)
    np.testing.assert_array_equal(after.bias[...], m.bias[...] + 3)


def test_a_variable_leaf_is_its_own_state():
    v = nnx.Param(jnp.arange(3.0))
    ns = nnx.to_tree(v)
    assert isinstance(ns, nnx.NodeStates) and ns.state is v
    back = nnx.from_tree(ns)
    assert back is v


def test_split_fn_and_prefix_and_map_non_graph_nodes():
    m = nnx.Dict(w=nnx.Param(jnp.ones(2)), s=nnx.BatchStat(jnp.zeros(2)))
    seen = []

    def split_fn(ctx, path, prefix, leaf):
        seen.append((jax.tree_util.keystr(path), prefix))
        if not nnx.is_graph_node(leaf) and not isinstance(leaf, nnx.Dict):
            return leaf * 10
        return nnx.NodeStates.from_split(*ctx.split(leaf, nnx.Param, ...))

    tree = nnx.to_tree(
        {"m": m, "x": jnp.ones(1)},
        prefix={"m": 0, "x": None},
        split_fn=split_fn,
        map_non_graph_nodes=True,
    )
    assert seen == [("['m']", 0), ("['x']", None)]
    params, rest = tree["m"].states
    assert list(params) == ["w"] and list(rest) == ["s"]
    np.testing.assert_array_equal(tree["x"], [10.0])
    back = nnx.from_tree(tree)
    assert back["m"]["w"] is m["w"] and back["m"]["s"] is m["s"]


def test_a_shared_object_with_two_prefixes_is_an_aliasing_error():
    m = Linear(1, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"also reached from \[1\] with prefix 1"):
        nnx.to_tree((m, m), prefix=(0, 1))
    tree = nnx.to_tree((m, m), prefix=(0, 1), check_aliasing=False)
    assert isinstance(tree[1], nnx.NodeStates)


def test_merge_fn_and_graph_tree():
    m = Linear(1, 1, rngs=nnx.Rngs(0))
    calls = []

    def merge_fn(ctx, path, prefix, leaf):
        calls.append(prefix)
        return ctx.merge(leaf.graphdef, *leaf.states, copy=True)

    (back,) = nnx.from_tree(nnx.to_tree((m,)), prefix=(7,), merge_fn=merge_fn)
    assert calls == [7] and back.kernel is not m.kernel
    np.testing.assert_array_equal(back.kernel[...], m.kernel[...])
    g = nnx.GraphTree.of((m, m))
    a, b = nnx.from_tree(g)
    assert a is b and a is not m
