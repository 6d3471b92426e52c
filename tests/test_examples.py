"""Every program in examples/ runs with one command; here each runs with a small setting.

Each example is a subprocess (as a newcomer would run it), with the nnx source folders
this test process imports nnx from on its PYTHONPATH, so the test works both in the
hatch `full` environment and with a bare PYTHONPATH checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nnx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: int = 240) -> str:
    src_dirs = [str(Path(p).parent) for p in nnx.__path__]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(src_dirs + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("JAX_PLATFORMS", "cpu")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_example_is_tested():
    tested = {
        n.removeprefix("test_").removesuffix("_example") + ".py"
        for n in globals()
        if n.startswith("test_") and n.endswith("_example")
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested


def test_train_digits_example(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = run_example("train_digits.py", "--epochs", "2", "--no-progress", "--out", str(tmp_path))
    epochs = re.findall(
        r"^epoch +(\d+): train loss ([\d.]+) .*test loss ([\d.]+) acc ([\d.]+)$", out, re.M
    )
    assert [int(e[0]) for e in epochs] == [1, 2]
    assert float(epochs[1][1]) < float(epochs[0][1])  # training loss goes down
    m = re.search(r"^test accuracy: ([\d.]+)", out, re.M)
    assert m is not None
    accuracy = float(m[1])
    assert accuracy >= 0.85, out  # two epochs; the full demo (15) reaches 0.98-0.99
    restored = re.search(
        r"^restored checkpoint: test accuracy ([\d.]+), optimizer step (\d+)", out, re.M
    )
    assert restored is not None
    assert float(restored[1]) == pytest.approx(accuracy, abs=1e-4)
    m = re.search(r"\(optimizer step (\d+)\)", out)
    assert m is not None
    step = int(m[1])
    assert int(restored[2]) == step > 0  # the optimizer's state came back too
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ocp = pytest.importorskip("orbax.checkpoint")
    meta = ocp.StandardCheckpointer().metadata(tmp_path / "checkpoint").item_metadata.tree
    assert meta["0"]["conv1"]["kernel"]["value"].shape == (3, 3, 1, 32)
    assert meta["0"]["linear2"]["kernel"]["value"].shape == (128, 10)


def _number(pattern: str, out: str) -> float:
    match = re.search(pattern, out, re.M)
    assert match, f"{pattern!r} not in output:\n{out}"
    return float(match[1])


def test_scan_over_layers_example():
    out = run_example("scan_over_layers.py", "--layers", "4", "--steps", "60")
    assert "blocks.linear.kernel: (4, 32, 32)" in out
    assert _number(r"max \|scan - python loop\| = (\S+)", out) < 1e-4
    first = _number(r"^loss ([\d.]+) ->", out)
    last = _number(r"-> ([\d.]+) after 60 steps", out)
    assert last < 0.5 * first


def test_lora_surgery_example():
    out = run_example("lora_surgery.py", "--pretrain-steps", "100", "--finetune-steps", "100")
    start = _number(r"fine-tuned LoRA on task B: loss ([\d.]+) ->", out)
    end = _number(r"fine-tuned LoRA on task B: loss [\d.]+ -> ([\d.]+)", out)
    assert end < 0.5 * start
    assert "pretrained weights unchanged: True" in out
    assert _number(r"surgery: (\d+) LoRA parameters", out) == (4 + 64) * 4 + (64 + 2) * 4


def test_hijax_train_example():
    out = run_example("hijax_train.py", "--steps", "100")
    assert "model.linear1.kernel.hijax = True" in out
    assert "optimizer.step = 100;" in out  # written by plain jax.jit, seen outside
    first = _number(r"^loss ([\d.]+) ->", out)
    assert _number(r"-> ([\d.]+) \(eval mode\)", out) < 0.5 * first


def test_functional_api_example():
    out = run_example("functional_api.py", "--steps", "80")
    assert "before update: model.count = 0" in out
    assert "after update:  model.count = 1" in out
    assert "params: ['b', 'w'], counts: ['count']" in out
    assert "model.count = 81;" in out  # the counter went through 80 jitted steps
    assert _number(r"max \|w - true_w\| = ([\d.]+)", out) < 0.05


def test_sharded_training_example(tmp_path):
    out = run_example(
        "sharded_training.py", "--devices", "8", "--steps", "30", "--ckpt-dir", str(tmp_path)
    )
    assert "8 devices, mesh {'data': 2, 'model': 4}" in out
    # each kernel split over `model` as its sharding_names say, and still so after training
    assert "linear1.kernel: (16, 64) as P(None, 'model'), per-device shard (16, 16)" in out
    assert "linear2.kernel: (64, 4) as P('model', None), per-device shard (16, 4)" in out
    assert "after training, linear1.kernel: (16, 64) as P(None, 'model')" in out
    assert "optimizer moments of linear1.kernel: 2, sharded as P(None, 'model')" in out
    # the partitioned program computes what one device computes
    assert _number(r"max \|sharded - one device\| over the parameters = (\S+)", out) < 1e-5
    assert _number(r"max \|loss difference\| = (\S+)", out) < 1e-5
    first = _number(r"^loss ([\d.]+) ->", out)
    assert _number(r"-> ([\d.]+) after 30 steps", out) < 0.5 * first
    # an orbax checkpoint saved on the mesh comes back onto its shards, optimizer included
    assert (
        "restored checkpoint, linear1.kernel: (16, 64) as P(None, 'model'), per-device shard (16, 16)"
        in out
    )
    assert _number(r"max \|restored - trained\| = (\S+),", out) == 0.0
    assert "optimizer step 30" in out


def test_multihost_training_example():
    out = run_example("multihost_training.py", "--processes", "2", "--steps", "20")
    for i in (0, 1):
        assert (
            f"[{i}] 2 processes, 8 devices, mesh {{'data': 2, 'model': 4}}, 4 devices here" in out
        )
        # each process holds its 4 of the 8 shards of a kernel split over `model`
        assert (
            f"[{i}] linear1.kernel (16, 64) as P(None, 'model'), 4 shards here of (16, 16)" in out
        )
        assert _number(rf"^\[{i}\] .*max \|parameters - one device\| = (\S+);", out) < 1e-5
        assert _number(rf"^\[{i}\] .*max \|loss - one device\| = (\S+)$", out) < 1e-5
        first = _number(rf"^\[{i}\] loss ([\d.]+) ->", out)
        assert _number(rf"^\[{i}\] loss [\d.]+ -> ([\d.]+);", out) < 0.2 * first
    assert "all 2 processes report the same final loss: True" in out


def test_raw_array_state_example():
    out = run_example("raw_array_state.py", "--steps", "60")
    assert "raw-array parameters: ['linear1/b', 'linear1/w', 'linear2/b', 'linear2/w']" in out
    # still plain arrays after training; the counter written inside nnx.jit came out
    assert "model.linear1.w is a jax.Array: True; model.steps = 60; optimizer.step = 60" in out
    first = _number(r"^loss ([\d.]+) ->", out)
    assert _number(r"-> ([\d.]+) after 60 steps", out) < 0.5 * first
    # the same arrays trained by jax.grad and optax.sgd by hand
    assert _number(r"max \|nnx - jax.grad/optax by hand\| = (\S+)", out) < 1e-5


def test_hijax_optimizer_example():
    out = run_example("hijax_optimizer.py", "--steps", "60")
    # the tree map over nnx.state(model, nnx.Param) handed out Params, never storage cells
    assert "momentum leaves: ['OptState'], hijax = True" in out
    first = _number(r"^loss ([\d.]+) ->", out)
    assert _number(r"-> ([\d.]+) after 60 steps", out) < 0.5 * first
    # the in-place updates under plain jax.jit match optax.sgd(momentum) on the same arrays
    assert _number(r"max \|nnx - optax.sgd\(momentum\)\| = (\S+)", out) < 1e-5
