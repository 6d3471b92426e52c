"""Flax NNX 0.12 parity of Pytree: nnx.Data / nnx.Static annotations, nnx.dataclass,
check_pytree, has_data, PytreeStaticError as a ValueError, PathContains(exact=...),
and the type names for annotations (nnx.A, nnx.M)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import pytest

import nnx


def test_data_annotation_makes_a_scalar_data_for_every_instance():
    @dataclasses.dataclass
    class Foo(nnx.Pytree):
        a: nnx.Data[int]  # a string annotation here (from __future__ import annotations)
        b: str

    foo = Foo(a=42, b="hello")
    assert jax.tree.leaves(foo) == [42]
    out = jax.jit(lambda f: f.a * 2)(foo)  # traced, not baked in
    assert int(out) == 84


def test_annotation_objects_work_too():
    ns: dict[str, Any] = {"nnx": nnx}
    exec(  # annotations evaluated (no __future__ import in this snippet)
        "class Bar(nnx.Pytree):\n"
        "    x: nnx.Data[float]\n"
        "    cfg: nnx.Static[dict]\n"
        "    def __init__(self):\n"
        "        self.x = 1.5\n"
        "        self.cfg = {'k': 1}\n",
        ns,
    )
    bar = ns["Bar"]()
    assert jax.tree.leaves(bar) == [1.5]
    treedef = jax.tree.structure(bar)
    assert jax.tree.unflatten(treedef, [2.5]).cfg == {"k": 1}


def test_static_annotation_rejects_arrays_with_a_value_error():
    class M(nnx.Module):
        table: nnx.Static[list]

        def __init__(self, table):
            self.table = table

    M([1, 2])
    with pytest.raises(
        ValueError, match=r"M\.table is declared static \(nnx\.static or nnx\.Static"
    ):
        M([jnp.ones(2)])
    with pytest.raises(nnx.PytreeStaticError):
        M([jnp.ones(2)])
    assert issubclass(nnx.PytreeStaticError, (ValueError, TypeError, nnx.NnxError))


def test_subclasses_inherit_annotations():
    class Base(nnx.Pytree):
        n: nnx.Data[int]

    class Child(Base):
        def __init__(self):
            self.n = 3
            self.name = "c"

    assert jax.tree.leaves(Child()) == [3]


def test_nnx_dataclass_fields_follow_the_attribute_rules_unless_a_field_says():
    # Flax's Pytree guide: an int field is static unless `nnx.data()` marks it, an array
    # field is data, `nnx.static(default=..., kw_only=True)` is a field specifier.
    @nnx.dataclass
    class Foo(nnx.Pytree):
        i: int = nnx.data()
        x: jax.Array
        a: int
        s: str = nnx.static(default="hi", kw_only=True)

    @nnx.dataclass
    class Bar(nnx.Pytree):
        ls: list[Foo] = nnx.data()
        shapes: list[int]

    bar = Bar(ls=[Foo(i, jnp.array(42 * i), i + 7) for i in range(2)], shapes=[8, 16, 32])
    leaves = jax.tree.leaves(bar)
    assert [int(x) for x in leaves] == [0, 0, 1, 42]  # i and x of each Foo, in key order
    assert bar.ls[1].s == "hi" and bar.ls[1].a == 8
    g, state = nnx.split(bar)
    back = nnx.merge(g, state)
    assert back.shapes == [8, 16, 32] and back.ls[1].a == 8
    y = jax.jit(lambda b: b.ls[1].x * b.ls[1].i + b.ls[1].a)(bar)  # a is baked in
    assert int(y) == 42 + 8
    assert "Foo" in repr(bar.ls[0])  # the Pytree repr is kept


def test_markers_inside_a_container_are_refused_when_assigned():
    class Foo(nnx.Pytree):
        def __init__(self):
            self.a = [nnx.data(1), nnx.static(2)]

    with pytest.raises(nnx.PytreeStaticError, match=r"marker inside Foo\.a: markers only work"):
        Foo()
    with pytest.raises(ValueError, match="marker inside"):  # a ValueError, as Flax's
        nnx.Pytree().__setattr__("b", {"k": (nnx.static(1),)})


def test_a_captured_pytree_written_under_a_jax_transform_is_an_error():
    # Flax's "trace-level awareness": foo is created outside jax.vmap and written inside.
    class Foo(nnx.Pytree):
        def __init__(self):
            self.count = nnx.data(0)

    foo = Foo()

    @jax.vmap
    def increment(n):
        foo.count += 1
        return n

    with pytest.raises(nnx.TraceContextError, match=r"Cannot set Foo\.count from a different"):
        increment(jnp.arange(5))
    assert foo.count == 0  # nothing was written
    with pytest.raises(nnx.TraceContextError, match="Pass it as an argument"):
        jax.jit(lambda: delattr(foo, "count"))()
    foo.count += 1  # outside every transform: fine
    assert foo.count == 1

    @jax.jit
    def inside(f):  # passed as an argument: a new object, made in this trace
        f.count = f.count + 1
        fresh = Foo()
        fresh.count = 5
        return f

    assert int(inside(foo).count) == 2


def test_nnx_dataclass_with_options_and_errors():
    @nnx.dataclass(kw_only=True)
    class K(nnx.Pytree):
        w: jax.Array
        tag: nnx.Static[str] = "t"

    k = K(w=jnp.zeros(1))
    assert k.tag == "t" and len(jax.tree.leaves(k)) == 1
    with pytest.raises(ValueError, match="only be used with a subclass of nnx.Pytree"):
        nnx.dataclass(type("Plain", (), {"__annotations__": {"x": "int"}}))
    with pytest.raises(TypeError, match="does not accept frozen=True"):
        nnx.dataclass(frozen=True)


def test_check_pytree_finds_static_values_changed_in_place():
    class M(nnx.Pytree):
        def __init__(self):
            self.cfg = nnx.static([1, 2])
            self.w = nnx.Param(jnp.ones(2))

    m = M()
    nnx.check_pytree(m)  # fine
    m.cfg.append(jnp.ones(3))
    with pytest.raises(
        nnx.PytreeStaticError, match=r"Found arrays in attribute M\.cfg, which is declared static"
    ):
        nnx.check_pytree(m)
    with pytest.raises(TypeError, match="expects a Pytree, got dict"):
        nnx.check_pytree({"a": 1})


def test_check_pytree_finds_markers_inside_containers():
    class M(nnx.Pytree):
        def __init__(self):
            self.xs = [nnx.data(1)]

    with pytest.raises(ValueError, match=r"marker inside M\.xs"):
        nnx.check_pytree(M())


def test_has_data():
    assert nnx.has_data(jnp.ones(2)) and nnx.has_data(nnx.Param(1.0))
    assert nnx.has_data([1, "relu", jnp.ones(2)]) and nnx.has_data({"a": (nnx.Rngs(0),)})
    assert not nnx.has_data([1, 2.0, "x"]) and not nnx.has_data([]) and not nnx.has_data(3)


def test_path_contains_exact():
    path = ("layers", 0, "self_attn", "kernel")
    assert not nnx.PathContains("attn")(path, None)
    assert nnx.PathContains("attn", exact=False)(path, None)
    assert nnx.PathContains("kernel", exact=True)(path, None)
    assert nnx.PathContains(0)(path, None) and nnx.PathContains(0, exact=False)(path, None)
    assert nnx.PathContains("a", exact=False) != nnx.PathContains("a")
    assert repr(nnx.PathContains("a", exact=False)) == "PathContains('a', exact=False)"

    class Block(nnx.Module):
        def __init__(self):
            self.self_attn = nnx.Param(jnp.ones(2))
            self.mlp = nnx.Param(jnp.zeros(2))

    attn = nnx.state(Block(), nnx.PathContains("attn", exact=False))
    assert list(dict(attn)) == ["self_attn"]


def test_type_names_for_annotations():
    class Count(nnx.Variable[nnx.A]):
        pass

    c = Count(jnp.array(0))
    c[...] += 1
    assert int(c[...]) == 1 and isinstance(nnx.A, type(nnx.M))
    assert nnx.M.__bound__ is nnx.Module
    assert nnx.VariableState is nnx.Variable

    def ident(m: nnx.M) -> nnx.M:
        return m

    assert ident(nnx.Module()) is not None


def test_a_data_attribute_stays_data_when_a_python_scalar_replaces_its_array():
    # Flax NNX records an attribute's status at its first assignment: an array
    # attribute set later to a Python number is still a pytree leaf (and a jit input)
    class Counter(nnx.Pytree):
        def __init__(self):
            self.count: Any = jnp.array(0)
            self.name: Any = "c"

    c = Counter()
    c.count = 5
    assert jax.tree.leaves(c) == [5]
    assert nnx.state(c)["count"] == 5  # in the graph state too
    c.count = 6.5
    assert jax.tree.leaves(c) == [6.5]
    # a static attribute stays static for a number, and a data attribute re-infers
    # for a value that cannot be a leaf (a string is never traced)
    c.name = 3
    c.count = "done"
    assert jax.tree.leaves(c) == []
    # a fresh attribute holding a number is static, as before
    c.fresh = 1
    assert jax.tree.leaves(c) == []


def test_a_kept_scalar_is_traced_by_jit():
    class Counter(nnx.Pytree):
        def __init__(self):
            self.count: Any = jnp.array(0)

    c = Counter()
    c.count = 1
    seen = []

    @jax.jit  # a Pytree is a JAX pytree: the kept number is one of its leaves
    def step(c):
        seen.append(isinstance(c.count, jax.core.Tracer))  # pyright: ignore[reportAttributeAccessIssue]
        c.count = c.count + 1
        return c

    c = step(step(c))
    assert seen and all(seen)  # an input at every trace, not a constant baked in
    assert int(c.count) == 3
