"""split / merge / update / state and the graph utilities."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Count, Linear
from hypothesis import given, settings
from hypothesis import strategies as st

import nnx


class StatefulLinear(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.w = nnx.Param(jax.random.uniform(rngs(), (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.count = Count(jnp.array(0, dtype=jnp.uint32))

    def __call__(self, x):
        self.count += 1
        return x @ self.w + self.b[None]


def test_functional_round_trip_as_in_seed_003():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(graphdef, state, x):
        model = nnx.merge(graphdef, state)
        y = model(x)
        _, state = nnx.split(model)
        return y, state

    x = jnp.ones((1, 3))
    y, state = forward(graphdef, state, x)
    nnx.update(model, state)
    assert int(model.count[...]) == 1
    np.testing.assert_allclose(y, x @ model.w[...] + model.b[None], rtol=1e-6)


def test_split_by_filters_and_merge_and_update():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    graphdef, params, counts = nnx.split(model, nnx.Param, Count)
    assert set(params) == {"w", "b"} and set(counts) == {"count"}
    model2 = nnx.merge(graphdef, params, counts)
    assert model2.w is model.w  # States hold the graph's own Variables
    model3 = nnx.merge(graphdef, params, counts, copy=True)
    assert model3.w is not model.w
    counts["count"][...] = jnp.array(7, jnp.uint32)
    nnx.update(model, params, counts)
    assert int(model.count[...]) == 7


def test_filters_must_be_exhaustive_and_error_names_the_path():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.FilterError, match=r"No filter matched the Count at path 'count'"):
        nnx.split(model, nnx.Param)


def test_ellipsis_must_be_last():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="must be the last filter"):
        nnx.split(model, ..., nnx.Param)


def test_state_is_not_exhaustive():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    assert set(params) == {"w", "b"}
    both = nnx.state(model, nnx.Param, Count)
    assert isinstance(both, tuple) and len(both) == 2


class Block(nnx.Module):
    def __init__(self, linear):
        self.linear = linear
        self.scale = nnx.Param(jnp.ones(2))


class Tied(nnx.Module):
    def __init__(self):
        shared = Linear(2, 2, rngs=nnx.Rngs(0))
        self.block1 = Block(shared)
        self.block2 = Block(shared)


def test_shared_submodule_appears_once_and_is_shared_after_merge():
    model = Tied()
    graphdef, state = nnx.split(model)
    paths = [p for p, _ in state.flat_state()]
    assert ("block1", "linear", "kernel") in paths
    assert ("block2", "linear", "kernel") not in paths
    model2 = nnx.merge(graphdef, state, copy=True)
    assert model2.block1.linear is model2.block2.linear
    assert model2.block1.linear is not model.block1.linear


def test_update_keeps_sharing():
    model = Tied()
    graphdef, state = nnx.split(model)
    new = jax.tree.map(lambda x: x + 1, state)
    nnx.update(model, new)
    assert model.block1.linear is model.block2.linear
    np.testing.assert_allclose(model.block2.linear.bias[...], np.ones(2))


def test_shared_variable_across_modules():
    a = Linear(2, 2, rngs=nnx.Rngs(0))
    b = Linear(2, 2, rngs=nnx.Rngs(1))
    b.kernel = a.kernel  # weight tying
    pair = nnx.List([a, b])
    g, s = nnx.split(pair)
    pair2 = nnx.merge(g, s, copy=True)
    assert pair2[0].kernel is pair2[1].kernel


def test_cycles_round_trip():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    m.me = m
    g, s = nnx.split(m)
    m2 = nnx.merge(g, s, copy=True)
    assert m2.me is m2 and m2 is not m  # pyright: ignore[reportAttributeAccessIssue]


def test_graphdef_hashable_equal_for_equal_structures():
    g1 = nnx.graphdef(Linear(2, 3, rngs=nnx.Rngs(0)))
    g2 = nnx.graphdef(Linear(2, 3, rngs=nnx.Rngs(1)))
    g3 = nnx.graphdef(Linear(2, 4, rngs=nnx.Rngs(0)))
    assert g1 == g2 and hash(g1) == hash(g2)
    assert g1 != g3
    assert jax.tree.leaves(g1) == []  # a pytree with no leaves


def test_state_is_a_pytree_valid_as_jit_argument():
    model = Linear(2, 3, rngs=nnx.Rngs(0))
    g, state = nnx.split(model)
    out = jax.jit(lambda s: jax.tree.map(lambda x: x * 2, s))(state)
    assert isinstance(out, nnx.State)
    np.testing.assert_allclose(out["kernel"][...], 2 * model.kernel[...])


def test_model_surgery_is_seen_by_split():
    model = Tied()
    old = model.block1.linear

    class Wrapper(nnx.Module):
        def __init__(self, inner):
            self.inner = inner
            self.extra = nnx.Param(jnp.zeros(2))

    model.block1.linear = Wrapper(old)  # pyright: ignore[reportAttributeAccessIssue]
    _, state = nnx.split(model)
    paths = {p for p, _ in state.flat_state()}
    assert ("block1", "linear", "extra") in paths
    assert ("block1", "linear", "inner", "kernel") in paths


def test_merge_missing_state_errors():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    g, params, counts = nnx.split(model, nnx.Param, ...)
    with pytest.raises(nnx.StructureError, match="no State provides a value for 'count'"):
        nnx.merge(g, params)


def test_update_unknown_path_errors():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    bad = nnx.State({"nope": nnx.Param(jnp.ones(1))})
    with pytest.raises(nnx.StructureError, match="no Variable or array at 'nope'"):
        nnx.update(model, bad)


def test_clone_is_deep_and_keeps_sharing():
    model = Tied()
    c = nnx.clone(model)
    assert c.block1.linear is c.block2.linear
    assert c.block1.linear.kernel is not model.block1.linear.kernel
    c.block1.scale[...] = jnp.zeros(2)
    np.testing.assert_array_equal(model.block1.scale[...], np.ones(2))


def test_pop_removes_variables():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    counts = nnx.pop(model, Count)
    assert set(counts) == {"count"}
    assert not hasattr(model, "count")


def test_iter_graph_and_find_duplicates():
    model = Tied()
    paths = [p for p, _ in nnx.iter_graph(model)]
    assert paths[-1] == ()
    assert ("block1", "linear", "kernel") in paths
    assert ("block2", "linear") not in paths  # each object once
    assert nnx.find_duplicates(model) == [[("block1", "linear"), ("block2", "linear")]]


def test_raw_array_attributes_are_state():
    class Holder(nnx.Module):
        def __init__(self):
            self.table = jnp.arange(3.0)

    h = Holder()
    g, s = nnx.split(h)
    assert isinstance(s["table"], jax.Array)
    nnx.update(h, nnx.State({"table": jnp.zeros(3)}))
    np.testing.assert_array_equal(h.table, np.zeros(3))


def test_to_tree_from_tree_keeps_sharing_through_jit():
    model = Tied()

    @jax.jit
    def f(tree):
        m = nnx.from_tree(tree)
        assert m.block1.linear is m.block2.linear
        m.block1.linear.bias[...] = m.block1.linear.bias[...] + 1
        return nnx.to_tree(m)

    out = nnx.from_tree(f(nnx.to_tree(model)))
    assert out.block1.linear is out.block2.linear
    np.testing.assert_allclose(out.block2.linear.bias[...], np.ones(2))


# -- property-based: random graphs with sharing round-trip --------------------------
class Node(nnx.Module):
    pass


@st.composite
def graphs(draw):
    n_vars = draw(st.integers(1, 6))
    variables = [nnx.Param(jnp.full((2,), float(i))) for i in range(n_vars)]
    n_nodes = draw(st.integers(1, 5))
    nodes = [Node() for _ in range(n_nodes)]
    for i, node in enumerate(nodes):
        n_attrs = draw(st.integers(0, 4))
        for j in range(n_attrs):
            kind = draw(st.sampled_from(["var", "node", "list", "dict"]))
            if kind == "var":
                setattr(node, f"a{j}", draw(st.sampled_from(variables)))
            elif kind == "node" and i + 1 < n_nodes:
                setattr(node, f"a{j}", nodes[draw(st.integers(i + 1, n_nodes - 1))])
            elif kind == "list":
                setattr(node, f"a{j}", [draw(st.sampled_from(variables)) for _ in range(2)])
            else:
                setattr(node, f"a{j}", {"x": draw(st.sampled_from(variables))})
    return nodes[0]


def _identity_pattern(root):
    ids: dict = {}
    out = []
    for path, x in nnx.iter_graph(root):
        out.append((path, ids.setdefault(id(x), len(ids)), type(x).__name__))
    return out


def _values(root):
    return [
        (p, np.asarray(x[...]).tolist())
        for p, x in nnx.iter_graph(root)
        if isinstance(x, nnx.Variable)
    ]


@settings(max_examples=40, deadline=None)
@given(graphs())
def test_random_graphs_round_trip_through_split_merge(root):
    graphdef, state = nnx.split(root)
    copy = nnx.merge(graphdef, state, copy=True)
    assert _identity_pattern(copy) == _identity_pattern(root)
    assert _values(copy) == _values(root)
    assert nnx.graphdef(copy) == graphdef


@settings(max_examples=40, deadline=None)
@given(graphs())
def test_random_graphs_update_writes_every_variable_once(root):
    graphdef, state = nnx.split(root)
    plus = jax.tree.map(lambda x: x + 10, state)
    before = {p: np.asarray(v[...]) for p, v in state.flat_state()}
    nnx.update(root, plus)
    for p, v in nnx.state(root).flat_state():
        np.testing.assert_array_equal(v[...], before[p] + 10)


# -- richer random graphs: cycles, tuples, nested containers, kinds, modes, raw arrays ----
KINDS = [nnx.Param, nnx.BatchStat, Count]
MODE_KW = [{}, {"ref": True}, {"hijax": True}]


@st.composite
def rich_graphs(draw):
    n_vars = draw(st.integers(1, 5))
    variables = [
        draw(st.sampled_from(KINDS))(jnp.full((2,), float(i)), **draw(st.sampled_from(MODE_KW)))
        for i in range(n_vars)
    ]
    nodes = [Node() for _ in range(draw(st.integers(1, 4)))]

    def value(depth):
        kind = draw(st.sampled_from(["var", "node", "array", "list", "tuple", "dict", "static"]))
        if kind == "var":
            return draw(st.sampled_from(variables))
        if kind == "node":  # any node, earlier ones too: cycles and sharing
            return draw(st.sampled_from(nodes))
        if kind == "array":
            return jnp.full((1,), float(draw(st.integers(0, 9))))
        if kind == "static" or depth > 1:
            return draw(st.sampled_from([3, "name", None]))
        items = [value(depth + 1) for _ in range(draw(st.integers(1, 2)))]
        if kind == "list":
            return items
        if kind == "tuple":
            return tuple(items)
        return {f"k{i}": x for i, x in enumerate(items)}

    for node in nodes:
        for j in range(draw(st.integers(0, 3))):
            setattr(node, f"a{j}", value(0))
    return nodes[0]


def _leaf_values(root):
    out = []
    for p, x in nnx.iter_graph(root):
        if isinstance(x, nnx.Variable):
            out.append((p, type(x).__name__, x.hijax, x.ref, np.asarray(x[...]).tolist()))
        elif isinstance(x, jax.Array):
            out.append((p, "array", np.asarray(x).tolist()))
    return out


@settings(max_examples=40, deadline=None)
@given(rich_graphs())
def test_rich_random_graphs_round_trip_through_split_merge_clone_and_to_tree(root):
    graphdef, state = nnx.split(root)
    for copy in (
        nnx.merge(graphdef, state, copy=True),
        nnx.clone(root),
        nnx.from_tree(nnx.to_tree(root)),
        jax.tree.map(lambda x: x, root),  # the JAX pytree view is the same flattening
    ):
        assert _identity_pattern(copy) == _identity_pattern(root)
        assert _leaf_values(copy) == _leaf_values(root)
        assert nnx.graphdef(copy) == graphdef
    assert nnx.merge(graphdef, state) is not root


@settings(max_examples=40, deadline=None)
@given(rich_graphs())
def test_rich_random_graphs_update_in_place_keeps_every_object(root):
    ids_before = _identity_pattern(root)
    objects_before = [id(x) for _, x in nnx.iter_graph(root) if not isinstance(x, jax.Array)]
    _, state = nnx.split(root)
    expected = {
        p: np.asarray(v[...] if isinstance(v, nnx.Variable) else v) + 1
        for p, v in state.flat_state()
    }
    plus = nnx.State.from_flat(
        (p, (v[...] if isinstance(v, nnx.Variable) else v) + 1) for p, v in state.flat_state()
    )
    nnx.update(root, plus)
    assert _identity_pattern(root) == ids_before
    assert [
        id(x) for _, x in nnx.iter_graph(root) if not isinstance(x, jax.Array)
    ] == objects_before
    for p, v in nnx.state(root).flat_state():
        np.testing.assert_array_equal(v[...] if isinstance(v, nnx.Variable) else v, expected[p])


# -- the graph API, point by point ------------------------------------------------------
def test_graphdef_is_a_static_argument_of_jit_and_equal_graphdefs_hit_the_cache():
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def f(graphdef, state):
        traces.append(1)
        return nnx.merge(graphdef, state)(jnp.ones((1, 2)))

    a, b = Linear(2, 3, rngs=nnx.Rngs(0)), Linear(2, 3, rngs=nnx.Rngs(1))
    ga, sa = nnx.split(a)
    gb, sb = nnx.split(b)
    np.testing.assert_allclose(f(ga, sa), a(jnp.ones((1, 2))), rtol=1e-6)
    np.testing.assert_allclose(f(gb, sb), b(jnp.ones((1, 2))), rtol=1e-6)
    assert len(traces) == 1
    assert len({ga, gb}) == 1


def test_graphdef_differs_for_other_sharing_kinds_and_modes():
    def pair(shared, kind: type[nnx.Variable] = nnx.Param, **kw):
        p = nnx.List([kind(jnp.ones(1), **kw)])
        p.append(p[0] if shared else kind(jnp.ones(1), **kw))
        return nnx.graphdef(p)

    assert pair(True) != pair(False)
    assert pair(False) != pair(False, nnx.BatchStat)
    assert pair(False) != pair(False, ref=True)
    assert pair(False) == pair(False)


def test_cycles_work_in_split_merge_update_clone_and_the_pytree_view():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    m.child = Linear(2, 2, rngs=nnx.Rngs(1))
    m.child.parent = m  # pyright: ignore[reportAttributeAccessIssue]
    g, s = nnx.split(m)
    m2 = nnx.merge(g, s, copy=True)
    assert m2.child.parent is m2  # pyright: ignore[reportAttributeAccessIssue]
    nnx.update(m, jax.tree.map(lambda x: x * 0, s))
    np.testing.assert_array_equal(m.child.kernel[...], np.zeros((2, 2)))  # pyright: ignore[reportAttributeAccessIssue]
    c = nnx.clone(m)
    assert c.child.parent is c and c.kernel is not m.kernel  # pyright: ignore[reportAttributeAccessIssue]
    doubled = jax.jit(lambda m: jax.tree.map(lambda x: x + 1, m))(m)
    assert doubled.child.parent is doubled
    np.testing.assert_array_equal(doubled.child.kernel[...], np.ones((2, 2)))
    assert [p for p, _ in nnx.iter_graph(m)][-1] == ()
    assert nnx.find_duplicates(m) == [[(), ("child", "parent")]]


def test_pop_with_several_filters_and_from_containers():
    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(1))
            self.stats = {"mean": nnx.BatchStat(jnp.zeros(1))}
            self.cache = [nnx.Cache(jnp.zeros(1))]

    m = M()
    stats, caches = nnx.pop(m, nnx.BatchStat, nnx.Cache)
    assert [p for p, _ in stats.flat_state()] == [("stats", "mean")]
    assert [p for p, _ in caches.flat_state()] == [("cache", 0)]
    assert m.stats == {} and m.cache == [] and [p for p, _ in nnx.state(m).flat_state()] == [("w",)]


def test_iter_graph_yields_variables_arrays_and_nodes_each_once():
    class M(nnx.Module):
        def __init__(self):
            self.table = jnp.arange(2.0)
            self.layers = [Linear(1, 1, rngs=nnx.Rngs(0))]
            self.again = self.layers[0]

    m = M()
    items = list(nnx.iter_graph(m))
    # attributes in sorted order: the shared Linear is first reached through `again`
    assert [p for p, _ in items] == [
        ("again", "bias"),
        ("again", "kernel"),
        ("again",),
        ("layers",),  # an nnx.List has identity: yielded once, as Flax's graph nodes are
        ("table",),
        (),
    ]
    assert items[2][1] is m.layers[0] and items[-1][1] is m
    assert items[3][1] is m.layers


def test_find_duplicates_reports_shared_variables_and_modules():
    model = Tied()
    model.extra = model.block1.scale
    assert nnx.find_duplicates(model) == [
        [("block1", "linear"), ("block2", "linear")],
        [("block1", "scale"), ("extra",)],
    ]
    assert nnx.find_duplicates(Linear(1, 1, rngs=nnx.Rngs(0))) == []


def test_merge_rejects_states_with_paths_the_graphdef_lacks():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    g, s = nnx.split(model)
    s["extra"] = nnx.Param(jnp.ones(1))
    with pytest.raises(
        nnx.StructureError, match="the States have paths the GraphDef does not: 'extra'"
    ):
        nnx.merge(g, s)


def test_merge_accepts_several_states_in_any_order_and_plain_mappings():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    g, params, counts = nnx.split(model, nnx.Param, ...)
    m2 = nnx.merge(g, counts, dict(params))
    assert m2.w is model.w and m2.count is model.count


def test_update_writes_into_ref_and_hijax_variables_and_refuses_immutable_ones():
    for mode in ({"ref": True}, {"hijax": True}):
        with nnx.var_defaults(**mode):
            m = StatefulLinear(2, 2, rngs=nnx.Rngs(0))
        raw = m.b.get_raw_value()
        nnx.update(m, nnx.State({"b": jnp.full(2, 3.0)}))
        assert m.b.get_raw_value() is raw  # the same ref / cell, written in place
        np.testing.assert_array_equal(m.b[...], [3.0, 3.0])
    frozen = nnx.vars_as(StatefulLinear(2, 2, rngs=nnx.Rngs(0)), mutable=False)
    with pytest.raises(nnx.ImmutableVariableError, match="Cannot write to an immutable Param"):
        nnx.update(frozen, nnx.State({"b": jnp.ones(2)}))


def test_model_surgery_is_seen_by_merge_and_the_pytree_view():
    model = Tied()
    old = model.block1.linear
    before = nnx.graphdef(model)

    class Scaled(nnx.Module):
        def __init__(self, inner):
            self.inner = inner
            self.alpha = nnx.Param(jnp.full((1, 2), 2.0))

        def __call__(self, x):
            return self.alpha * self.inner(x)

    model.block1.linear = Scaled(old)  # pyright: ignore[reportAttributeAccessIssue]
    assert nnx.graphdef(model) != before
    g, s = nnx.split(model)
    m2 = nnx.merge(g, s, copy=True)
    assert isinstance(m2.block1.linear, Scaled) and m2.block1.linear.inner is m2.block2.linear
    x = jnp.ones((1, 2))
    y = jax.jit(lambda m, x: m.block1.linear(x))(model, x)
    np.testing.assert_allclose(y, 2.0 * old(x), rtol=1e-6)


def test_state_filter_form_of_split_and_state_helpers():
    model = StatefulLinear(3, 5, rngs=nnx.Rngs(0))
    assert nnx.variables is nnx.state
    g = nnx.graphdef(model)
    assert g == nnx.split(model)[0] and g.num_leaves == 3
    assert g.paths == (("b",), ("count",), ("w",))
    assert nnx.is_graph_node(model) and nnx.is_graph_node(model.w)
    assert not nnx.is_graph_node(jnp.ones(1))


def test_unflatten_with_the_wrong_number_of_leaves():
    flat = nnx.flatten(Linear(2, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(nnx.StructureError, match="the GraphDef has 2 leaves, got 1"):
        nnx.unflatten(flat.graphdef, flat.leaves[:1])


def test_update_writes_raw_arrays_inside_tuples_and_namedtuples():
    import collections

    Pair = collections.namedtuple("Pair", "a b")

    class M(nnx.Module):
        def __init__(self):
            self.t = (jnp.zeros(1), [jnp.zeros(1)])
            self.p = Pair(jnp.zeros(1), 3)

    m = M()
    inner_list = m.t[1]
    nnx.update(
        m, nnx.State({"t": {0: jnp.ones(1), 1: {0: jnp.full(1, 2.0)}}, "p": {"a": jnp.ones(1)}})
    )
    assert isinstance(m.t, tuple) and m.t[1] is inner_list
    np.testing.assert_array_equal(m.t[0], [1.0])
    np.testing.assert_array_equal(m.t[1][0], [2.0])
    assert isinstance(m.p, Pair) and m.p.b == 3
    np.testing.assert_array_equal(m.p.a, [1.0])


def test_pop_from_tuples_and_several_items_of_one_list():
    class M(nnx.Module):
        def __init__(self):
            self.pair = (nnx.Param(jnp.ones(2)), nnx.BatchStat(jnp.zeros(2)))
            self.caches: list[nnx.Variable] = [nnx.Cache(jnp.full(1, float(i))) for i in range(4)]
            self.caches.insert(2, nnx.Param(jnp.full(1, 9.0)))

    m = M()
    keep = m.pair[0]
    stats, caches = nnx.pop(m, nnx.BatchStat, nnx.Cache)
    assert [p for p, _ in stats.flat_state()] == [("pair", 1)]
    assert [p for p, _ in caches.flat_state()] == [("caches", i) for i in (0, 1, 3, 4)]
    # the tuple is rebuilt without the item; list items go without shifting the others
    assert isinstance(m.pair, tuple) and len(m.pair) == 1 and m.pair[0] is keep
    assert len(m.caches) == 1 and float(m.caches[0][...][0]) == 9.0
    np.testing.assert_array_equal([c[...][0] for _, c in caches.flat_state()], [0, 1, 2, 3])


def test_pop_refuses_what_cannot_lose_an_item():
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")

    class M(nnx.Module):
        def __init__(self):
            self.pair = Pair(nnx.Param(jnp.ones(1)), nnx.BatchStat(jnp.zeros(1)))

    class Two(nnx.Module):
        def __init__(self):
            self.cache = nnx.Cache(jnp.zeros(1))  # popped first if pop were not atomic
            self.pair = Pair(nnx.Param(jnp.ones(1)), nnx.Cache(jnp.zeros(1)))

    with pytest.raises(nnx.StructureError, match="field of the namedtuple Pair"):
        nnx.pop(M(), nnx.BatchStat)
    two = Two()
    with pytest.raises(nnx.StructureError, match="field of the namedtuple Pair"):
        nnx.pop(two, nnx.Cache)
    assert isinstance(two.cache, nnx.Cache)  # nothing was removed
    with pytest.raises(nnx.StructureError, match="tuple passed as the root"):
        nnx.pop((nnx.Param(jnp.ones(1)), nnx.BatchStat(jnp.zeros(1))), nnx.BatchStat)
