"""The guides in docs/guides/ are executable documentation.

Each guide's ```python blocks run in order in one namespace (a reader pasting them into
one session), in a fresh process with 8 simulated CPU devices, and every
`print(...)  # expected` line must print exactly what its comment says. Temporary files
(checkpoints) go to pytest's tmp_path.
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
GUIDES = ROOT / "docs" / "guides"

RUNNER = r"""
import contextlib, io, re, sys
text = open(sys.argv[1]).read()
blocks = [m["body"] for m in re.finditer(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", text, re.M | re.S)
          if m["lang"] == "python"]
expected_re = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<out>.+?)\s*$")
ns = {"__name__": "guide"}
for i, body in enumerate(blocks):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(body, f"<{sys.argv[1]} python block {i}>", "exec"), ns)
    printed = out.getvalue().splitlines()
    expected = [m["out"] for line in body.splitlines() if (m := expected_re.match(line))]
    if expected and printed != expected:
        raise SystemExit(f"block {i} printed {printed!r}, the guide says {expected!r}")
print(f"ran {len(blocks)} blocks")
"""


def run_guide(name: str, tmp_path: Path) -> str:
    src_dirs = [str(Path(p).parent) for p in nnx.__path__]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(src_dirs + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["TMPDIR"] = str(tmp_path)  # tempfile.mkdtemp() in a guide lands here
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(GUIDES / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


def n_blocks(name: str) -> int:
    text = (GUIDES / name).read_text()
    return len(re.findall(r"^```python$", text, re.M))


def test_sharding_guide_runs(tmp_path):
    assert n_blocks("sharding.md") >= 8
    out = run_guide("sharding.md", tmp_path)
    assert f"ran {n_blocks('sharding.md')} blocks" in out


def test_checkpointing_guide_runs(tmp_path):
    pytest.importorskip("orbax.checkpoint")
    assert n_blocks("checkpointing.md") >= 8
    out = run_guide("checkpointing.md", tmp_path)
    assert f"ran {n_blocks('checkpointing.md')} blocks" in out


def test_typing_guide_runs(tmp_path):
    assert n_blocks("typing.md") >= 4
    out = run_guide("typing.md", tmp_path)
    assert f"ran {n_blocks('typing.md')} blocks" in out


@pytest.mark.parametrize(
    "name",
    ["tour.md", "transforms.md", "migrating-from-flax.md", "variable-modes.md", "performance.md"],
)
def test_guide_runs(name, tmp_path):
    out = run_guide(name, tmp_path)
    assert f"ran {n_blocks(name)} blocks" in out
