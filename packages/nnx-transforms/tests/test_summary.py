"""nnx.tabulate: numbers against a hand count, on models of plain Module + Param."""

from __future__ import annotations

import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import add_bias

import nnx

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SEPARATORS = tuple("├┝╞┡└╘┗┣")


def _table(*args, **kwargs) -> str:
    kwargs.setdefault("console_kwargs", {"width": 250})
    return _ANSI.sub("", nnx.tabulate(*args, **kwargs))


def _block(text: str, path: str) -> str:
    """The text of the table row whose path cell is ``path`` (all its lines)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = line.split("│")
        if len(cells) > 2 and cells[1].strip() == path and not line.startswith(_SEPARATORS):
            out = [line]
            for more in lines[i + 1 :]:
                if more.startswith(_SEPARATORS) or not more.startswith("│"):
                    break
                out.append(more)
            return "\n".join(out)
    raise AssertionError(f"no row {path!r} in\n{text}")


def _root(text: str) -> str:
    for i, line in enumerate(lines := text.splitlines()):
        if line.startswith(("┡", "╞")):
            return "\n".join(lines[i + 1 : i + 2])
    raise AssertionError(text)


class Dense(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (din, dout)))
        self.bias = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        return add_bias(x @ self.kernel, self.bias)


class MLP(nnx.Module):
    def __init__(self, *, rngs):
        self.l1 = Dense(2, 4, rngs=rngs)
        self.l2 = Dense(4, 1, rngs=rngs)
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x):
        self.count[...] += 1
        return self.l2(jax.nn.relu(self.l1(x)))

    def features(self, x, *, scale):
        return self.l1(x) * scale


class CNN(nnx.Module):
    def __init__(self, *, rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (3, 3, 1, 4)))  # HWIO
        self.bias = nnx.Param(jnp.zeros((4,)))
        self.mean = nnx.BatchStat(jnp.zeros((4,)))
        self.head = Dense(8 * 8 * 4, 10, rngs=rngs)

    def __call__(self, x):  # x: NHWC
        y = jax.lax.conv_general_dilated(
            x, self.kernel[...], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        y = add_bias(y, self.bias)
        self.mean[...] = y.mean(axis=(0, 1, 2))
        return self.head(y.reshape(y.shape[0], -1))


def test_mlp_counts_and_shapes_match_a_hand_count(mode):
    text = _table(MLP(rngs=nnx.Rngs(0)), jnp.ones((3, 2)))
    # l1: 2*4 + 4 = 12 params (48 B); l2: 4*1 + 1 = 5 (20 B); count: one int32 (4 B)
    l1 = _block(text, "l1")
    assert "Dense" in l1 and "float32[3,2]" in l1 and "float32[3,4]" in l1
    assert "kernel: float32[2,4]" in l1 and "bias: float32[4]" in l1 and "12 (48 B)" in l1
    l2 = _block(text, "l2")
    assert "float32[3,4]" in l2 and "float32[3,1]" in l2 and "5 (20 B)" in l2
    root = _block(text, "")
    assert "MLP" in root and "17 (68 B)" in root and "1 (4 B)" in root
    assert "count: int32[]" in root
    assert "Total Parameters: 18 (72 B)" in text
    assert "MLP Summary" in text


def test_cnn_counts_and_shapes_match_a_hand_count():
    text = _table(CNN(rngs=nnx.Rngs(0)), jnp.ones((2, 8, 8, 1)))
    root = _block(text, "")
    # conv: 3*3*1*4 + 4 = 40; head: 256*10 + 10 = 2570; total Params 2610 (10,440 B)
    assert "float32[2,8,8,1]" in root and "float32[2,10]" in root
    assert "kernel: float32[3,3,1,4]" in root and "2,610 (10.4 KB)" in root
    assert "mean: float32[4]" in root and "4 (16 B)" in root
    head = _block(text, "head")
    assert "float32[2,256]" in head and "2,570 (10.3 KB)" in head
    assert "Total Parameters: 2,614 (10.5 KB)" in text


def test_a_shared_variable_counts_once():
    class Tied(nnx.Module):
        def __init__(self, rngs):
            self.a = Dense(3, 3, rngs=rngs)
            self.b = Dense(3, 3, rngs=rngs)
            self.b.kernel = self.a.kernel

        def __call__(self, x):
            return self.b(self.a(x))

    text = _table(Tied(nnx.Rngs(0)), jnp.ones((1, 3)))
    # kernel 9 once + two biases 3 each = 15
    assert "15 (60 B)" in _block(text, "") and "Total Parameters: 15 (60 B)" in text
    assert "12 (48 B)" in _block(text, "a") and "3 (12 B)" in _block(text, "b")


def test_tabulate_leaves_the_model_unchanged(mode):
    model = MLP(rngs=nnx.Rngs(0))
    before_def = nnx.graphdef(model)
    before = [np.asarray(v[...]) for v in nnx.flatten(model).leaves]
    _table(model, jnp.ones((3, 2)), compute_flops=True)
    assert nnx.graphdef(model) == before_def
    for v, b in zip(nnx.flatten(model).leaves, before):
        np.testing.assert_array_equal(v[...], b)
    assert int(model.count[...]) == 0  # the abstract call wrote nothing


def test_depth_and_row_filter():
    model = MLP(rngs=nnx.Rngs(0))
    text = _table(model, jnp.ones((3, 2)), depth=0)
    _block(text, "")
    with pytest.raises(AssertionError, match="no row 'l1'"):
        _block(text, "l1")
    text = _table(model, jnp.ones((3, 2)), row_filter=lambda row: row.path != ("l2",))
    _block(text, "l1")
    with pytest.raises(AssertionError, match="no row 'l2'"):
        _block(text, "l2")


def test_method_kwargs_and_abstract_inputs():
    model = MLP(rngs=nnx.Rngs(0))
    x = jax.ShapeDtypeStruct((5, 2), jnp.float32)
    text = _table(model, x, method="features", scale=2.0)
    root = _block(text, "features")
    assert "float32[5,2]" in root and "scale: float32[]" in root and "float32[5,4]" in root
    assert "float32[5,4]" in _block(text, "l1")


def test_a_module_called_twice_with_the_same_shapes_is_one_row():
    class Twice(nnx.Module):
        def __init__(self, rngs):
            self.l = Dense(2, 2, rngs=rngs)

        def __call__(self, x):
            return self.l(self.l(x))

    text = _table(Twice(nnx.Rngs(0)), jnp.ones((1, 2)))
    assert text.count("│ l ") == 1


def test_flops_match_xla_cost_of_the_same_computation():
    d = Dense(3, 4, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3))
    assert d.bias is not None
    ref = jax.jit(lambda x, w, b: add_bias(x @ w, b)).lower(x, d.kernel[...], d.bias[...])
    cost = ref.cost_analysis()
    assert cost is not None
    expected = int(cost["flops"])
    text = _table(d, x, compute_flops=True)
    assert re.search(rf"│ {expected}\s+│", _block(text, "")), text

    def backward(w, b, x):
        out, pull = jax.vjp(lambda w, b, x: add_bias(x @ w, b), w, b, x)
        return pull(out)

    ref_vjp = jax.jit(backward).lower(d.kernel[...], d.bias[...], x)
    cost_vjp = ref_vjp.cost_analysis()
    assert cost_vjp is not None
    vjp = int(cost_vjp["flops"])
    text = _table(d, x, compute_flops=True, compute_vjp_flops=True)
    assert re.search(rf"│ {expected}\s+│ {vjp}\s+│", _block(text, "")), text


def test_unknown_method_names_the_type():
    with pytest.raises(AttributeError, match="MLP has no method 'encode'"):
        nnx.tabulate(MLP(rngs=nnx.Rngs(0)), jnp.ones((1, 2)), method="encode")


def test_rng_state_column_and_rng_stream_rows_hidden_by_default():
    class Noisy(nnx.Module):
        def __init__(self):
            self.rngs = nnx.Rngs(0)
            self.w = nnx.Param(jnp.ones((2,)))

        def __call__(self, x):
            return x * self.w + self.rngs.normal((2,))  # pyright: ignore[reportCallIssue]

    text = _table(Noisy(), jnp.ones((2,)))
    # the stream holds a key (1 element, 8 bytes) and a uint32 count (4 bytes)
    assert "2 (12 B)" in _block(text, "")
    assert "RngStream" not in text
    text = _table(Noisy(), jnp.ones((2,)), row_filter=lambda row: True)
    assert "RngStream" in text


@pytest.mark.parametrize("renderer", ["rich", "text"])
def test_footer_aligns_as_flax_does(renderer, monkeypatch):
    # Flax NNX's layout: "Total" right-aligned, each kind's total left-aligned under its
    # listing; the plain-text table (no rich installed) lays it out the same way
    if renderer == "rich":
        pytest.importorskip("rich")
    else:
        monkeypatch.setitem(sys.modules, "rich", None)  # `import rich` fails
    class Tiny(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones((2, 3)))
            self.s = nnx.BatchStat(jnp.zeros(3))

        def __call__(self, x):
            return x @ self.w[...] + self.s[...][None, :]

    text = _table(Tiny(), jnp.ones((1, 2)))
    footer = next(line for line in text.splitlines() if "Total" in line and "│" in line)
    cells = [c for c in footer.split("│")[1:-1]]
    assert cells[3].strip() == "Total" and cells[3].endswith("Total ")
    kinds = [c for c in cells[4:] if c.strip()]
    assert kinds and all(c.startswith(" ") and not c.startswith("  ") for c in kinds), footer
