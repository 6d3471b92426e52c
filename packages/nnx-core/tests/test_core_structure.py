"""The structure of nnx-core that other packages rely on: one key order for leaves,
files small enough to read, Variables' operators and reprs after the module split."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import nnx

CORE = Path(nnx.core.__file__).parent


def test_key_order_puts_indices_first_in_numeric_order_then_names_by_string():
    keys = ["b", 10, "a", 2, "10"]
    assert sorted(keys, key=nnx.key_order) == [2, 10, "10", "a", "b"]
    # an int key and its string form are different keys that both sort
    assert nnx.key_order(3) < nnx.key_order("3")


def test_key_order_is_the_leaf_order_of_split_and_state():
    class M(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([nnx.Param(jnp.full(1, float(i))) for i in range(12)])
            self.b = nnx.Param(jnp.zeros(1))
            self.a = nnx.BatchStat(jnp.zeros(1))

    m = M()
    paths = [p for p, _ in nnx.state(m).flat_state()]
    expected = sorted(paths, key=lambda p: tuple(nnx.key_order(k) for k in p))
    assert paths == expected
    assert [p for p in paths if p[0] == "layers"][:3] == [
        ("layers", 0),
        ("layers", 1),
        ("layers", 2),
    ]
    _, state = nnx.split(m)
    assert list(state.flat_state().paths) == paths
    # jax.tree.leaves of the State follows the same order
    leaves = jax.tree.leaves(state)
    assert [float(x[0]) for x in leaves[2:14]] == [float(i) for i in range(12)]


def test_no_core_source_file_is_over_800_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in CORE.glob("*.py")}
    big = {name: n for name, n in sizes.items() if n > 800}
    assert not big, f"split these by concept: {big}"


def test_display_reads_no_private_state_of_core_objects():
    text = (CORE / "_display.py").read_text()
    for needle in ("._aux", "._raw", '__name__ == "Cell"', "_graph"):
        assert needle not in text, needle


def test_variable_operators_act_on_values_and_hash_is_identity():
    a, b = nnx.Param(jnp.array(2.0)), nnx.Param(jnp.array(3.0))
    assert float(a + b) == 5.0 and float(b - a) == 1.0 and float(2.0 * a) == 4.0
    assert float(-a) == -2.0 and bool(a < b)
    assert bool(a == nnx.Param(jnp.array(2.0))) and not bool(a != jnp.array(2.0))
    assert hash(a) == id(a) and len({a, b, a}) == 2
    before = a
    a += b  # in place: the same box holds the new value
    assert a is before and float(a[...]) == 5.0


def test_reprs_of_module_state_graphdef_and_hijax_variable():
    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.zeros((3, 4)))
            self.s = nnx.BatchStat(jnp.array([1.0, 2.0]))

    m = M()
    # Flax NNX's layout: attributes in assignment order, kinds in the order met
    # with a total, arrays of more than one element by shape and dtype
    assert repr(m) == (
        "M( # Param: 12 (48 B), BatchStat: 2 (8 B), Total: 14 (56 B)\n"
        "  w=Param( # 12 (48 B)\n"
        "    value=Array(shape=(3, 4), dtype=dtype('float32'))\n"
        "  ),\n"
        "  s=BatchStat( # 2 (8 B)\n"
        "    value=Array(shape=(2,), dtype=dtype('float32'))\n"
        "  )\n)"
    )
    graphdef, state = nnx.split(m)
    assert repr(graphdef) == (
        "GraphDef(NodeDef(M,\n  s=VariableDef(BatchStat),\n  w=VariableDef(Param)\n), num_leaves=2)"
    )
    assert repr(state).startswith(
        "State({\n  's': BatchStat( # 2 (8 B)\n    value=Array([1., 2.], dtype=float32)\n  ),"
    )
    h = nnx.Param(jnp.zeros((2,)), hijax=True)
    assert repr(h) == ("Param( # 2 (8 B)\n  value=Array([0., 0.], dtype=float32),\n  hijax=True\n)")


def test_a_pytree_is_a_jax_pytree_of_its_graph_leaves():
    class M(nnx.Pytree):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2))
            self.tied = self.w

    m = M()
    leaves, treedef = jax.tree_util.tree_flatten(m, is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert leaves == [m.w]  # a shared Variable once
    keyed, _ = jax.tree_util.tree_flatten_with_path(m)
    assert [jax.tree_util.keystr(kp) for kp, _ in keyed] == [".tied.value"]  # first path
    m2 = jax.tree_util.tree_unflatten(treedef, [nnx.Param(jnp.zeros(2))])
    assert m2.w is m2.tied and float(m2.w[...].sum()) == 0.0


@pytest.mark.parametrize("how", ["state", "flat"])
def test_filters_group_alike_in_split_state_filter_and_flat_state(how):
    class M(nnx.Module):
        def __init__(self):
            self.p = nnx.Param(jnp.ones(1))
            self.s = nnx.BatchStat(jnp.ones(1))
            self.c = nnx.Cache(jnp.ones(1))

    m = M()
    _, params, stats, rest = nnx.split(m, nnx.Param, nnx.BatchStat, ...)
    state = nnx.state(m)
    if how == "state":
        got = state.filter(nnx.Param, nnx.BatchStat, ...)
        assert [g.flat_state().paths for g in got] == [
            params.flat_state().paths,
            stats.flat_state().paths,
            rest.flat_state().paths,
        ]
        with pytest.raises(nnx.FilterError, match="No filter matched Cache at path 'c'"):
            state.split(nnx.Param, nnx.BatchStat)
    else:
        flat = state.flat_state()
        got = flat.split(nnx.Param, nnx.BatchStat, ...)
        assert [g.paths for g in got] == [(("p",),), (("s",),), (("c",),)]
    with pytest.raises(nnx.FilterError, match="No filter matched the Cache at path 'c'"):
        nnx.split(m, nnx.Param, nnx.BatchStat)
