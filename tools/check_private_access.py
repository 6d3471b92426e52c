"""Fail when a sibling package reads private attributes of nnx-core objects.

The import contracts (tools/lint_imports.py) stop ``nnx.core._*`` imports; this check
stops the other way around the public API: ``v._aux``, ``cls._from_raw(...)``,
``getattr(v, "_trace")`` on core objects from nnx-transforms, nnx-layers or nnx-optim.

How: the private attribute names nnx-core defines (its classes' ``__slots__``, private
methods and ``self._x = ...`` assignments) minus those a sibling defines itself (its own
classes may use the same private names on their own objects) are forbidden as attribute
reads ``obj._name`` and as ``getattr``/``hasattr``/``setattr`` string arguments in that
sibling, except on ``self``/``cls``. Usage: ``python tools/check_private_access.py``
(exit status 1 and one line per access when any is found). Wired in tools/run_all.py.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "packages" / "nnx-core" / "src" / "nnx" / "core"
SIBLINGS = ("nnx-transforms", "nnx-layers", "nnx-optim")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined_names(files) -> set[str]:
    """Private attribute names defined by the classes in ``files``."""
    out: set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(
                        item.name
                    ):
                        out.add(item.name)
                    if isinstance(item, ast.Assign):
                        for t in item.targets:
                            if isinstance(t, ast.Name) and t.id == "__slots__":
                                for c in ast.walk(item.value):
                                    if (
                                        isinstance(c, ast.Constant)
                                        and isinstance(c.value, str)
                                        and _private(c.value)
                                    ):
                                        out.add(c.value)
                            elif isinstance(t, ast.Name) and _private(t.id):
                                out.add(t.id)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if (
                        isinstance(t, ast.Attribute)
                        and isinstance(t.value, ast.Name)
                        and t.value.id in ("self", "cls", "obj", "new", "v")
                        and _private(t.attr)
                    ):
                        out.add(t.attr)
    return out


def accesses(path: Path, forbidden: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in forbidden:
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in forbidden
        ):
            found.append(
                f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})"
            )
    return found


def main() -> int:
    core = defined_names(sorted(CORE.glob("*.py")))
    problems = []
    for pkg in SIBLINGS:
        src = ROOT / "packages" / pkg / "src"
        files = sorted(src.rglob("*.py"))
        forbidden = core - defined_names(files)
        for f in files:
            problems += accesses(f, forbidden)
    for p in problems:
        print(f"{p}: private attribute of an nnx-core object; use a public nnx.core name")
    if problems:
        print(f"{len(problems)} private access(es) to nnx-core objects from sibling packages")
        return 1
    print("private access: none from sibling packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
