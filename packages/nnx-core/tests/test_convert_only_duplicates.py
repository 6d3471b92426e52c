"""``only=`` and ``allow_duplicates=`` of ``nnx.vars_as`` and its ``as_*_vars`` aliases.

Flax NNX 0.12.8 gives every conversion function a filter ``only`` (only the Variables
it matches are converted) and ``allow_duplicates``: Flax raises a ``ValueError``
("Found duplicate at paths: ...") when a Variable to convert is reachable at two paths,
unless ``allow_duplicates=True``. nnx converts a shared Variable once and keeps it
shared, so it accepts such a tree by default and checks only when asked with
``allow_duplicates=False`` (docs/decisions/0013-vars-as-duplicates.md).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import nnx

# alias -> (keyword of vars_as it stands for, what a converted plain Param reads)
ALIASES = {
    "as_ref_vars": lambda v: v.ref and v.mutable,
    "as_hijax_vars": lambda v: v.hijax,
    "as_immutable_vars": lambda v: not v.mutable,
}
# aliases that change a Variable of the given start mode, and the start
CHANGES = {
    "as_ref_vars": "plain",
    "as_hijax_vars": "plain",
    "as_immutable_vars": "plain",
    "as_mutable_vars": "frozen",
    "as_array_vars": "ref",
    "as_pytree_vars": "hijax",
}


def make(start: str, value) -> nnx.Variable:
    if start == "plain":
        return nnx.Param(value)
    if start == "ref":
        return nnx.Param(value, ref=True)
    if start == "hijax":
        return nnx.Param(value, hijax=True)
    if start == "frozen":
        return nnx.vars_as(nnx.Param(value), mutable=False)
    raise AssertionError(start)


def signature(v: nnx.Variable) -> tuple:
    return (v.ref, v.hijax, v.mutable)


class Tied(nnx.Module):
    def __init__(self, start: str = "plain"):
        self.embed = make(start, jnp.arange(4.0))
        self.head = self.embed  # tied weights: one Variable, two paths
        self.stat = nnx.BatchStat(jnp.zeros(2))


# -- only -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ALIASES))
def test_only_converts_just_the_variables_it_matches(name):
    node = [nnx.Param(jnp.array(1.0)), nnx.Param(jnp.array(2.0))]
    out = getattr(nnx, name)(node, only=lambda path, x: path[0] == 0)
    assert ALIASES[name](out[0])
    assert signature(out[1]) == signature(node[1]) == (False, False, True)
    assert out[1] is not node[1]  # copied as it is: the result never aliases the input
    np.testing.assert_array_equal(out[1].get_value(), 2.0)


def test_only_takes_any_filter_type_and_path_string():
    m = nnx.Dict(w=nnx.Param(jnp.ones(2)), s=nnx.BatchStat(jnp.zeros(2)))
    by_type = nnx.vars_as(m, ref=True, only=nnx.Param)
    assert (by_type["w"].ref, by_type["s"].ref) == (True, False)
    by_path = nnx.vars_as(m, ref=True, only=nnx.PathContains("s"))
    assert (by_path["w"].ref, by_path["s"].ref) == (False, True)
    assert (m["w"].ref, m["s"].ref) == (False, False)  # the input is left as it was


def test_only_on_a_single_variable_is_matched_at_the_empty_path():
    v = nnx.BatchStat(jnp.ones(2))
    assert nnx.as_ref_vars(v, only=nnx.BatchStat).ref
    kept = nnx.as_ref_vars(v, only=nnx.Param)
    assert not kept.ref and kept is not v
    seen = []
    nnx.as_ref_vars(v, only=lambda path, x: seen.append(path) or True)
    assert seen == [()]


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_alias_takes_only(name):
    start = CHANGES[name]
    node = {"a": make(start, jnp.ones(2)), "b": make(start, jnp.ones(2))}
    out = getattr(nnx, name)(node, only=nnx.PathContains("a"))
    assert signature(out["a"]) != signature(node["a"])  # converted
    assert signature(out["b"]) == signature(node["b"])  # not selected: unchanged


# -- allow_duplicates ---------------------------------------------------------------------
@pytest.mark.parametrize("allow", [None, True])
def test_shared_variable_is_converted_once_and_stays_shared(allow):
    m = Tied()
    out = nnx.as_ref_vars(m, allow_duplicates=allow)
    assert out.embed is out.head and out.embed.ref
    out.embed[...] = jnp.full(4, 7.0)
    np.testing.assert_array_equal(out.head.get_value(), np.full(4, 7.0))
    np.testing.assert_array_equal(m.embed.get_value(), np.arange(4.0))  # a copy


def test_allow_duplicates_false_raises_flax_value_error_naming_the_paths():
    flax_message = r"Found duplicate at paths:\n  ---\n  embed\n  head\n  ---"
    with pytest.raises(ValueError, match=flax_message):
        nnx.as_ref_vars(Tied(), allow_duplicates=False)


def test_allow_duplicates_false_error_is_an_aliasing_error_with_the_fix():
    with pytest.raises(
        nnx.AliasingError,
        match=r"the Param at 'embed' is also reachable at 'head'.*allow_duplicates=True",
    ):
        nnx.vars_as(Tied(), hijax=True, allow_duplicates=False)


def test_allow_duplicates_false_on_a_list_uses_index_paths():
    shared = nnx.Variable(jnp.array(1.0))
    with pytest.raises(ValueError, match=r"Found duplicate at paths:\n  ---\n  0\n  1\n  ---"):
        nnx.as_ref_vars([shared, shared], allow_duplicates=False)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_alias_checks_duplicates_when_asked(name):
    m = Tied(CHANGES[name])
    with pytest.raises(ValueError, match="Found duplicate at paths"):
        getattr(nnx, name)(m, allow_duplicates=False)
    out = getattr(nnx, name)(m)
    assert out.embed is out.head


def test_duplicates_outside_only_or_already_converted_do_not_count():
    # as in Flax: only the Variables that would be converted are checked
    m = Tied()
    out = nnx.as_ref_vars(m, only=nnx.BatchStat, allow_duplicates=False)
    assert out.stat.ref and not out.embed.ref and out.embed is out.head
    refs = Tied("ref")
    again = nnx.as_ref_vars(refs, allow_duplicates=False)  # nothing changes mode
    assert again.embed is again.head and again.embed.ref


class Inner(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(2))


def test_a_shared_submodule_is_not_a_duplicate_variable():
    # as in Flax: a shared graph node is one node; its Variables are reached once
    inner = Inner()
    outer = [inner, inner]
    out = nnx.as_ref_vars(outer, allow_duplicates=False)
    assert out[0] is out[1] and out[0].w.ref


def test_a_variable_in_a_shared_plain_list_is_a_duplicate():
    # a list is a pytree, not a graph node: its Variables are reached once per path
    inner = [nnx.Param(jnp.ones(2))]
    with pytest.raises(ValueError, match=r"Found duplicate at paths:\n  ---\n  a/0\n  b/0"):
        nnx.as_ref_vars({"a": inner, "b": inner}, allow_duplicates=False)
