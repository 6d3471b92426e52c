"""nnx.update_context / split_context / merge_context: Flax NNX's four-call protocol
carrying structural updates across a plain JAX transform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Foo(nnx.Module):
    pass


class Net(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(3))
        self.child = Foo()
        self.child.v = nnx.BatchStat(jnp.zeros(2))
        self.shared = self.child  # one object at two paths


def _inner_body(graphdef, state):
    """Call (2), changes, call (3): what a hand-written transform does inside."""
    with nnx.merge_context("t", inner=True) as ctx:
        m = ctx.merge(graphdef, state)
    m.w[...] = m.w[...] * 2.0  # a new value for an existing Variable
    m.child.v[...] = m.child.v[...] + 1.0
    m.extra = nnx.Param(jnp.full((2,), 5.0))  # a new Variable
    m.note = "added"  # a new static attribute
    m.loop = m  # a cycle
    del m.shared  # an attribute removed
    with nnx.split_context("t") as ctx:
        return ctx.split(m)


def _run(m1, body):
    with nnx.update_context("t"):
        with nnx.split_context("t") as ctx:
            graphdef, state = ctx.split(m1)
        graphdef_out, state_out = body(graphdef, state)
        with nnx.merge_context("t", inner=False) as ctx:
            return ctx.merge(graphdef_out, state_out)


@pytest.mark.parametrize("wrap", [lambda f: f, jax.jit], ids=["eager", "jax.jit"])
def test_the_four_calls_move_every_change_back_into_the_outer_objects(wrap):
    m1 = Net()
    w, child, v = m1.w, m1.child, m1.child.v  # pyright: ignore[reportAttributeAccessIssue]
    body = wrap(_inner_body)
    for step in (1, 2):  # the second jax.jit call is a cache hit: no retrace
        m1 = Net()
        w, child, v = m1.w, m1.child, m1.child.v  # pyright: ignore[reportAttributeAccessIssue]
        m3 = _run(m1, body)
        assert m3 is m1, step
        assert m1.w is w and m1.child is child and m1.child.v is v  # identity kept  # pyright: ignore[reportAttributeAccessIssue]
        np.testing.assert_array_equal(m1.w[...], [2.0, 2.0, 2.0])
        np.testing.assert_array_equal(m1.child.v[...], [1.0, 1.0])  # pyright: ignore[reportAttributeAccessIssue]
        np.testing.assert_array_equal(m1.extra[...], [5.0, 5.0])  # pyright: ignore[reportAttributeAccessIssue]
        assert m1.note == "added" and m1.loop is m1  # pyright: ignore[reportAttributeAccessIssue]
        assert not hasattr(m1, "shared")


def test_after_the_update_the_outer_graph_has_its_new_structure_everywhere():
    m1 = Net()
    nnx.state(m1)  # fill any flatten cache with the old structure
    _run(m1, jax.jit(_inner_body))
    paths = {p for p, _ in nnx.state(m1).flat_state()}
    assert paths == {("w",), ("child", "v"), ("extra",)}
    total = jax.jit(lambda m: m.w[...].sum() + m.extra[...].sum())(m1)
    assert float(total) == 6.0 + 10.0


def test_sharing_among_outer_objects_is_kept():
    class Pair(nnx.Module):
        def __init__(self):
            self.a = Foo()
            self.b = self.a
            self.a.p = nnx.Param(jnp.zeros(()))

    m1 = Pair()

    @jax.jit
    def body(graphdef, state):
        with nnx.merge_context("t", inner=True) as ctx:
            m = ctx.merge(graphdef, state)
        m.b.p[...] = 3.0
        m.c = Foo()  # a new submodule
        with nnx.split_context("t") as ctx:
            return ctx.split(m)

    a = m1.a
    assert _run(m1, body) is m1
    assert m1.a is a and m1.b is a and float(a.p[...]) == 3.0  # pyright: ignore[reportAttributeAccessIssue]
    assert isinstance(m1.c, Foo)  # pyright: ignore[reportAttributeAccessIssue]


def test_decorator_form_from_flaxs_documentation():
    m1 = Foo()

    @jax.jit
    def f(graphdef, state):
        with nnx.merge_context("example", inner=True) as ctx:
            m2 = ctx.merge(graphdef, state)
        m2.a = 1
        m2.ref = m2
        with nnx.split_context("example") as ctx:
            return ctx.split(m2)

    @nnx.update_context("example")
    def g(m1):
        with nnx.split_context("example") as ctx:
            graphdef, state = ctx.split(m1)
        graphdef_out, state_out = f(graphdef, state)
        with nnx.merge_context("example", inner=False) as ctx:
            return ctx.merge(graphdef_out, state_out)

    m3 = g(m1)
    assert m3 is m1 and m1.a == 1 and m1.ref is m1  # pyright: ignore[reportAttributeAccessIssue]


def test_the_update_context_object_follows_the_four_calls_itself():
    m1 = Net()
    with nnx.update_context("u"):
        ctx = nnx.current_update_context("u")
        assert isinstance(ctx, nnx.UpdateContext) and ctx.tag == "u"
        graphdef, state = ctx.split(m1)  # (1)

        @jax.jit
        def body(graphdef, state):
            inner = nnx.current_update_context("u")
            m = inner.merge(graphdef, state)  # (2)
            m.w[...] = -m.w[...]
            m.k = 7
            return inner.split(m)  # (3)

        out = ctx.merge(*body(graphdef, state))  # (4)
    assert out is m1 and m1.k == 7  # pyright: ignore[reportAttributeAccessIssue]
    np.testing.assert_array_equal(m1.w[...], [-1.0, -1.0, -1.0])


def test_without_a_tag_the_contexts_are_split_and_merge():
    m = Net()
    with nnx.split_context() as ctx:
        graphdef, state = ctx.split(m)
    assert graphdef == nnx.graphdef(m)
    with nnx.merge_context() as ctx:
        m2 = ctx.merge(graphdef, state)
    with nnx.split_context() as ctx:
        g2, flat = ctx.flatten(m)
    with nnx.merge_context() as ctx:
        m3 = ctx.unflatten(g2, flat)
    for out in (m2, m3):
        assert isinstance(out, Net) and out.child is out.shared
        np.testing.assert_array_equal(out.w[...], m.w[...])


def test_without_a_tag_splits_of_one_block_share_objects():
    # Flax NNX: the second split of the same object in one block is a reference to the
    # first (no State entries), and one merge_context block gives the same object back
    m = Net()
    with nnx.split_context() as ctx:
        g1, s1 = ctx.split(m)
        g2, s2 = ctx.split(m)
        g3, flat = ctx.flatten(m.child)
    assert not s2 and not flat and g2.num_leaves == 0
    with nnx.merge_context() as ctx:
        a = ctx.merge(g1, s1)
        b = ctx.merge(g2, s2)
        c = ctx.unflatten(g3, flat)
    assert a is b and c is a.child


def test_errors_name_the_tag_and_the_fix():
    with pytest.raises(ValueError, match=r"current_update_context\('nope'\).*nnx.update_context"):
        nnx.current_update_context("nope")
    with (
        nnx.update_context("t"),
        pytest.raises(ValueError, match=r"merge_context\('t'\): pass inner=True"),
        nnx.merge_context("t"),
    ):
        pass
    with pytest.raises(ValueError, match=r"no update context"):
        nnx.current_update_context("t")  # gone after the block


def test_flatten_with_leaves_only():
    m = Net()
    with nnx.split_context() as ctx:
        graphdef, leaves = ctx.flatten(m, with_paths=False)
        with pytest.raises(ValueError, match="filters need with_paths=True"):
            ctx.flatten(m, nnx.Param, with_paths=False)
    assert len(leaves) == graphdef.num_leaves
    with nnx.merge_context() as ctx:
        out = ctx.unflatten(graphdef, leaves)
    np.testing.assert_array_equal(out.child.v[...], m.child.v[...])  # pyright: ignore[reportAttributeAccessIssue]


# -- to_tree / from_tree with ctxtag: the same protocol over a pytree of graph nodes ------
def _tree_round_trip(m1, body, prefix=None):
    kw = {} if prefix is None else {"prefix": prefix}
    with nnx.update_context("t"):
        tree = nnx.to_tree((m1,), ctxtag="t", **kw)  # (1)
        out = body(tree)
        return nnx.from_tree(out, ctxtag="t", is_inner=False, **kw)  # (4)


def _tree_body(tree, kw=None):
    (m2,) = nnx.from_tree(tree, ctxtag="t", is_inner=True, **(kw or {}))  # (2)
    m2.w[...] = m2.w[...] * 2.0
    m2.extra = nnx.Param(jnp.full((2,), 5.0))  # structure changes inside
    m2.loop = m2
    fresh = Foo()  # a new object returned beside it
    return nnx.to_tree(((m2,), fresh, m2), ctxtag="t", **(kw or {}))  # (3)


@pytest.mark.parametrize("wrap", [lambda f: f, jax.jit], ids=["eager", "jax.jit"])
def test_to_tree_and_from_tree_with_a_ctxtag_give_back_the_outer_objects(wrap):
    m1 = Net()
    w = m1.w
    (m3,), fresh, again = _tree_round_trip(m1, wrap(_tree_body))
    assert m3 is m1 and again is m1  # the caller's own object, updated in place
    assert m1.w is w
    np.testing.assert_array_equal(m1.w[...], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(m1.extra[...], [5.0, 5.0])  # pyright: ignore[reportAttributeAccessIssue]
    assert m1.loop is m1  # pyright: ignore[reportAttributeAccessIssue]
    assert isinstance(fresh, Foo) and fresh is not m1


def test_to_tree_with_a_ctxtag_inside_splits_a_repeated_object_once():
    m1 = Net()
    with nnx.update_context("t"):
        tree = nnx.to_tree((m1,), ctxtag="t")
        (m2,) = nnx.from_tree(tree, ctxtag="t", is_inner=True)
        out = nnx.to_tree(((m2,), Foo(), m2), ctxtag="t")
        assert len(jax.tree.leaves(out[2])) == 0  # the repeat is a reference
        (m3,), _, again = nnx.from_tree(out, ctxtag="t", is_inner=False)
    assert m3 is m1 and again is m1


def test_to_tree_with_a_ctxtag_and_a_prefix():
    m1 = Net()
    kw = {"prefix": 0}
    (m3,), _, _ = _tree_round_trip(m1, lambda tree: _tree_body(tree, kw), prefix=0)
    assert m3 is m1
    np.testing.assert_array_equal(m1.w[...], [2.0, 2.0, 2.0])


def test_to_tree_without_the_ctxtag_outside_makes_new_objects():
    # without the tag on the way out, the result is built fresh (the context is not used)
    m1 = Net()
    with nnx.update_context("t"):
        tree = nnx.to_tree((m1,), ctxtag="t")
        (m2,) = nnx.from_tree(tree, ctxtag="t", is_inner=True)
        (m3,) = nnx.from_tree(nnx.to_tree((m2,)))
    assert m3 is not m1


def test_ctxtag_errors_name_the_tag_and_the_fix():
    with pytest.raises(
        ValueError, match=r"no update context with this tag.*update_context\('nope'\)"
    ):
        nnx.to_tree((Foo(),), ctxtag="nope")
    with nnx.update_context("t"):
        tree = nnx.to_tree((Foo(),), ctxtag="t")
        with pytest.raises(ValueError, match="pass is_inner=True inside the transform"):
            nnx.from_tree(tree, ctxtag="t")
