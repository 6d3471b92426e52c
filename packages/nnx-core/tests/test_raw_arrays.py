"""Raw ``jax.Array`` / ``numpy.ndarray`` attributes are state leaves, as Variables are.

Seed 003: "Attributes of type jax.Array and numpy.ndarray are also treated as
dynamic state". The program of issue 20 keeps its parameters as plain arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class RawLinear(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.w = jax.random.normal(rngs.params(), (din, dout))
        self.b = jnp.zeros((dout,))

    def __call__(self, x):
        return x @ self.w + self.b[None]


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.count = jnp.array(0)
        self.linear1 = RawLinear(1, 4, rngs=rngs)
        self.linear2 = RawLinear(4, 1, rngs=rngs)

    def __call__(self, x):
        self.count += 1
        return self.linear2(jax.nn.relu(self.linear1(x)))


def is_param(path, value):
    return path[-1] in ("w", "b")


def paths(state):
    return [p for p, _ in state.flat_state()]


def test_state_holds_raw_arrays_with_their_paths():
    m = MLP(nnx.Rngs(0))
    state = nnx.state(m)
    assert paths(state) == [
        ("count",),
        ("linear1", "b"),
        ("linear1", "w"),
        ("linear2", "b"),
        ("linear2", "w"),
    ]
    assert state["linear1"]["w"] is m.linear1.w  # the array itself, not a copy
    assert isinstance(state["count"], jax.Array)


def test_a_predicate_sees_the_path_and_the_raw_array():
    m = MLP(nnx.Rngs(0))
    seen = []

    def spy(path, value):
        seen.append((path, type(value)))
        return is_param(path, value)

    params = nnx.state(m, spy)
    assert paths(params) == [("linear1", "b"), ("linear1", "w"), ("linear2", "b"), ("linear2", "w")]
    assert (("linear1", "w"), type(m.linear1.w)) in seen
    assert all(issubclass(t, jax.Array) for _, t in seen)


def test_type_filters_do_not_match_raw_arrays_and_ellipsis_does():
    m = MLP(nnx.Rngs(0))
    m.extra = nnx.Param(jnp.ones(2))
    assert paths(nnx.state(m, nnx.Param)) == [("extra",)]
    assert paths(nnx.state(m, nnx.Variable)) == [("extra",)]
    g, params, rest = nnx.split(m, nnx.Param, ...)
    assert paths(params) == [("extra",)]
    assert ("linear1", "w") in paths(rest) and ("count",) in paths(rest)
    with pytest.raises(nnx.FilterError, match="No filter matched the ArrayImpl at path 'count'"):
        nnx.split(m, nnx.Param)


def test_split_with_a_predicate_and_merge_restore_raw_arrays():
    m = MLP(nnx.Rngs(0))
    g, params, rest = nnx.split(m, is_param, ...)
    assert paths(rest) == [("count",)]
    m2 = nnx.merge(g, params, rest)
    assert isinstance(m2.linear1.w, jax.Array) and m2.linear1.w is m.linear1.w
    x = jnp.linspace(-1, 1, 5).reshape(5, 1)
    np.testing.assert_allclose(m2(x), m(x), rtol=1e-6)


def test_filtered_state_and_update_round_trip_writes_the_attributes_back():
    m = MLP(nnx.Rngs(0))
    w1 = np.array(m.linear1.w)
    params = nnx.state(m, is_param)
    new = jax.tree.map(lambda p: p - 0.5, params)
    nnx.update(m, new)
    np.testing.assert_allclose(m.linear1.w, w1 - 0.5)
    np.testing.assert_allclose(m.linear2.b, [-0.5])
    assert int(m.count) == 0  # not in the State: untouched


def test_a_functional_training_step_over_raw_arrays():
    m = MLP(nnx.Rngs(0))
    x = jnp.linspace(-1, 1, 8).reshape(8, 1)
    y = x**2
    graphdef, params, rest = nnx.split(m, is_param, ...)

    @jax.jit
    def step(params, rest):
        def loss(params):
            model = nnx.merge(graphdef, params, rest)
            out = model(x)
            return jnp.mean((out - y) ** 2), nnx.state(model, nnx.Not(is_param))

        (value, new_rest), grads = jax.value_and_grad(loss, has_aux=True)(params)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return value, params, new_rest

    def reference_loss(w1, b1, w2, b2):
        return jnp.mean((jax.nn.relu(x @ w1 + b1[None]) @ w2 + b2[None] - y) ** 2)

    originals = (m.linear1.w, m.linear1.b, m.linear2.w, m.linear2.b)
    ref_loss, ref_grads = jax.value_and_grad(reference_loss, argnums=(0, 1, 2, 3))(*originals)
    value, params, rest = step(params, rest)
    nnx.update(m, params, rest)
    assert float(value) == pytest.approx(float(ref_loss), rel=1e-5)
    for now, before, g in zip(
        (m.linear1.w, m.linear1.b, m.linear2.w, m.linear2.b), originals, ref_grads
    ):
        np.testing.assert_allclose(now, before - 0.1 * g, rtol=1e-5, atol=1e-6)
    assert int(m.count) == 1  # the raw counter's increment came back through the State


def test_numpy_arrays_and_arrays_in_lists_and_dicts_are_state_too():
    class M(nnx.Module):
        def __init__(self):
            self.table = np.arange(3.0)
            self.items = [jnp.zeros(2), np.ones(1)]
            self.named = {"a": jnp.ones(2)}

    m = M()
    state = nnx.state(m)
    assert paths(state) == [("items", 0), ("items", 1), ("named", "a"), ("table",)]
    assert isinstance(state["table"], np.ndarray)
    pure = state.to_pure_dict()
    assert set(pure) == {"items", "named", "table"} and 0 in pure["items"]
    nnx.update(m, jax.tree.map(lambda x: x + 10, state))
    np.testing.assert_array_equal(m.table, [10.0, 11.0, 12.0])
    np.testing.assert_array_equal(m.items[1], [11.0])
    np.testing.assert_array_equal(m.named["a"], [11.0, 11.0])
    m2 = nnx.merge(*nnx.split(m))
    np.testing.assert_array_equal(m2.items[0], [10.0, 10.0])


def test_state_repr_and_flat_views_show_raw_arrays():
    m = MLP(nnx.Rngs(0))
    state = nnx.state(m)
    text = repr(state)
    assert "'count': Array(0, dtype=int32" in text  # raw arrays in full, as Variables
    assert "'w': Array([[" in text
    flat = state.flat_state()
    assert flat[0] == (("count",), m.count)


def test_replace_by_pure_dict_and_update_restore_raw_arrays():
    m = MLP(nnx.Rngs(0))
    saved = jax.tree.map(np.asarray, nnx.state(m).to_pure_dict())
    fresh = MLP(nnx.Rngs(1))
    state = nnx.state(fresh)
    state.replace_by_pure_dict(saved)
    nnx.update(fresh, state)
    np.testing.assert_array_equal(fresh.linear2.w, m.linear2.w)
