"""nnx.List / nnx.Dict built as such are graph nodes as Flax NNX's are (Modules there:
iter_modules and iter_module_children yield them); the lists and dicts that attributes
hold are tracked the same way but stay plain containers to look at, as in Flax."""

from __future__ import annotations

import copy
import pickle

import jax
import jax.numpy as jnp

import nnx


class Lin(nnx.Module):
    def __init__(self, seed: int):
        self.w = nnx.Param(jax.random.normal(jax.random.key(seed), (1, 1)))


class M(nnx.Module):
    def __init__(self):
        self.blocks = nnx.List([Lin(0)])
        self.named = nnx.Dict(a=Lin(1))
        self.plain = [Lin(2)]  # tracked; Flax would want nnx.data([...]) or nnx.List
        self.arrays = nnx.data([jnp.ones(1), 2])


def test_iter_modules_yields_nnx_list_and_dict_as_flax_modules():
    m = M()
    assert [p for p, _ in nnx.iter_modules(m)] == [
        ("blocks", 0),
        ("blocks",),
        ("named", "a"),
        ("named",),
        ("plain", 0),
        (),
    ]
    assert [p for p, _ in m.iter_modules()] == [p for p, _ in nnx.iter_modules(m)]
    assert [k for k, _ in nnx.iter_module_children(m)] == ["blocks", "named"]


def test_plain_containers_print_as_plain_ones_and_nnx_list_as_flax_does():
    m = M()
    text = repr(m)
    assert "blocks=List([" in text and "named=Dict({" in text
    assert "plain=[" in text and "arrays=[" in text and "List([\n    Array" not in text
    assert repr(nnx.List([1, 2])) == "List([\n  1,\n  2\n])"
    assert repr(m.arrays[1:]) == "[2]"  # a slice is a plain list
    assert isinstance(m.plain, nnx.List) and isinstance(m.plain, list)  # still tracked


def test_the_kind_of_container_survives_split_merge_pickle_copy_and_tree_map():
    m = M()
    kinds = lambda m: (type(m.blocks), type(m.named), type(m.plain), type(m.arrays))  # noqa: E731
    before = kinds(m)
    assert before[0] is nnx.List and before[1] is nnx.Dict and before[2] is not nnx.List
    graphdef, state = nnx.split(m)
    assert kinds(nnx.merge(graphdef, state)) == before
    assert kinds(pickle.loads(pickle.dumps(m))) == before
    assert kinds(copy.deepcopy(m)) == before
    assert kinds(jax.tree.map(lambda x: x, m)) == before
    assert kinds(jax.jit(lambda m: m)(m)) == before


def test_a_tracked_list_still_moves_the_structure_epoch():
    m = M()
    cache = nnx.FlattenCache()
    flat = cache.flatten((m,))
    m.plain.append(Lin(3))
    again = cache.flatten((m,))
    assert again is not flat and len(again.leaves) == len(flat.leaves) + 1


class Drop(nnx.Module):
    def __init__(self, rate: float):
        self.rate = rate
        self.deterministic = False


class Stack(nnx.Module):
    def __init__(self, *layers):
        self.layers = nnx.List(layers)


def test_set_attributes_and_eval_skip_the_containers():
    model = Stack(Drop(0.5), Drop(0.1))
    model.set_attributes(lambda m: getattr(m, "rate", 0) > 0.2, rate=0.3)
    model.eval()
    assert [d.rate for d in model.layers] == [0.3, 0.1]
    assert all(d.deterministic for d in model.layers)
    # a list method is not an attribute to set: nnx.List is yielded by iter_modules only
    try:
        model.set_attributes(sort=1)
    except AttributeError as e:
        assert "no module in Stack has ['sort']" in str(e)
    else:  # pragma: no cover
        raise AssertionError("set_attributes(sort=...) found a module")
    model.layers.sort(key=lambda d: d.rate)  # still the list's method
    assert [d.rate for d in model.layers] == [0.1, 0.3]
