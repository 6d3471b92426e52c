"""Each package's README is executable documentation, like the root README.

Per package, every ```python block runs, in order, in one fresh namespace, and each
`print(...)  # expected` line must print exactly what its comment says. Links to files
in the repository must resolve.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import nnx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nnx-core", "nnx-transforms", "nnx-layers", "nnx-optim")
BLOCK = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<out>.+?)\s*$")


def _readme(pkg: str) -> tuple[Path, str]:
    path = ROOT / "packages" / pkg / "README.md"
    return path, path.read_text()


@pytest.fixture
def restore_modes():
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_python_blocks_run_in_order_and_print_what_they_say(pkg, restore_modes):
    _, text = _readme(pkg)
    python = [m["body"] for m in BLOCK.finditer(text) if m["lang"] == "python"]
    assert python, f"{pkg}/README.md shows no example"
    ns: dict = {"__name__": f"readme_{pkg}"}
    for i, body in enumerate(python):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, f"<{pkg}/README.md python block {i}>", "exec"), ns)
        printed = out.getvalue().splitlines()
        position = 0
        for line in body.splitlines():
            if not (m := EXPECTED.match(line)):
                continue
            want = m["out"]
            hits = [j for j in range(position, len(printed)) if printed[j].strip() == want]
            assert hits, f"{pkg} block {i}: expected a line {want!r}, printed:\n{out.getvalue()}"
            position = hits[0] + 1


@pytest.mark.parametrize("pkg", PACKAGES)
def test_links_to_files_in_the_repository_resolve(pkg):
    path, text = _readme(pkg)
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (path.parent / target).exists(), f"{pkg}/README.md: broken link {target}"
