"""`nnx.view`, `nnx.view_info` and `nnx.with_attributes` (Flax NNX 0.12's documented behaviour)."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from core_helpers import Linear

import nnx


class Drop(nnx.Module):
    def __init__(self, rate: float, *, deterministic: bool = False):
        self.rate = rate
        self.deterministic = deterministic

    def set_view(self, deterministic: bool | None = None):
        """Choose the mode.

        Args:
          deterministic: if True, disables dropout masking.
        """
        if deterministic is not None:
            self.deterministic = deterministic


class Norm(nnx.Module):
    def __init__(self):
        self.mean = nnx.BatchStat(jnp.zeros(2))
        self.use_running_average = False

    def set_view(self, use_running_average: bool | None = None, **kwargs):
        if use_running_average is not None:
            self.use_running_average = use_running_average


class Plain(nnx.Module):  # no docstring on set_view
    def __init__(self):
        self.flag = 0

    def set_view(self, flag=None):
        if flag is not None:
            self.flag = flag


class Block(nnx.Module):
    def __init__(self):
        self.linear = Linear(2, 2, rngs=nnx.Rngs(0))
        self.dropout = Drop(0.5)
        self.layers = [Drop(0.1), self.linear]


def test_view_makes_a_new_graph_in_another_mode_sharing_the_variables():
    block = Block()
    eval_block = nnx.view(block, deterministic=True)
    assert eval_block.dropout.deterministic and eval_block.layers[0].deterministic
    assert not block.dropout.deterministic  # the original is left alone
    assert eval_block.linear.kernel is block.linear.kernel
    assert eval_block.layers[1] is eval_block.linear  # sharing kept in the copy
    train_block = nnx.view(eval_block, deterministic=False)
    assert not train_block.dropout.deterministic and eval_block.dropout.deterministic


def test_view_with_only_and_unused_kwargs():
    block = Block()
    new = nnx.view(block, only=lambda path, m: path == ("dropout",), deterministic=True)
    assert new.dropout.deterministic and not new.layers[0].deterministic
    with pytest.raises(ValueError, match=r"no Module's set_view takes \['decode'\]"):
        nnx.view(block, deterministic=True, decode=True)
    quiet = nnx.view(block, deterministic=True, decode=True, raise_if_not_found=False)
    assert quiet.dropout.deterministic


def test_view_passes_every_kwarg_to_a_set_view_that_takes_kwargs():
    class M(nnx.Module):
        def __init__(self):
            self.norm = Norm()

    new = nnx.view(M(), use_running_average=True, anything=1)  # **kwargs takes the rest
    assert new.norm.use_running_average


def test_view_info_lists_each_class_with_its_arguments_and_docs():
    class M(nnx.Module):
        def __init__(self):
            self.drop = Drop(0.5)
            self.plain = Plain()
            self.linear = Linear(2, 2, rngs=nnx.Rngs(0))

    text = nnx.view_info(M())
    assert text.splitlines() == [
        "Drop:",
        "  deterministic: bool | None = None",
        "    if True, disables dropout masking.",
        "Plain:",
        "  set_view(self, flag=None)",  # as Flax prints it: the class function
    ]
    assert nnx.view_info(M(), only=Drop).startswith("Drop:") and "Plain" not in nnx.view_info(
        M(), only=Drop
    )


def test_with_attributes_sets_existing_attributes_on_a_copy():
    block = Block()
    new = nnx.with_attributes(block, deterministic=True, rate=0.0)
    assert new.dropout.deterministic and new.dropout.rate == 0.0
    assert new.layers[0].deterministic
    assert not block.dropout.deterministic and block.dropout.rate == 0.5
    assert new.linear.kernel is block.linear.kernel
    only = nnx.with_attributes(block, only=Drop, deterministic=True)
    assert only.dropout.deterministic
    with pytest.raises(ValueError, match=r"no selected Module has \['missing'\]"):
        nnx.with_attributes(block, missing=1)
    assert nnx.with_attributes(block, missing=1, raise_if_not_found=False) is not block
