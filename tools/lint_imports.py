"""Check the import contracts of pyproject.toml ([tool.importlinter]) on the monorepo.

import-linter's graph builder (grimp) reads the ``nnx`` package from one folder, so it
runs on build/overlay (see tools/overlay.py), where the four source folders form one
``nnx`` tree. Arguments are passed to ``lint-imports``. Usage (in hatch env ``full``):
``python tools/lint_imports.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overlay import ROOT, make_overlay  # noqa: E402

if __name__ == "__main__":
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(make_overlay()), env.get("PYTHONPATH")]))
    exe = Path(sys.executable).parent / "lint-imports"  # installed by import-linter
    cmd = [str(exe) if exe.exists() else "lint-imports", "--no-cache", *sys.argv[1:]]
    sys.exit(subprocess.call(cmd, cwd=ROOT, env=env))
