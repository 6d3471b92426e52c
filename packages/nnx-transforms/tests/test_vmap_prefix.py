"""nnx.vmap with in_axes built by nnx.prefix (an axis per Variable, at its path), as Flax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import add_bias

import nnx


class Affine(nnx.Module):
    def __init__(self, w, b):
        self.w = nnx.Param(w)
        self.b = nnx.Param(b)
        self.calls = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x):
        self.calls[...] = self.calls[...] + 1.0
        return add_bias(x @ self.w[...], self.b)


def test_flax_docs_example_dict_of_variables():
    d = {"a": nnx.Param(jnp.array(2)), "b": nnx.BatchStat(jnp.arange(5))}
    prefix = nnx.prefix(d, lambda path, x: 0 if "b" in path else None)

    @nnx.vmap(in_axes=(prefix,))
    def f(d):
        return d["a"][...] * d["b"][...]

    np.testing.assert_array_equal(f(d), [0, 2, 4, 6, 8])
    by_filter = nnx.prefix(d, {nnx.Param: None, nnx.BatchStat: 0})
    np.testing.assert_array_equal(nnx.vmap(f.fun, in_axes=(by_filter,))(d), [0, 2, 4, 6, 8])


def test_module_prefix_maps_each_variable_by_its_path(mode):
    w = jnp.arange(3 * 2 * 4, dtype=jnp.float32).reshape(3, 2, 4) / 10
    b = jnp.array([1.0, -1.0, 0.5, 2.0])
    model = Affine(w, b)
    axes = nnx.prefix(model, {nnx.PathContains("w"): 0, ...: None})

    @nnx.vmap(in_axes=(axes, 0), out_axes=0)
    def forward(m, x):
        return m(x)

    x = jnp.arange(3 * 5 * 2, dtype=jnp.float32).reshape(3, 5, 2)
    y = forward(model, x)
    ref = np.stack([np.asarray(x[i]) @ np.asarray(w[i]) + np.asarray(b) for i in range(3)])
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    # the shared (None) BatchStat was written with one value: it comes out unstacked
    assert model.calls.shape == () and float(model.calls[...]) == 1.0
    assert model.w.shape == (3, 2, 4) and model.b.shape == (4,)

    state_axes = nnx.StateAxes({nnx.PathContains("w"): 0, ...: None})
    y2 = nnx.vmap(lambda m, x: m(x), in_axes=(state_axes, 0))(model, x)
    np.testing.assert_allclose(y2, y, rtol=1e-6)


def test_subtree_axis_covers_everything_below():
    a = nnx.Dict(w=nnx.Param(jnp.ones((4, 2, 3))), b=nnx.Param(jnp.zeros((4, 3))))
    b = nnx.Dict(w=nnx.Param(jnp.ones((2, 3)) * 2), b=nnx.Param(jnp.ones((3,))))

    def f(pair, x):
        a, b = pair["a"], pair["b"]
        return add_bias(x @ a["w"][...], a["b"]) + add_bias(x @ b["w"][...], b["b"])

    y = nnx.vmap(f, in_axes=({"a": 0, "b": None}, None))({"a": a, "b": b}, jnp.ones((1, 2)))
    np.testing.assert_allclose(y, np.full((4, 1, 3), 2.0 + 5.0))


def test_new_prefix_each_call_is_not_served_from_a_stale_cache():
    d = {"a": nnx.Param(jnp.arange(5.0)), "b": nnx.Param(jnp.arange(5.0))}

    def f(d):
        return d["a"][...] * d["b"][...]

    both = nnx.vmap(f, in_axes=(nnx.prefix(d, {...: 0}),))(d)
    np.testing.assert_allclose(both, np.arange(5.0) ** 2)
    one = nnx.vmap(f, in_axes=(nnx.prefix(d, {"a": None, ...: 0}),))(d)
    np.testing.assert_allclose(one, np.arange(5.0)[:, None] * np.arange(5.0)[None, :])


def test_a_prefix_that_does_not_fit_names_the_path():
    d = {"a": nnx.Param(jnp.ones(3)), "b": nnx.Param(jnp.ones(3))}

    def f(d):
        return d["a"][...] + d["b"][...]

    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"prefix does not fit the argument: for the Param at 'd/b' it has a dict "
        r"with no entry 'b' at 'd'.*nnx.prefix\(arg",
    ):
        nnx.vmap(f, in_axes=({"a": 0},))(d)


def test_the_model_itself_as_a_prefix_is_an_error_naming_the_path():
    model = Affine(jnp.ones((2, 2)), jnp.ones((2,)))
    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"prefix does not fit the argument: for the Param at 'm/b' it has a \w+, "
        r"not an axis",
    ):
        nnx.vmap(lambda m: m(jnp.ones((1, 2))), in_axes=(model,))(model)


def test_prefix_of_a_plain_argument_is_left_to_jax_and_pmap_cache_key_is_hashable():
    tree = {"x": jnp.arange(3.0), "y": jnp.ones(())}
    out = nnx.vmap(lambda t: t["x"] + t["y"], in_axes=({"x": 0, "y": None},))(tree)
    np.testing.assert_allclose(out, np.arange(3.0) + 1.0)
    n = jax.local_device_count()
    tree = {"x": jnp.arange(float(n)), "y": jnp.ones(())}
    out = nnx.pmap(lambda t: t["x"] * 2 + t["y"], in_axes=({"x": 0, "y": None},))(tree)
    np.testing.assert_allclose(out, np.arange(float(n)) * 2 + 1.0)
