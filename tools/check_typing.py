"""Check the user-style files in tests/typing/ with pyright, as an editor would.

Each file is ordinary user code. Three kinds of lines:

- a line ending in ``# error`` must get at least one pyright error (a wrong argument
  count to a jitted function, a Linear assigned to an ``int``, ...);
- ``reveal_type(expr)  # reveal: TEXT`` must reveal a type whose text contains TEXT;
- every other line must get no error at all (no false errors on correct code).

    python tools/check_typing.py              # the monorepo, through build/overlay
    python tools/check_typing.py --python VENV/bin/python   # another environment

With ``--python`` the files are checked from a temporary folder, without the monorepo's
pyright settings: only what that interpreter has installed (the wheels, as a user's
editor sees them; tools/check_packaging.py runs it so).

Exit status 0 when every expectation holds; otherwise each failure is printed as
``file:line: what was expected / what pyright said``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overlay import ROOT, make_overlay  # noqa: E402

TYPING_DIR = ROOT / "tests" / "typing"
_REVEAL = re.compile(r"^reveal_type\(.*#\s*reveal:\s*(?P<text>.+?)\s*$")
_ERROR = re.compile(r"#\s*error\s*$")
_REVEALED = re.compile(r'^Type of ".*" is "(?P<type>.*)"$', re.S)


def _pyright() -> list[str]:
    exe = shutil.which("pyright")
    return [exe] if exe else [sys.executable, "-m", "pyright"]


def expectations(path: Path) -> tuple[set[int], dict[int, str]]:
    errors, reveals = set(), {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if _ERROR.search(line):
            errors.add(i)
        elif m := _REVEAL.search(line):
            reveals[i] = m["text"]
    return errors, reveals


def _run_pyright(files: list[Path], python: str | None) -> dict | str:
    """Pyright's JSON report with each diagnostic's file mapped back to ``files``."""
    cmd = [*_pyright(), "--outputjson"]
    if not python:
        result = subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, cwd=ROOT)
        back = {str(f.resolve()): str(f.resolve()) for f in files}
    else:  # an installed environment: no monorepo config, only the interpreter's packages
        with tempfile.TemporaryDirectory(prefix="nnx-typing-") as tmp:
            config = Path(tmp) / "pyrightconfig.json"
            config.write_text(json.dumps({"pythonVersion": "3.11", "typeCheckingMode": "standard"}))
            copies = []
            for f in files:
                copy = Path(tmp) / f.name
                shutil.copyfile(f, copy)
                copies.append(copy)
            cmd += ["--pythonpath", python, "-p", str(config)]
            result = subprocess.run(
                [*cmd, *map(str, copies)], capture_output=True, text=True, cwd=tmp
            )
            back = {str(c.resolve()): str(f.resolve()) for c, f in zip(copies, files)}
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return f"pyright did not run: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    for diag in report.get("generalDiagnostics", []):
        name = str(Path(diag["file"]).resolve())
        diag["file"] = back.get(name, name)
    return report


def check(files: list[Path], python: str | None) -> list[str]:
    """The failed expectations of ``files`` (empty when all hold).

    Args:
      files: user-style files marked as the module docstring describes.
      python: an interpreter whose installed packages pyright reads, or None for the
        monorepo's source trees (build/overlay).
    """
    report = _run_pyright(files, python)
    if isinstance(report, str):
        return [report]
    by_file: dict[str, dict[int, list[dict]]] = {}
    for diag in report.get("generalDiagnostics", []):
        line = diag["range"]["start"]["line"] + 1
        by_file.setdefault(diag["file"], {}).setdefault(line, []).append(diag)
    failures = []
    for path in files:
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        errors, reveals = expectations(path)
        diags = by_file.get(str(path.resolve()), {})
        for line, found in sorted(diags.items()):
            errs = [d for d in found if d["severity"] == "error"]
            if errs and line not in errors:
                failures.append(f"{rel}:{line}: unexpected error: {errs[0]['message']}")
        for line in sorted(errors):
            if not any(d["severity"] == "error" for d in diags.get(line, [])):
                failures.append(f"{rel}:{line}: expected an error, pyright reported none")
        for line, text in sorted(reveals.items()):
            shown = [
                m["type"]
                for d in diags.get(line, [])
                if d["severity"] == "information" and (m := _REVEALED.match(d["message"]))
            ]
            if not shown:
                failures.append(f"{rel}:{line}: no reveal_type output")
            elif text not in shown[0]:
                failures.append(f"{rel}:{line}: expected a type with {text!r}, got {shown[0]!r}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="interpreter whose site-packages pyright reads")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    if not args.python:
        make_overlay()
    files = [f.resolve() for f in args.files] or sorted(TYPING_DIR.glob("*.py"))
    failures = check(files, args.python)
    for failure in failures:
        print(failure)
    print(f"typing: {len(files)} files, {len(failures)} failed expectations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
