"""What each conversion alias of ``nnx.vars_as`` means, stated mode by mode.

nnx has three exclusive storage modes (plain, ref, hijax) and a mutability flag. The
aliases follow Flax NNX 0.12.8: ``as_array_vars`` is ``has_ref=False`` only (a hijax
Variable stays hijax), ``as_pytree_vars`` is ``is_hijax=False`` only (a ref stays a
ref), while the mutable-arrays era name ``to_arrays`` makes every Variable plain. The
table below is written out by hand (not computed from ``vars_as``), so a change of
meaning of any alias fails here.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import nnx

STARTS = ("plain", "ref", "hijax", "frozen", "frozen_hijax")


def make(start: str) -> nnx.Param:
    if start == "plain":
        return nnx.Param(jnp.arange(3.0), note="kept")
    if start == "ref":
        return nnx.Param(jnp.arange(3.0), note="kept", ref=True)
    if start == "hijax":
        return nnx.Param(jnp.arange(3.0), note="kept", hijax=True)
    if start == "frozen":  # frozen from plain: mutable again means a ref
        return nnx.vars_as(make("plain"), mutable=False)
    if start == "frozen_hijax":  # frozen from hijax: mutable again means hijax again
        return nnx.vars_as(make("hijax"), mutable=False)
    raise AssertionError(start)


def mode(v: nnx.Variable) -> str:
    base = "hijax" if v.hijax else "ref" if v.ref else "plain"
    return base if v.mutable else f"{base}-frozen"


# alias -> the mode it gives for each start in STARTS
EXPECTED = {
    "with_vars": ("plain", "ref", "hijax", "plain-frozen", "plain-frozen"),  # no kwargs: a copy
    "to_refs": ("ref", "ref", "ref", "ref", "ref"),
    "as_ref_vars": ("ref", "ref", "ref", "ref", "ref"),
    "to_arrays": ("plain", "plain", "plain", "plain-frozen", "plain-frozen"),
    "as_array_vars": ("plain", "plain", "hijax", "plain-frozen", "plain-frozen"),
    "as_hijax_vars": ("hijax", "hijax", "hijax", "hijax", "hijax"),
    "as_pytree_vars": ("plain", "ref", "plain", "plain-frozen", "plain-frozen"),
    "freeze": ("plain-frozen",) * 5,
    "as_immutable_vars": ("plain-frozen",) * 5,
    "mutable": ("ref", "ref", "hijax", "ref", "hijax"),
    "as_mutable_vars": ("ref", "ref", "hijax", "ref", "hijax"),
}

# the vars_as keywords each alias documents itself as
KWARGS = {
    "with_vars": {},
    "to_refs": {"ref": True},
    "as_ref_vars": {"ref": True},
    "to_arrays": {"ref": False, "hijax": False},
    "as_array_vars": {"ref": False},
    "as_hijax_vars": {"hijax": True},
    "as_pytree_vars": {"hijax": False},
    "freeze": {"mutable": False},
    "as_immutable_vars": {"mutable": False},
    "mutable": {"mutable": True},
    "as_mutable_vars": {"mutable": True},
}


def test_the_table_covers_every_alias_and_starts_as_labelled():
    assert set(EXPECTED) == set(KWARGS)
    assert [mode(make(s)) for s in STARTS] == [
        "plain",
        "ref",
        "hijax",
        "plain-frozen",
        "plain-frozen",
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_alias_gives_the_documented_mode(name):
    alias = getattr(nnx, name)
    got = tuple(mode(alias(make(s))) for s in STARTS)
    assert got == EXPECTED[name], f"nnx.{name}: {dict(zip(STARTS, got))}"
    # and it is the same as the vars_as call its docstring names
    via = tuple(mode(nnx.vars_as(make(s), **KWARGS[name])) for s in STARTS)
    assert via == got
    assert "Alias of" in (alias.__doc__ or ""), f"nnx.{name} is documented as an alias"


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("start", STARTS)
def test_alias_keeps_value_kind_and_metadata_and_leaves_the_original(name, start):
    v = make(start)
    before = mode(v)
    new = getattr(nnx, name)(v)
    assert new is not v
    assert type(new) is nnx.Param
    assert new.get_metadata("note") == "kept"
    np.testing.assert_array_equal(new[...], np.arange(3.0))
    assert mode(v) == before  # the original keeps its mode


class Tied(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(2))
        self.alias_of_w = self.w  # one Variable, two attributes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_alias_over_a_module_converts_every_variable_once_and_keeps_sharing(name):
    model = Tied()
    new = getattr(nnx, name)(model)
    assert new is not model and new.w is not model.w
    assert new.alias_of_w is new.w
    assert mode(new.w) == EXPECTED[name][STARTS.index("plain")]
    assert mode(model.w) == "plain"
