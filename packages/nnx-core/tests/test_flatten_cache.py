"""FlattenCache and the pytree view see what the structure epoch cannot (issue #12)."""

from __future__ import annotations

from typing import Any, NamedTuple

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


def test_flatten_cache_sees_every_in_place_edit_of_a_state():
    a, b = Scaled(), Scaled()
    cache = nnx.FlattenCache()
    st = nnx.State({"m": a, "inner": {"x": nnx.Param(jnp.ones(2))}})
    flat = cache.flatten((st,))
    assert cache.flatten((st,)) is flat
    edits = [
        lambda: st.__setitem__("m", b),
        lambda: setattr(st, "extra", nnx.Param(jnp.ones(1))),
        lambda: st.inner.update(y=nnx.Param(jnp.zeros(3))),
        lambda: st.inner.pop("y"),
        lambda: st.setdefault("z", nnx.Param(jnp.ones(4))),
        lambda: st.__delitem__("z"),
        lambda: st.__ior__({"w": nnx.Param(jnp.ones(5))}),
        lambda: st.popitem(),
        lambda: st.inner.clear(),
    ]
    for edit in edits:
        before = cache.flatten((st,))
        edit()
        after = cache.flatten((st,))
        assert after is not before, edit
        assert len(after.leaves) != len(before.leaves) or after.nodes != before.nodes


class _AdamLike(NamedTuple):  # as optax's ScaleByAdamState
    count: Any  # a jax.Array in optax; an nnx.Variable here
    mu: nnx.State
    nu: nnx.State


class _OptLike(nnx.Pytree):
    def __init__(self, model):
        self.model = model
        params = nnx.state(model, nnx.Param)
        zeros = lambda: jax.tree.map(lambda p: nnx.Variable(jnp.zeros_like(p[...])), params)
        self.opt_state = (_AdamLike(nnx.Variable(jnp.zeros((), jnp.int32)), zeros(), zeros()),)


def test_an_optimizer_state_of_states_and_namedtuples_leaves_nothing_to_re_check():
    # A State records its own edits (it moves the structure epoch) and a tuple cannot
    # change: a cache hit over a model and its optimizer costs the identity checks only.
    m = nnx.Dict(w=nnx.Param(jnp.ones(2)), b=nnx.Param(jnp.zeros(2)))
    opt = _OptLike(m)
    cache = nnx.FlattenCache()
    flat = cache.flatten((m, opt))
    assert cache._watch is None
    assert cache.flatten((m, opt)) is flat
    opt.opt_state[0].mu["w"] = nnx.Variable(jnp.ones(2))  # an edit of a State is still seen
    assert cache.flatten((m, opt)) is not flat
