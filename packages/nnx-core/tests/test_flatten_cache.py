"""FlattenCache and the pytree view see what the structure epoch cannot (issue #12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import nnx


class Scaled(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(2))
        self.cfg = {"scale": 2.0}  # static settings: no arrays inside

    def __call__(self):
        return self.w[...] * self.cfg["scale"]


def test_a_static_dict_edited_in_place_changes_the_graphdef():
    m = Scaled()
    before = nnx.graphdef(m)
    m.cfg["scale"] = 3.0
    after = nnx.graphdef(m)
    assert before != after


def test_flatten_cache_re_flattens_after_an_in_place_static_edit():
    m = Scaled()
    cache = nnx.FlattenCache()
    flat = cache.flatten((m,))
    assert cache.flatten((m,)) is flat
    m.cfg["scale"] = 3.0
    flat2 = cache.flatten((m,))
    assert flat2 is not flat and flat2.graphdef != flat.graphdef


def test_plain_jax_jit_over_a_module_sees_an_in_place_static_edit():
    m = Scaled()
    f = jax.jit(lambda m: m())
    np.testing.assert_allclose(f(m), [2.0, 2.0])
    m.cfg["scale"] = 3.0
    np.testing.assert_allclose(f(m), [3.0, 3.0])


def test_flatten_cache_sees_plain_containers():
    a, b = Scaled(), Scaled()
    cache = nnx.FlattenCache()
    c = {"m": a, "x": jnp.ones(2), "n": 1}
    flat = cache.flatten((c,))
    assert cache.flatten((c,)) is flat
    c["m"] = b
    flat = cache.flatten((c,))
    assert flat.nodes[0] is b
    new_x = jnp.zeros(2)
    c["x"] = new_x
    assert cache.flatten((c,)) is flat  # no re-flatten for a replaced array
    assert any(leaf is new_x for leaf in flat.leaves)
    c["n"] = 2
    assert cache.flatten((c,)).graphdef != flat.graphdef
    lst = [a]
    flat = cache.flatten((lst,))
    lst.append(b)
    assert len(cache.flatten((lst,)).nodes) > len(flat.nodes)
