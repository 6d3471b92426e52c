"""Packaging check: the four distributions build, install side by side, and share ``nnx``.

1. Build each package (sdist, then the wheel from that sdist) with ``uv build``.
2. Check each wheel's files: nnx-core ships ``nnx/__init__.py`` and ``nnx/core/``; a
   sibling ships only ``nnx/<pkg>/`` (never ``nnx/__init__.py``); every one ships its
   ``_version.py`` and ``py.typed``; the wheel's version is the one in ``_version.py``;
   every wheel carries the Apache-2.0 ``LICENSE`` (``.dist-info/licenses/``, identical to
   the repository's) and declares its licence expression and project URLs.
3. In a fresh virtual environment, install the nnx-core wheel alone and probe the
   namespace: core names resolve, ``nnx.Linear`` raises an ``AttributeError`` that names
   ``nnx-layers``, and ``dir(nnx)`` lists only what is installed. Then add the
   nnx-transforms and nnx-layers wheels, then nnx-optim, probing after each step.
   Siblings' ``nnx-core`` requirement is met by the wheel already installed, so nothing
   named nnx-* is ever fetched from an index.
4. Repeat 3 with editable installs of the monorepo's packages.
5. Run pyright against the environment with all four wheels (tools/check_pyright.py),
   and the user-style files of tests/typing/ against it (tools/check_typing.py).

Needs ``uv`` (and ``pyright`` for step 5) on PATH or importable: ``hatch run test:all``
provides both. Usage: ``python tools/check_packaging.py [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "transforms", "layers", "optim")
# One name per sibling that a newcomer reaches for first.
LANDMARKS = {"transforms": "jit", "layers": "Linear", "optim": "Optimizer"}

# Runs inside the environment under test; prints one JSON report.
PROBE = r"""
import importlib, importlib.metadata as md, importlib.util, json, sys
installed = set(sys.argv[1].split(",")) if sys.argv[1] else set()
landmarks = json.loads(sys.argv[2])
fails, notes = [], []
import nnx, nnx.core
d = set(dir(nnx))
for name in nnx.core.__all__:
    if getattr(nnx, name, None) is not getattr(nnx.core, name):
        fails.append(f"nnx.{name} is not nnx.core.{name}")
    if name not in d:
        fails.append(f"{name!r} (nnx-core) missing from dir(nnx)")
if "Variable" in nnx.core.__all__:
    nnx.Variable
else:
    notes.append("nnx.core does not export Variable yet")
for sub, landmark in landmarks.items():
    dist = "nnx-" + sub
    if sub in installed:
        mod = importlib.import_module("nnx." + sub)
        if getattr(nnx, sub) is not mod:
            fails.append(f"nnx.{sub} is not the module nnx.{sub}")
        for name in mod.__all__:
            if getattr(nnx, name, None) is not getattr(mod, name, object()):
                fails.append(f"nnx.{name} is not nnx.{sub}.{name}")
            if name not in dir(nnx):
                fails.append(f"{name!r} ({dist}) missing from dir(nnx)")
        if landmark not in mod.__all__:
            notes.append(f"nnx.{sub} does not export {landmark} yet")
        version = importlib.import_module(f"nnx.{sub}._version").__version__
        if getattr(mod, "__version__", None) != version:
            fails.append(f"nnx.{sub}.__version__ is not {version!r}")
        if md.version(dist) != version:
            fails.append(f"{dist}: metadata version {md.version(dist)} != _version.py {version}")
    else:
        if importlib.util.find_spec("nnx." + sub) is not None:
            fails.append(f"nnx.{sub} is importable but {dist} is not installed")
        for name in (landmark, sub):
            try:
                getattr(nnx, name)
            except AttributeError as e:
                if dist not in str(e):
                    fails.append(f"nnx.{name}: error does not name {dist}: {e}")
            else:
                fails.append(f"nnx.{name} resolved although {dist} is not installed")
            if name in dir(nnx):
                fails.append(f"{name!r} in dir(nnx) although {dist} is not installed")
core_version = importlib.import_module("nnx.core._version").__version__
if getattr(nnx.core, "__version__", None) != core_version:
    fails.append(f"nnx.core.__version__ is not {core_version!r}")
if md.version("nnx-core") != core_version:
    fails.append(f"nnx-core: metadata version {md.version('nnx-core')} != {core_version}")
print(json.dumps({"fails": fails, "notes": notes, "file": nnx.__file__,
                  "dists": sorted(d.metadata["Name"] for d in md.distributions()
                                  if d.metadata["Name"].startswith("nnx-"))}))
"""


class CheckFailed(Exception):
    pass


def _uv() -> list[str]:
    exe = shutil.which("uv")
    if exe:
        return [exe]
    try:
        from uv import find_uv_bin  # the `uv` package on PyPI

        return [find_uv_bin()]
    except ImportError:
        raise CheckFailed("uv is needed: pip install uv") from None


def _run(cmd: list[str | Path], **kw) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise CheckFailed(f"$ {' '.join(map(str, cmd))}\n{result.stdout}{result.stderr}")
    return result


def _declared_version(pkg: str) -> str:
    text = (ROOT / f"packages/nnx-{pkg}/src/nnx/{pkg}/_version.py").read_text()
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not match:
        raise CheckFailed(f"no __version__ in nnx/{pkg}/_version.py")
    return match[1]


def build(dist: Path) -> dict[str, Path]:
    wheels = {}
    for pkg in PACKAGES:
        _run([*_uv(), "build", "--quiet", "--out-dir", dist, ROOT / "packages" / f"nnx-{pkg}"])
        version = _declared_version(pkg)
        wheel = dist / f"nnx_{pkg}-{version}-py3-none-any.whl"
        if not wheel.exists():
            found = sorted(p.name for p in dist.glob(f"nnx_{pkg}-*.whl"))
            raise CheckFailed(f"expected {wheel.name} (version from _version.py), got {found}")
        if not (dist / f"nnx_{pkg}-{version}.tar.gz").exists():
            raise CheckFailed(f"no sdist for nnx-{pkg}")
        wheels[pkg] = wheel
    print(f"built: {', '.join(w.name for w in wheels.values())}")
    return wheels


def check_wheel_files(pkg: str, wheel: Path) -> None:
    names = [n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n]
    own = f"nnx/{pkg}/"
    required = {f"{own}__init__.py", f"{own}_version.py", f"{own}py.typed"}
    # nnx-core owns the flat namespace and its generated table of sibling names
    allowed_outside = (
        {"nnx/__init__.py", "nnx/_known.py", "nnx/py.typed"} if pkg == "core" else set()
    )
    required |= allowed_outside
    problems = [f"missing {n}" for n in sorted(required - set(names))]
    problems += [
        f"unexpected {n}"
        for n in names
        if not (n.startswith(own) or n in allowed_outside) or "__pycache__" in n or "/tests/" in n
    ]
    metadata = (
        zipfile.ZipFile(wheel)
        .read(
            next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
        )
        .decode()
    )
    license_file = next(
        (n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/licenses/LICENSE")),
        None,
    )
    if license_file is None:
        problems.append("no .dist-info/licenses/LICENSE")
    elif zipfile.ZipFile(wheel).read(license_file) != (ROOT / "LICENSE").read_bytes():
        problems.append("its LICENSE differs from the repository's LICENSE")
    if not re.search(r"^License-Expression: Apache-2\.0$", metadata, re.M):
        problems.append("METADATA has no License-Expression: Apache-2.0")
    for label in ("Homepage", "Documentation", "Source", "Changelog"):
        if not re.search(rf"^Project-URL: {label}, https://", metadata, re.M):
            problems.append(f"METADATA has no Project-URL {label}")
    if pkg != "core" and not re.search(r"^Requires-Dist: nnx-core\b.*<", metadata, re.M):
        problems.append("does not declare a bounded range of nnx-core")
    if problems:
        raise CheckFailed(f"{wheel.name}: " + "; ".join(problems))


def probe(python: Path, installed: list[str], label: str, *, editable: bool) -> None:
    subs = [p for p in installed if p != "core"]
    result = _run(
        [python, "-I", "-c", PROBE, ",".join(subs), json.dumps(LANDMARKS)],
        cwd=tempfile.gettempdir(),
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected_file = ROOT / "packages/nnx-core/src/nnx/__init__.py"
    if editable != (Path(report["file"]).resolve() == expected_file.resolve()):
        report["fails"].append(f"nnx was imported from {report['file']}")
    if report["dists"] != sorted(f"nnx-{p}" for p in installed):
        report["fails"].append(f"installed distributions are {report['dists']}")
    for note in report["notes"]:
        print(f"  note: {note}")
    if report["fails"]:
        raise CheckFailed(f"{label}:\n  " + "\n  ".join(report["fails"]))
    print(f"  ok: {label}")


def check_installs(tmp: Path, wheels: dict[str, Path], *, editable: bool) -> Path:
    kind = "editable" if editable else "wheels"
    venv = tmp / f"venv-{kind}"
    _run([*_uv(), "venv", "--quiet", "--python", sys.executable, venv])
    python = venv / "bin" / "python"
    print(f"{kind}: fresh virtual environment {venv}")
    installed: list[str] = []
    for step in (["core"], ["transforms", "layers"], ["optim"]):
        if editable:
            args = [a for p in step for a in ("--editable", str(ROOT / f"packages/nnx-{p}"))]
        else:
            args = [str(wheels[p]) for p in step]
        _run([*_uv(), "pip", "install", "--quiet", "--python", python, *args])
        installed += step
        probe(
            python,
            installed,
            f"{kind}: {' + '.join('nnx-' + p for p in installed)}",
            editable=editable,
        )
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-pyright", action="store_true", help="skip step 5")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="nnx-packaging-"))
    try:
        wheels = build(tmp / "dist")
        for pkg, wheel in wheels.items():
            check_wheel_files(pkg, wheel)
        print("wheel contents: ok")
        python = check_installs(tmp, wheels, editable=False)
        check_installs(tmp, wheels, editable=True)
        if not args.no_pyright:
            sys.path.insert(0, str(ROOT / "tools"))
            import check_pyright

            if check_pyright.check(str(python), isolated=True) != 0:
                raise CheckFailed("pyright does not resolve the nnx namespace of the wheels")
            import check_typing

            failures = check_typing.check(sorted(check_typing.TYPING_DIR.glob("*.py")), str(python))
            for failure in failures:
                print(f"typing (wheels): {failure}")
            if failures:
                raise CheckFailed("the user-style files of tests/typing/ fail against the wheels")
            print("typing (wheels): tests/typing/ expectations hold")
    except CheckFailed as e:
        print(f"packaging check FAILED: {e}")
        print(f"(files kept in {tmp})")
        return 1
    if args.keep:
        print(f"(files kept in {tmp})")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"packaging check passed in {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
