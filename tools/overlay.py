"""build/overlay/nnx: the four source folders seen as one ``nnx`` package, through symlinks.

At run time ``nnx/__init__.py`` joins the packages' source folders with
``pkgutil.extend_path``. Static tools do not run that code: pyright and grimp (behind
import-linter) find nnx-core's ``nnx/`` and stop there, missing ``nnx.layers`` and the
other siblings of an editable install. Installed wheels share one ``site-packages/nnx``
folder and need nothing of the kind; for the monorepo this script links

    build/overlay/nnx/__init__.py, py.typed, core/  ->  packages/nnx-core/src/nnx/...
    build/overlay/nnx/transforms/                   ->  packages/nnx-transforms/src/nnx/transforms
    build/overlay/nnx/layers/, optim/               ->  ...

Edits to the sources show through at once; rerun only when a package is added. Pyright
finds it through ``[tool.pyright] extraPaths`` of pyproject.toml, import-linter through
tools/lint_imports.py. Usage: ``python tools/overlay.py`` (prints the folder).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "build" / "overlay"
PACKAGES = ("core", "transforms", "layers", "optim")


def make_overlay() -> Path:
    """Create or refresh build/overlay/nnx and return build/overlay."""
    nnx_dir = OVERLAY / "nnx"
    nnx_dir.mkdir(parents=True, exist_ok=True)
    links = {
        "__init__.py": ROOT / "packages/nnx-core/src/nnx/__init__.py",
        "py.typed": ROOT / "packages/nnx-core/src/nnx/py.typed",
        **{p: ROOT / f"packages/nnx-{p}/src/nnx/{p}" for p in PACKAGES},
    }
    for name, target in links.items():
        link = nnx_dir / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        link.symlink_to(os.path.relpath(target, nnx_dir))
    return OVERLAY


if __name__ == "__main__":
    print(make_overlay())
