"""Flax NNX 0.12's graph-level spellings: ``nnx.graph.flatten``/``unflatten`` in their
tuple form, split/merge contexts that share objects, and the small helpers of its
``graph``, ``filterlib``, ``variablelib``, ``spmd`` and ``rnglib`` modules. Expected
values are those Flax NNX 0.12.8 documents (and gives) for the same code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Block(nnx.Module):
    def __init__(self):
        self.b = nnx.BatchStat(jnp.array(2.0))
        self.a = nnx.Param(jnp.array(1.0))
        self.x = jnp.array(5.0)
        self.l = nnx.List([nnx.Param(jnp.array(3.0))])
        self.s = self.a  # shared


class Holder(nnx.Module):
    def __init__(self, a):
        self.a = a
        self.c = nnx.Param(jnp.array(7.0))


def test_graph_flatten_unpacks_as_graphdef_and_flat_state():
    m = Block()
    graphdef, flat_state = nnx.graph.flatten(m)
    assert isinstance(flat_state, nnx.graph.FlatState)
    assert [(p, type(v).__name__) for p, v in flat_state] == [
        (("a",), "Param"),
        (("b",), "BatchStat"),
        (("l", 0), "Param"),
        (("x",), "ArrayImpl"),
    ]
    assert flat_state[0][1] is m.a  # the graph's own Variables
    assert len(nnx.graph.flatten(m)) == 2
    assert nnx.graph.flatten(m)[0] == graphdef


def test_graph_flatten_without_paths_gives_the_stored_values():
    m = Block()
    graphdef, values = nnx.graph.flatten(m, with_paths=False)
    assert type(values) is list
    assert [float(v) for v in values] == [1.0, 2.0, 3.0, 5.0]
    rebuilt = nnx.graph.unflatten(graphdef, values)  # new Variables, same kinds
    assert type(rebuilt.b) is nnx.BatchStat and rebuilt.a is not m.a
    assert rebuilt.s is rebuilt.a and float(rebuilt.l[0][...]) == 3.0


@pytest.mark.parametrize("form", ["flat_state", "state", "pure_dict"])
def test_unflatten_takes_a_state_by_path(form):
    m = Block()
    graphdef, flat_state = nnx.graph.flatten(m)
    state = {
        "flat_state": flat_state,
        "state": nnx.State.from_flat_path(flat_state),
        "pure_dict": nnx.state(m).to_pure_dict(),
    }[form]
    m2 = nnx.graph.unflatten(graphdef, state)
    assert m2.s is m2.a
    assert float(m2.x) == 5.0 and float(m2.l[0][...]) == 3.0
    if form != "pure_dict":
        assert m2.a is m.a  # Variables are used as they are
    assert nnx.graph.unflatten(graphdef, flat_state, copy_variables=True).a is not m.a


def test_unflatten_names_the_missing_path():
    graphdef, _ = nnx.graph.flatten(Block())
    with pytest.raises(ValueError, match="no State provides a value for 'a'"):
        nnx.graph.unflatten(graphdef, nnx.State({}))


def test_split_context_shares_objects_across_splits():
    m = Block()
    n = Holder(m.a)
    with nnx.graph.split_context() as ctx:
        g1, s1 = ctx.split(m)
        g2, s2 = ctx.split(n)  # n.a was reached by the first split: a reference
        g3, p3, r3 = ctx.split(m, nnx.Param, ...)  # all of it: one reference
    assert [p for p, _ in s2.flat_state()] == [("c",)]
    assert g3.num_leaves == 0 and not p3 and not r3
    assert g1.num_leaves == 4
    with nnx.graph.merge_context() as ctx:
        a = ctx.merge(g1, s1)
        b = ctx.merge(g2, s2)
        c = ctx.merge(g3, p3, r3)
    assert c is a and b.a is a.a and a.s is a.a
    assert float(b.c[...]) == 7.0


def test_plain_splits_stay_independent():
    m = Block()
    g1, s1 = nnx.split(m)
    g2, s2 = nnx.split(m)
    assert g1 == g2 and len(s2.flat_state()) == 4
    assert nnx.merge(g1, s1) is not nnx.merge(g2, s2)


def test_split_context_flatten_without_paths_gives_values():
    m = Block()
    n = Holder(m.a)
    with nnx.split_context() as ctx:
        gd, flat = ctx.flatten(m)
        gd2, values = ctx.flatten(n, with_paths=False)
    assert isinstance(flat, nnx.graph.FlatState)
    assert type(values) is list and [float(v) for v in values] == [7.0]
    with nnx.merge_context() as ctx:
        a = ctx.unflatten(gd, flat)
        b = ctx.unflatten(gd2, values)
    assert b.a is a.a and float(b.c[...]) == 7.0


def test_path_in_matches_exact_paths():
    m = Block()
    f = nnx.filterlib.PathIn(("a",), ("l", 0))
    assert [p for p, _ in nnx.iter_graph(m) if f(p, None)] == [("a",), ("l", 0)]
    assert f == nnx.PathIn(("l", 0), ("a",)) and hash(f) == hash(nnx.PathIn(("l", 0), ("a",)))
    assert repr(f) == "PathIn(('a',), ('l', 0))"
    params = nnx.state(m, nnx.PathIn(("l", 0)))
    assert [p for p, _ in params.flat_state()] == [("l", 0)]
    preds = nnx.filterlib.filters_to_predicates((nnx.Param, ...))
    assert preds[0](("a",), m.a) and not preds[0](("b",), m.b) and preds[1](("b",), m.b)


def test_is_node_leaf_and_is_array_ref():
    m = Block()
    leaf = nnx.graph.is_node_leaf
    assert [leaf(x) for x in (m.a, jnp.ones(1), np.ones(1), jax.new_ref(jnp.ones(1)))] == [True] * 4
    assert [leaf(x) for x in (m, 1, (1,), "a", None)] == [False] * 5
    assert nnx.variablelib.is_array_ref(jax.new_ref(jnp.ones(1)))
    assert not nnx.variablelib.is_array_ref(jnp.ones(1))


def test_get_var_pspec():
    v = nnx.Param(jnp.ones((2, 3)), sharding_names=("a", None), sharding_rules=(("a", "data"),))
    assert nnx.spmd.get_var_pspec(v) == jax.P("data", None)
    assert nnx.spmd.get_var_pspec(nnx.Param(jnp.ones((2, 3)), sharding_names=("a", "b"))) == jax.P(
        "a", "b"
    )
    assert nnx.spmd.get_var_pspec(nnx.Param(jnp.ones((2, 3)))) == jax.P()


def test_backup_keys_restores_keys_not_counts():
    rngs = nnx.Rngs(0, dropout=1)
    before = jax.random.key_data(rngs.default.key[...])
    backups = nnx.rnglib.backup_keys(rngs)
    assert len(backups) == 2
    rngs()  # the count advances
    rngs.default.key[...] = jax.random.key(9)  # e.g. a transform split the key
    nnx.restore_rngs(backups)
    assert np.array_equal(jax.random.key_data(rngs.default.key[...]), before)
    assert int(rngs.default.count[...]) == 1


def test_backup_keys_in_tree_mode_refuses_shared_streams():
    rngs = nnx.Rngs(0)
    with pytest.raises(nnx.AliasingError):
        nnx.backup_keys([rngs, rngs], graph=False)
