"""Everything CI checks, in order; the body of ``hatch run test:all`` and ``.ci/run``.

Steps (each in its own hatch environment; the run stops at the first failure):

1. lint:      ruff check, and the import contracts (import-linter) of pyproject.toml
   private:   no sibling package reads private attributes of nnx-core objects
              (tools/check_private_access.py)
2. packaging: build the four wheels, install them one by one into fresh virtual
              environments (and the monorepo editable), check the ``nnx`` namespace
3. typecheck: pyright resolves every ``nnx.<name>`` of the siblings, and the four
              source trees have no pyright errors
4. tests:     each package's tests with only that package and its dependencies
              installed (envs core, transforms, layers, optim), then the cross-package
              tests in tests/ with everything installed (env full)

It ends with one line that totals the pytest summaries, e.g.
``total: 412 passed, 0 failed, 3 skipped``.

Usage: ``hatch run test:all [--keep-going] [--only STEP ...]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEPS: dict[str, list[str]] = {
    "lint": ["full:lint"],
    "private": [],  # runs tools/check_private_access.py in this interpreter
    "packaging": [],  # runs tools/check_packaging.py in this interpreter
    "typecheck": ["full:typecheck", "full:pyright"],
    "core": ["core:test"],
    "transforms": ["transforms:test"],
    "layers": ["layers:test"],
    "optim": ["optim:test"],
    "full": ["full:test"],
}
TEST_STEPS = ("core", "transforms", "layers", "optim", "full")

# pytest's closing line, e.g. "===== 3 failed, 10 passed, 2 skipped in 4.20s ====="
_SUMMARY = re.compile(r"^=+ (?P<body>.*\d.*) in [\d.]+s(?: \([\d:]+\))? =+$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)")


def _hatch() -> list[str]:
    exe = os.environ.get("HATCH_BIN") or shutil.which("hatch")
    if exe:
        return [exe]
    return [sys.executable, "-m", "hatch"]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, dict[str, int]]:
    """Run a command, echoing its output, and pick up pytest's summary counts."""
    print(f"\n$ {' '.join(cmd)}", flush=True)
    counts: dict[str, int] = {}
    with subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            match = _SUMMARY.match(_ANSI.sub("", line).strip())
            if match:
                counts = {}
                for n, what in _COUNT.findall(match["body"]):
                    what = "error" if what.startswith("error") else what
                    counts[what] = counts.get(what, 0) + int(n)
        sys.stdout.flush()
    return proc.returncode, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-going", action="store_true", help="run every step")
    parser.add_argument("--only", nargs="+", choices=list(STEPS), help="run only these steps")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    # Steps run their own hatch environments; do not leak this one into them.
    for var in ("VIRTUAL_ENV", "HATCH_ENV_ACTIVE"):
        env.pop(var, None)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bindir)

    totals: dict[str, int] = {}
    failed: list[str] = []
    timings: list[tuple[str, float]] = []
    for step in args.only or list(STEPS):
        start = time.perf_counter()
        if step == "packaging":
            cmd = [sys.executable, str(ROOT / "tools" / "check_packaging.py")]
            code, _ = _run(cmd, env=dict(os.environ))
        elif step == "private":
            cmd = [sys.executable, str(ROOT / "tools" / "check_private_access.py")]
            code, _ = _run(cmd, env=dict(os.environ))
        else:
            code = 0
            for target in STEPS[step]:
                code, counts = _run([*_hatch(), "run", target], env=env)
                for k, v in counts.items():
                    totals[k] = totals.get(k, 0) + v
                if step in TEST_STEPS and not counts and code == 0:
                    print(f"note: step {step!r} printed no pytest summary")
        timings.append((step, time.perf_counter() - start))
        if code != 0:
            failed.append(step)
            print(f"\nFAILED: step {step!r} (exit code {code})", flush=True)
            if not args.keep_going:
                break

    print("\nsteps: " + ", ".join(f"{s} {t:.0f}s" for s, t in timings))
    if failed:
        print("failed steps: " + ", ".join(failed))
    passed, nfailed = totals.get("passed", 0), totals.get("failed", 0) + totals.get("error", 0)
    others = ", ".join(
        f"{totals[k]} {k}" for k in ("xfailed", "xpassed", "deselected") if totals.get(k)
    )
    if others:
        print(f"also: {others}")
    skipped = f", {totals['skipped']} skipped" if totals.get("skipped") else ""
    # The last line, in the form CI reads: "total: N passed, N failed[, N skipped]".
    print(f"total: {passed} passed, {nfailed} failed{skipped}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
