"""Pytree details from Flax NNX's Pytree guide (#14): ``nnx.data()`` / ``nnx.static()``
as dataclass field specifiers, and scalar data leaves in key order."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def test_data_and_static_are_dataclass_field_specifiers():
    @nnx.dataclass
    class Foo(nnx.Pytree):
        i: int = nnx.data()
        x: jax.Array
        s: str = nnx.static(default="hi", kw_only=True)

    foo = Foo(3, jnp.array(42.0))
    assert foo.s == "hi" and foo.i == 3
    leaves = jax.tree_util.tree_flatten_with_path(foo)[0]
    assert [(jax.tree_util.keystr(p), v) for p, v in leaves] == [(".i", 3), (".x", 42.0)]
    assert Foo(1, jnp.ones(1), s="other").s == "other"


def test_field_specifiers_work_with_plain_dataclasses_too():
    @dataclasses.dataclass
    class Bar(nnx.Pytree):
        a: int = dataclasses.field(metadata={"static": False})  # data
        b: str = dataclasses.field(metadata={"static": True})  # static
        n: int = nnx.data(default=5)

    bar = Bar(a=10, b="hello")
    assert jax.tree.leaves(bar) == [10, 5]
    out = jax.jit(lambda t: t.a * 2 + t.n)(bar)
    assert int(out) == 25


def test_field_specifier_errors():
    with pytest.raises(TypeError, match="either a value or dataclasses.field keywords"):
        nnx.data(1, default=2)
    with pytest.raises(TypeError, match="either a value or dataclasses.field keywords"):
        nnx.static(1, init=False)
    with pytest.raises(ValueError, match="the 'static' key is set by the specifier"):
        nnx.data(metadata={"static": True})


def test_scalar_data_leaves_stay_in_key_order_in_the_jax_view():
    class F(nnx.Pytree):
        def __init__(self):
            self.a = nnx.data(7)
            self.b = jnp.array(42)
            self.c = nnx.data(1)

    f = F()
    keyed = jax.tree_util.tree_flatten_with_path(f)[0]
    assert [(jax.tree_util.keystr(p), int(v)) for p, v in keyed] == [
        (".a", 7),
        (".b", 42),
        (".c", 1),
    ]
    again = jax.tree.map(lambda x: x, f)  # before: a and b came back swapped
    assert again.a == 7 and again.c == 1
    np.testing.assert_array_equal(again.b, 42)
    assert int(jax.jit(lambda f: f.b + f.a * 100)(f)) == 742


@pytest.mark.parametrize("mark", [nnx.data, nnx.static], ids=["data", "static"])
def test_a_value_and_field_keywords_together_are_an_error_naming_the_marker(mark):
    name = mark.__name__
    with pytest.raises(TypeError, match=rf"nnx\.{name}\(\) takes either a value or dataclasses"):
        mark(1, default=2)
    field = mark(default=3)  # keywords alone: a dataclass field specifier
    assert field.default == 3 and field.metadata["static"] is (name == "static")
