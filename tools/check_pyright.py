"""Check that pyright resolves the flat ``nnx`` namespace: ``nnx.Linear`` and friends.

``nnx/__init__.py`` exposes the siblings' names to type checkers through
``if TYPE_CHECKING: from nnx.layers import *``. This writes a small file that uses every
public name of every installed sibling through ``nnx.<name>`` and runs pyright on it;
it fails if pyright reports an error or falls back to the runtime ``__getattr__`` (a
``ModuleType | Any`` type) for any of them.

    python tools/check_pyright.py                    # the monorepo (hatch run full:typecheck)
    python tools/check_pyright.py --python VENV/bin/python --isolated
                                                     # installed wheels (check_packaging.py)

Pyright does not model ``pkgutil.extend_path``, so with editable installs (one ``src``
folder per package) it would not find ``nnx.layers`` next to nnx-core's ``nnx/``. For the
monorepo it reads build/overlay (tools/overlay.py: the four source trees linked into one
``nnx`` tree), which ``[tool.pyright] extraPaths`` of pyproject.toml points at. Installed
wheels share one ``site-packages/nnx`` folder and need nothing of the kind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overlay import ROOT, make_overlay  # noqa: E402

SIBLINGS = ("transforms", "layers", "optim")

_LIST_NAMES = f"""
import importlib, json, importlib.util
out = {{}}
for sub in {SIBLINGS!r}:
    if importlib.util.find_spec("nnx." + sub) is not None:
        out[sub] = list(importlib.import_module("nnx." + sub).__all__)
print(json.dumps(out))
"""


def _pyright() -> list[str]:
    exe = shutil.which("pyright")
    return [exe] if exe else [sys.executable, "-m", "pyright"]


def check(python: str, *, isolated: bool) -> int:
    names = json.loads(
        subprocess.run(
            [python, "-I", "-c", _LIST_NAMES],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        ).stdout
    )
    uses = [(sub, name) for sub, all_ in names.items() for name in sorted(all_)]
    if not uses:
        print("pyright: no sibling package with public names is installed; nothing to check")
        return 0
    with tempfile.TemporaryDirectory(prefix="nnx-pyright-") as tmp:
        probe = Path(tmp) / "probe.py"
        lines = ["import nnx", ""]
        lines += [f"reveal_type(nnx.{name})  # {sub}" for sub, name in uses]
        probe.write_text("\n".join(lines) + "\n")
        if isolated:  # installed wheels: no monorepo config, only the interpreter's packages
            config = Path(tmp) / "pyrightconfig.json"
            config.write_text(json.dumps({"pythonVersion": "3.11"}))
        else:
            make_overlay()
            config = ROOT / "pyproject.toml"
        cmd = [*_pyright(), "--outputjson", "--pythonpath", python, "-p", str(config), str(probe)]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(result.stdout + result.stderr)
        print("pyright: could not run")
        return 1
    problems = []
    for diag in report.get("generalDiagnostics", []):
        line = diag["range"]["start"]["line"]
        where = uses[line - 2] if 2 <= line < 2 + len(uses) else None
        if diag["severity"] == "error":
            problems.append(f"error: {diag['message']} ({where})")
        elif "ModuleType | Any" in diag["message"] or '"Unknown"' in diag["message"]:
            problems.append(f"not resolved statically: {diag['message']}")
    for p in problems:
        print("pyright:", p)
    status = "FAILED" if problems else "ok"
    print(
        f"pyright: nnx.<name> for {len(uses)} sibling names ({', '.join(sorted(names))}): {status}"
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to check against")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="ignore the monorepo's pyright config (for installed wheels)",
    )
    args = parser.parse_args(argv)
    return check(args.python, isolated=args.isolated)


if __name__ == "__main__":
    sys.exit(main())
