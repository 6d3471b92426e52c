"""nnx.tabulate on nnx-layers models (rich installed here), and Flax's module paths
`nnx.compat` / `nnx.summary` (built by nnx/__init__.py from nnx.transforms.__nnx_paths__)."""

from __future__ import annotations

import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np

import nnx

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Block(nnx.Module):
    def __init__(self, din, dout, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.bn = nnx.BatchNorm(dout, rngs=rngs)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.dropout(self.bn(self.linear(x))))


class Foo(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.block1 = Block(32, 128, rngs=rngs)
        self.block2 = Block(128, 10, rngs=rngs)

    def __call__(self, x):
        return self.block2(self.block1(x))


def _row(text: str, path: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = line.split("│")
        if len(cells) > 2 and cells[1].strip() == path:
            block = [line]
            for more in lines[i + 1 :]:
                if not more.startswith("│"):
                    break
                block.append(more)
            return "\n".join(block)
    raise AssertionError(f"no row {path!r}:\n{text}")


def test_tabulate_flax_docstring_model_with_rich():
    import rich  # noqa: F401  (the full env installs the [summary] extra)

    foo = Foo(nnx.Rngs(0))
    out = nnx.tabulate(foo, jnp.ones((1, 32)), console_kwargs={"width": 300})
    assert "\x1b[" in out  # rich's terminal rendering, as Flax's default
    text = _ANSI.sub("", out)
    assert "┃ path" in text  # rich's heavy header
    # hand count: Linear(32,128) 4,224; BatchNorm(128) 256 Params + 256 stats;
    # Linear(128,10) 1,290; BatchNorm(10) 20 + 20: Params 5,790, BatchStat 276
    root = _row(text, "")
    assert "5,790 (23.2 KB)" in root and "276 (1.1 KB)" in root
    linear = _row(text, "block1/linear")
    assert "Linear" in linear and "float32[1,32]" in linear and "float32[1,128]" in linear
    assert "kernel: float32[32,128]" in linear and "4,224 (16.9 KB)" in linear
    bn = _row(text, "block1/bn")
    assert "mean: float32[128]" in bn and "var: float32[128]" in bn
    rng = nnx.state(foo, nnx.RngState)
    n_rng = sum(np.size(v[...]) for v in jax.tree.leaves(rng, is_leaf=nnx.is_variable))
    assert f"{n_rng} (" in root
    total = 5790 + 276 + n_rng
    assert re.search(rf"Total Parameters: {total:,} \(", text)


def test_tabulate_layers_model_in_every_mode():
    for mode in (dict(ref=True), dict(hijax=True), dict(hijax=False, ref=False)):
        with nnx.var_defaults(**mode):
            foo = Foo(nnx.Rngs(0))
        before = nnx.graphdef(foo)
        text = _ANSI.sub("", nnx.tabulate(foo, jnp.ones((4, 32)), console_kwargs={"width": 300}))
        assert "5,790 (23.2 KB)" in _row(text, "")
        assert "float32[4,10]" in _row(text, "block2")
        assert nnx.graphdef(foo) == before
        np.testing.assert_array_equal(foo.block1.bn.mean[...], np.zeros(128))


def test_flax_module_paths_compat_and_summary():
    compat = importlib.import_module("nnx.compat")
    assert compat.jit is nnx.jit and compat.vmap is nnx.vmap and compat.scan is nnx.scan
    from nnx.compat import grad, value_and_grad  # noqa: F401  # pyright: ignore[reportMissingImports]

    summary = importlib.import_module("nnx.summary")
    assert summary.tabulate is nnx.tabulate
    from nnx.transforms import general

    assert general.split_inputs is not None
