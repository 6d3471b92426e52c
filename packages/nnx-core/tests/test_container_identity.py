"""nnx.List and nnx.Dict keep their identity in the graph encoding (#14).

In Flax NNX 0.12 ``nnx.List`` and ``nnx.Dict`` are graph nodes: one container
reachable at two paths is one object inside and after ``merge``, ``clone``,
``vars_as`` and the transforms. ``find_duplicates`` reports the container (not
the Variables in it, reached through its first path only), and
``vars_as(allow_duplicates=False)`` checks Variables only, so a shared container
is not a duplicate error there. Plain lists and dicts stay values.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Shared(nnx.Module):
    def __init__(self):
        d = nnx.Dict(w=nnx.Param(jnp.ones(2)))
        self.a = d
        self.b = d
        lst = nnx.List([nnx.BatchStat(jnp.zeros(1))])
        self.c = lst
        self.e = lst


def test_split_merge_keeps_a_shared_list_and_dict_one_object():
    m = Shared()
    graphdef, state = nnx.split(m)
    # the Variables inside appear once, at the container's first path
    assert [p for p, _ in state.flat_state()] == [("a", "w"), ("c", 0)]
    m2 = nnx.merge(graphdef, state)
    assert m2.a is m2.b and m2.c is m2.e
    assert type(m2.a) is nnx.Dict and type(m2.c) is nnx.List
    assert m2.a["w"] is m.a["w"]  # merge reuses the State's Variables
    m2.b["x"] = nnx.Param(jnp.zeros(1))  # one object: an edit through b is seen at a
    assert "x" in m2.a


def test_graphdef_refers_to_the_second_path_and_equal_structures_compare_equal():
    g1, g2 = nnx.graphdef(Shared()), nnx.graphdef(Shared())
    assert g1 == g2 and hash(g1) == hash(g2)
    assert "NodeRef" in repr(g1).split("b=")[1].split("\n")[0]

    class Unshared(nnx.Module):
        def __init__(self):
            self.a = nnx.Dict(w=nnx.Param(jnp.ones(2)))
            self.b = nnx.Dict(w=nnx.Param(jnp.ones(2)))
            self.c = nnx.List([nnx.BatchStat(jnp.zeros(1))])
            self.e = nnx.List([nnx.BatchStat(jnp.zeros(1))])

    u = nnx.graphdef(Unshared())
    assert u != g1 and u.num_leaves == 4 and g1.num_leaves == 2


def test_clone_keeps_the_sharing_with_new_objects():
    m = Shared()
    c = nnx.clone(m)
    assert c.a is c.b and c.c is c.e
    assert c.a is not m.a and c.a["w"] is not m.a["w"]
    c.b["w"][...] = jnp.full(2, 5.0)
    np.testing.assert_array_equal(c.a["w"][...], [5.0, 5.0])
    np.testing.assert_array_equal(m.a["w"][...], [1.0, 1.0])


def test_update_and_state_paths_go_through_the_first_path():
    m = Shared()
    state = nnx.state(m)
    assert sorted(p for p, _ in state.flat_state()) == [("a", "w"), ("c", 0)]
    nnx.update(m, {"a": {"w": jnp.full(2, 3.0)}, "c": {0: jnp.full(1, 7.0)}})
    np.testing.assert_array_equal(m.b["w"][...], [3.0, 3.0])
    np.testing.assert_array_equal(m.e[0][...], [7.0])
    with pytest.raises(nnx.StructureError, match="has no Variable or array at 'b/w'"):
        nnx.update(m, {"b": {"w": jnp.zeros(2)}})  # the second path is not a State path


def test_find_duplicates_reports_the_container_not_its_variables():
    m = Shared()
    assert nnx.find_duplicates(m) == [[("a",), ("b",)], [("c",), ("e",)]]
    assert nnx.find_duplicates(m, only=nnx.Variable) == []
    m.tied = m.a["w"]  # a Variable shared on its own is reported at its paths
    assert nnx.find_duplicates(m, only=nnx.Variable) == [[("a", "w"), ("tied",)]]


def test_vars_as_without_duplicates_accepts_a_shared_container_and_keeps_it_shared():
    m = Shared()
    out = nnx.vars_as(m, ref=True, allow_duplicates=False)
    assert out.a is out.b and out.c is out.e
    assert out.a["w"].ref and out.c[0].ref and not m.a["w"].ref
    m.tied = m.a["w"]
    with pytest.raises(nnx.AliasingError, match=r"Found duplicate at paths:\n  ---\n  a/w\n  tied"):
        nnx.vars_as(m, ref=True, allow_duplicates=False)


def test_plain_lists_and_dicts_stay_values():
    inner = {"w": nnx.Param(jnp.ones(1))}
    tree = [inner, inner]  # plain containers: no identity, the Variable is shared
    out = nnx.clone(tree)
    assert out[0] is not out[1] and out[0]["w"] is out[1]["w"]
    assert nnx.find_duplicates(tree) == [[(0, "w"), (1, "w")]]


def test_a_cycle_through_a_list_round_trips():
    class Child(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(1))

    class Parent(nnx.Module):
        def __init__(self):
            self.kids = nnx.List([Child()])
            self.kids[0].siblings = self.kids  # the List reaches itself through a child

    p = Parent()
    for out in (nnx.clone(p), nnx.merge(*nnx.split(p))):
        assert out.kids[0].siblings is out.kids
        assert out.kids is not p.kids


def test_flatten_cache_sees_edits_of_a_shared_list_and_dict():
    m = Shared()
    cache = nnx.FlattenCache()
    flat = cache.flatten((m,))
    assert cache.flatten((m,)) is flat
    m.b["v"] = nnx.Param(jnp.zeros(3))  # setitem through the second path
    flat2 = cache.flatten((m,))
    assert flat2 is not flat and flat2.graphdef.num_leaves == 3
    assert cache.flatten((m,)) is flat2
    m.e.append(nnx.BatchStat(jnp.ones(1)))  # append through the second path
    flat3 = cache.flatten((m,))
    assert flat3 is not flat2 and flat3.graphdef.num_leaves == 4
    del m.b["v"]
    flat4 = cache.flatten((m,))
    assert flat4 is not flat3 and flat4.graphdef.num_leaves == 3
    assert flat4.graphdef != flat3.graphdef
    (m2,) = nnx.unflatten(flat4.graphdef, flat4.leaves)
    assert m2.a is m2.b and len(m2.c) == 2 and "v" not in m2.a


def test_to_tree_and_the_jax_pytree_view_keep_the_sharing():
    import jax

    m = Shared()
    back = nnx.from_tree(nnx.to_tree(m))
    assert back.a is back.b and back.c is back.e
    mapped = jax.tree.map(lambda x: x + 1, m)  # a Pytree's JAX children: its graph's leaves
    assert mapped.a is mapped.b
    np.testing.assert_array_equal(mapped.b["w"][...], [2.0, 2.0])
