"""``nnx.Carry``: one marker object in nnx-core, for nnx.scan's axes and nnx.RNN's state_axes."""

import pytest

import nnx
import nnx.core


def test_carry_is_a_core_name():
    assert nnx.Carry is nnx.core.Carry
    assert "Carry" in nnx.core.__all__


def test_carry_is_a_marker_not_a_value():
    with pytest.raises(TypeError, match=r"nnx.Carry is a marker: use the class itself"):
        nnx.Carry()
