"""Rngs: streams, fallback, sampling, fork, state under transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnx


def test_streams_and_default_fallback():
    rngs = nnx.Rngs(params=0, dropout=1)
    assert not jnp.array_equal(
        jax.random.key_data(rngs.params()), jax.random.key_data(rngs.dropout())
    )
    with pytest.raises(
        AttributeError, match="No RngStream named 'other' found in Rngs, and it has no 'default'"
    ):
        rngs.other()
    r = nnx.Rngs(0)
    k1 = r.params()  # falls back to default
    k2 = r()
    assert not jnp.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
    assert int(r.default.count[...]) == 2


def test_stream_key_is_fold_in_of_count():
    r = nnx.Rngs(default=jax.random.key(3))
    base = r.default.key[...]
    k = r()
    np.testing.assert_array_equal(
        jax.random.key_data(k), jax.random.key_data(jax.random.fold_in(base, 0))
    )


def test_a_stream_starts_from_its_seed_key_as_in_flax():
    # Flax NNX: the first key of a stream seeded with 0 is fold_in(key(0), 0), whatever
    # its name, so the same seed gives two streams the same keys.
    r = nnx.Rngs(params=0, dropout=0)
    want = jax.random.key_data(jax.random.fold_in(jax.random.key(0), 0))
    np.testing.assert_array_equal(jax.random.key_data(r.params()), want)
    np.testing.assert_array_equal(jax.random.key_data(r.dropout()), want)


def _next_key(rngs, k):
    """The key the default stream hands out at its k-th call."""
    return jax.random.fold_in(rngs.default.key[...], k)


@pytest.mark.parametrize(
    "method, args, reference",
    [
        ("normal", ((2, 3),), lambda k: jax.random.normal(k, (2, 3))),
        ("uniform", ((4,),), lambda k: jax.random.uniform(k, (4,))),
        ("bernoulli", (0.3, (5,)), lambda k: jax.random.bernoulli(k, 0.3, (5,))),
        ("randint", ((3,), 0, 10), lambda k: jax.random.randint(k, (3,), 0, 10)),
        (
            "categorical",
            (jnp.log(jnp.array([0.2, 0.3, 0.5])),),
            lambda k: jax.random.categorical(k, jnp.log(jnp.array([0.2, 0.3, 0.5]))),
        ),
        (
            "truncated_normal",
            (-1.0, 1.0, (4,)),
            lambda k: jax.random.truncated_normal(k, -1.0, 1.0, (4,)),
        ),
        ("permutation", (5,), lambda k: jax.random.permutation(k, 5)),
        ("choice", (jnp.arange(10), (3,)), lambda k: jax.random.choice(k, jnp.arange(10), (3,))),
        ("gumbel", ((3,),), lambda k: jax.random.gumbel(k, (3,))),
        ("exponential", ((3,),), lambda k: jax.random.exponential(k, (3,))),
        ("bits", ((2,),), lambda k: jax.random.bits(k, (2,))),
    ],
)
def test_sampling_methods_match_jax_random_with_the_next_key(method, args, reference):
    r = nnx.Rngs(0)
    r()  # move to the second key, so that the count is used
    expected = reference(_next_key(r, 1))
    np.testing.assert_array_equal(getattr(r, method)(*args), expected)
    assert int(r.default.count[...]) == 2


def test_rngs_default_keyword_and_positional_are_the_same_stream():
    a = nnx.Rngs(default=jax.random.key(5))
    b = nnx.Rngs(jax.random.key(5))
    c = nnx.Rngs(5)
    for _ in range(3):
        ka, kb, kc = (jax.random.key_data(x()) for x in (a, b, c))
        np.testing.assert_array_equal(ka, kb)
        np.testing.assert_array_equal(ka, kc)


def test_missing_streams_fall_back_to_default_by_attribute_item_and_call():
    r = nnx.Rngs(0, params=1)
    assert r.dropout is r.default and r["dropout"] is r.default
    assert r.params is not r.default and "params" in r and "dropout" not in r
    k = r.dropout()
    np.testing.assert_array_equal(
        jax.random.key_data(k), jax.random.key_data(jax.random.fold_in(r.default.key[...], 0))
    )
    assert int(r.default.count[...]) == 1 and int(r.params.count[...]) == 0


@pytest.mark.parametrize("name, why", [("fork", "the Rngs method rngs.fork"), ("_x", "private")])
def test_stream_names_that_would_hide_a_method_are_an_error(name, why):
    with pytest.raises(ValueError, match=f"{name!r} cannot name a stream: it is {why}"):
        nnx.Rngs(**{name: 0})


def test_bad_seeds_say_what_to_pass():
    with pytest.raises(TypeError, match=r"int seed or a JAX key, got str 'abc'.*nnx.Rngs\(0\)"):
        nnx.Rngs("abc")
    with pytest.raises(TypeError, match="int seed or a JAX key, got float32"):
        nnx.Rngs(jnp.ones(3))


def test_legacy_prngkey_and_key_arrays_accepted():
    r = nnx.Rngs(jax.random.PRNGKey(0))
    assert r().shape == ()
    np.testing.assert_array_equal(
        jax.random.key_data(r.default.key[...]),
        jax.random.key_data(jax.random.key(0)),
    )


def test_fork_split_gives_stacked_streams():
    r = nnx.Rngs(0, dropout=1)
    f = r.fork(split=8)
    assert f.default.key.shape == (8,) and f.default.count.shape == (8,)
    keys = f()
    assert keys.shape == (8,)
    assert len({tuple(np.asarray(jax.random.key_data(k))) for k in keys}) == 8
    partial = r.fork(split={"dropout": 4})
    assert partial.dropout.key.shape == (4,) and partial.default.key.shape == ()


def test_counts_advance_inside_plain_jit_via_split_merge():
    r = nnx.Rngs(0)
    g, s = nnx.split(r)

    @jax.jit
    def draw(g, s):
        r = nnx.merge(g, s)
        k = r()
        return k, nnx.split(r)[1]

    k, s = draw(g, s)
    nnx.update(r, s)
    assert int(r.default.count[...]) == 1
    k2 = r()
    assert not jnp.array_equal(jax.random.key_data(k), jax.random.key_data(k2))


def test_hijax_rngs_advance_inside_plain_jit():
    with nnx.var_defaults(hijax=True):
        r = nnx.Rngs(0)

    @jax.jit
    def draw():
        return r.normal((2,))  # pyright: ignore[reportCallIssue]

    a, b = draw(), draw()
    assert not np.allclose(a, b)
    assert int(r.default.count[...]) == 2


def test_rng_state_kinds_and_tags():
    r = nnx.Rngs(params=0)
    assert isinstance(r.params.key, nnx.RngKey) and isinstance(r.params.count, nnx.RngCount)
    assert r.params.key.tag == "params"
    assert len(nnx.state(r, nnx.RngCount).flat_state()) == 1


def _key_tuple(k):
    return tuple(np.asarray(jax.random.key_data(k)).ravel().tolist())


def test_fork_advances_the_parent_once_and_gives_independent_streams():
    r = nnx.Rngs(0, dropout=1)
    child = r.fork()
    assert int(r.default.count[...]) == 1 and int(r.dropout.count[...]) == 1
    assert int(child.default.count[...]) == 0
    keys = [_key_tuple(x()) for x in (r, child, r.dropout, child.dropout) for _ in range(3)]
    assert len(set(keys)) == len(keys)
    second = r.fork()
    assert _key_tuple(second()) != _key_tuple(nnx.Rngs(0, dropout=1).fork()())


def test_stream_fork_split_shapes():
    stream = nnx.Rngs(params=0).params
    forked = stream.fork(split=(2, 3))
    assert forked.key.shape == (2, 3) and forked().shape == (2, 3)
    assert len({_key_tuple(k) for k in forked().ravel()}) == 6


def test_counts_after_split_and_merge():
    r = nnx.Rngs(0)
    g, s = nnx.split(r)
    shared = nnx.merge(g, s)  # the same Variables: drawing from it advances r
    shared()
    assert int(r.default.count[...]) == 1
    copy = nnx.merge(g, s, copy=True)  # a snapshot: draws the same next key as r
    np.testing.assert_array_equal(jax.random.key_data(copy()), jax.random.key_data(r()))
    assert int(r.default.count[...]) == 2 and int(copy.default.count[...]) == 2


def test_counts_advance_inside_jax_vmap_of_a_ref_stacked_stream():
    with nnx.var_defaults(ref=True):
        stacked = nnx.Rngs(0).fork(split=4)
    keys = jax.vmap(lambda r: r.default())(stacked)
    assert keys.shape == (4,) and len({_key_tuple(k) for k in keys}) == 4
    np.testing.assert_array_equal(stacked.default.count[...], np.ones(4))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    names=st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
        min_size=2,
        max_size=4,
        unique=True,
    ),
)
def test_streams_with_different_seeds_never_give_the_same_key(seed, names):
    names = [n for n in names if not n.startswith("_") and not hasattr(nnx.Rngs, n)]
    names = names if len(names) >= 2 else ["a", "b"]
    r = nnx.Rngs(**{n: (seed + i) % 2**31 for i, n in enumerate(names)})
    child = r.fork()
    keys = [_key_tuple(s()) for rr in (r, child) for _, s in rr.items() for _ in range(3)]
    assert len(set(keys)) == len(keys)
