"""Everything CI checks, in order; the body of ``hatch run test:all`` and ``.ci/run``.

Steps (each in its own hatch environment; the run stops at the first failure):

1. lint:      ruff check, and the import contracts (import-linter) of pyproject.toml
   private:   no sibling package reads private attributes of nnx-core objects
              (tools/check_private_access.py)
2. packaging: build the four wheels, install them one by one into fresh virtual
              environments (and the monorepo editable), check the ``nnx`` namespace
3. typecheck: pyright resolves every ``nnx.<name>`` of the siblings, the four
              source trees have no pyright errors, and the user-style files of
              tests/typing/ type-check as they should (tools/check_typing.py)
4. tests:     each package's tests with only that package and its dependencies
              installed (envs core, transforms, layers, optim), then the cross-package
              tests in tests/ with everything installed (env full; this includes every
              docstring example, tests/test_docs_docstrings.py). The suites of steps 4
              and 6 are independent processes and run ``--jobs`` at a time (default 2),
              each one's output printed whole when it ends
5. docs:      the strict documentation build (``hatch run docs:build``), then headless
              Chromium opens the built site (``hatch run docs:browser``)
6. matrix:    the packages' tests on the other Pythons (3.12, 3.13) and at both ends of
              the JAX range (hatch.toml's ``py`` and ``jaxrange`` matrices); CI runs the
              subset in MATRIX below, ``--matrix`` (``hatch run test:matrix``) all of it

It ends with one line that totals the pytest summaries, e.g.
``total: 412 passed, 0 failed, 3 skipped``.

Usage: ``hatch run test:all [--keep-going] [--only STEP ...] [--matrix] [--jobs N]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEPS: dict[str, list[str]] = {
    "lint": ["full:lint"],
    "private": [],  # runs tools/check_private_access.py in this interpreter
    "packaging": [],  # runs tools/check_packaging.py in this interpreter
    "typecheck": ["full:typecheck", "full:pyright", "full:typing"],
    "core": ["core:test"],
    "transforms": ["transforms:test"],
    "layers": ["layers:test"],
    "optim": ["optim:test"],
    "full": ["full:test"],
    "docs": ["docs:build", "docs:browser"],
    "matrix": [],  # MATRIX, or FULL_MATRIX with --matrix
}
TEST_STEPS = ("core", "transforms", "layers", "optim", "full", "matrix")

# The complete matrix: every package's tests on every Python of the classifiers, and at
# both ends of the JAX range (Python 3.11 with the latest JAX is the `core`... steps above).
PYTHONS = ("3.11", "3.12", "3.13")
JAX_ENDS = ("0.10.0", "0.10.2")
PKGS = ("core", "transforms", "layers", "optim")
FULL_MATRIX = [f"py.py{py}:{pkg}" for py in PYTHONS[1:] for pkg in PKGS] + [
    f"jaxrange.{jax}:{pkg}" for jax in JAX_ENDS[:1] for pkg in PKGS
]
# What `hatch run test:all` (CI) runs of it, to stay under CI's 30 minutes: the two
# fastest suites (nnx-core, nnx-optim: ~1-3 min each on a quiet 2-core machine) on the
# newest Python and the lowest JAX, the other ends of the ranges. nnx-transforms and
# nnx-layers (the slowest suites, 4-6 min each) run on 3.11 with the highest JAX in the
# steps above; their whole matrix is `hatch run test:matrix`.
MATRIX = [
    e for e in FULL_MATRIX if e.endswith((":core", ":optim")) and not e.startswith("py.py3.12")
]


# About how long each suite takes on a quiet 2-core machine (seconds): the pool starts the
# longest first, so that the last to finish is a short one.
_EXPECTED_SECONDS = {"full": 360, "layers": 310, "transforms": 190, "optim": 150, "core": 120}


def _expected_seconds(target: str, step: str) -> int:
    suite = target.split(":")[-1] if step == "matrix" else step  # py.py3.13:core -> core
    return _EXPECTED_SECONDS.get(suite, 60)


def _pythons_on_path(path: str) -> str:
    """PATH with a folder for each Python of PYTHONS that PATH does not already run.

    Hatch and uv look up ``python3.12`` on PATH; pyenv's shims answer only for the
    versions pyenv has selected, so the interpreters' own folders under ``pyenv root``
    are added (``NNX_PYTHONS_DIR`` overrides where to look). Nothing is downloaded.
    """
    extra = []
    root = Path(os.environ.get("NNX_PYTHONS_DIR") or Path.home() / ".pyenv" / "versions")
    for version in PYTHONS:
        found = shutil.which(f"python{version}", path=path)
        if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
            continue
        candidates = sorted(root.glob(f"{version}.*/bin/python{version}"))
        if candidates:
            extra.append(str(candidates[-1].parent))
    return os.pathsep.join([*extra, path])


# pytest's closing line, e.g. "===== 3 failed, 10 passed, 2 skipped in 4.20s ====="
_SUMMARY = re.compile(r"^=+ (?P<body>.*\d.*) in [\d.]+s(?: \([\d:]+\))? =+$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)")


def _hatch() -> list[str]:
    exe = os.environ.get("HATCH_BIN") or shutil.which("hatch")
    if exe:
        return [exe]
    return [sys.executable, "-m", "hatch"]


def _summary_counts(line: str, counts: dict[str, int]) -> dict[str, int]:
    """The counts of pytest's closing line, or ``counts`` unchanged for any other line."""
    match = _SUMMARY.match(_ANSI.sub("", line).strip())
    if not match:
        return counts
    found: dict[str, int] = {}
    for n, what in _COUNT.findall(match["body"]):
        what = "error" if what.startswith("error") else what
        found[what] = found.get(what, 0) + int(n)
    return found


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
            counts = _summary_counts(line, counts)
        sys.stdout.flush()
    return proc.returncode, counts


def _run_parallel(
    targets: list[str], env: dict[str, str], jobs: int, keep_going: bool
) -> list[tuple[str, int, dict[str, int], float]]:
    """Run hatch targets ``jobs`` at a time; each one's output is printed whole when it ends.

    The test suites are independent processes, so on a machine with two cores two of
    them at once take about half the time of one after the other. Without
    ``keep_going``, no target starts after one has failed (those running finish).
    """
    lock = threading.Lock()
    stop = threading.Event()
    results: list[tuple[str, int, dict[str, int], float]] = []

    def one(target: str) -> None:
        if stop.is_set():
            return
        cmd = [*_hatch(), "run", target]
        with lock:
            print(f"\n$ {' '.join(cmd)}  (started; output follows when it ends)", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        took = time.perf_counter() - t0
        counts: dict[str, int] = {}
        for line in proc.stdout.splitlines():
            counts = _summary_counts(line, counts)
        with lock:
            print(f"\n===== output of {target} ({took:.0f}s, exit code {proc.returncode}) =====")
            sys.stdout.write(proc.stdout)
            sys.stdout.flush()
            results.append((target, proc.returncode, counts, took))
            if proc.returncode != 0 and not keep_going:
                stop.set()

    if jobs > 1:
        # Create the environments one at a time first (on a fresh clone none exists yet):
        # two hatch processes creating environments at once would race on the shared
        # installer caches. An environment that exists is left as it is, in a second.
        for env_name in dict.fromkeys(t.split(":")[0] for t in targets):
            code, _ = _run([*_hatch(), "env", "create", env_name], env=env)
            if code != 0:
                return [(t, code, {}, 0.0) for t in targets if t.startswith(f"{env_name}:")]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, targets))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-going", action="store_true", help="run every step")
    parser.add_argument("--only", nargs="+", choices=list(STEPS), help="run only these steps")
    parser.add_argument("--matrix", action="store_true", help="the complete test matrix")
    parser.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("NNX_CI_JOBS") or min(2, os.cpu_count() or 1)),
        help="test suites run at a time (default: 2, or 1 on one core; env NNX_CI_JOBS)",
    )
    args = parser.parse_args(argv)
    STEPS["matrix"] = FULL_MATRIX if args.matrix else MATRIX

    env = dict(os.environ)
    # Steps run their own hatch environments; do not leak this one into them.
    for var in ("VIRTUAL_ENV", "HATCH_ENV_ACTIVE"):
        env.pop(var, None)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bindir)
    env["PATH"] = _pythons_on_path(env["PATH"])
    env["UV_PYTHON_DOWNLOADS"] = "never"  # the matrix uses the machine's Pythons

    totals: dict[str, int] = {}
    failed: list[str] = []
    timings: list[tuple[str, float]] = []

    def count(step: str, target: str, result: int, counts: dict[str, int]) -> None:
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        if step in TEST_STEPS and not counts and result == 0:
            print(f"note: {target!r} printed no pytest summary")

    selected = args.only or list(STEPS)
    # The test steps run as one pool of independent suites, longest first (see _run_parallel).
    tests = [step for step in selected if step in TEST_STEPS] if args.jobs > 1 else []
    for step in selected:
        if step in tests:
            if step != tests[0]:
                continue
            start = time.perf_counter()
            owner = {target: st for st in tests for target in STEPS[st]}
            order = sorted(owner, key=lambda t: -_expected_seconds(t, owner[t]))
            for target, result, counts, took in _run_parallel(
                order, env, args.jobs, args.keep_going
            ):
                count(owner[target], target, result, counts)
                timings.append((target, took))
                if result != 0 and owner[target] not in failed:
                    failed.append(owner[target])
                    print(f"\nFAILED: step {owner[target]!r} ({target}, exit code {result})")
            timings.append((f"tests ({args.jobs} at a time)", time.perf_counter() - start))
            if failed and not args.keep_going:
                break
            continue
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
                t0 = time.perf_counter()
                result, counts = _run([*_hatch(), "run", target], env=env)
                code = code or result
                count(step, target, result, counts)
                if len(STEPS[step]) > 1:
                    timings.append((target, time.perf_counter() - t0))
                if result != 0 and not args.keep_going:
                    break
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
