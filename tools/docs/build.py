"""``hatch run docs:build`` / ``docs:serve``: the strict documentation build.

``build`` writes the site to build/site with ``mkdocs build --strict`` (mkdocs.yml): any
warning fails it, and so do the hooks of tools/docs/hooks.py (a failing python block, a
broken link, a public name without a docstring or without its API entry). ``--serve``
runs ``mkdocs serve`` on http://127.0.0.1:8000 instead. Other arguments go to mkdocs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    serve = "--serve" in argv
    args = [a for a in argv if a != "--serve"]
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    cmd = [sys.executable, "-m", "mkdocs", "serve" if serve else "build", "--strict", *args]
    if not serve and "--clean" not in args:
        cmd.append("--clean")
    start = time.perf_counter()
    print("$ " + " ".join(cmd[1:]), flush=True)
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    if not serve:
        verdict = "passed" if code == 0 else "FAILED"
        print(f"docs build {verdict} in {time.perf_counter() - start:.0f}s: {ROOT / 'build/site'}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
