"""Run the code cells of a seed document, in order, in one namespace.

The seeds (``../shared/seeds``) are MyST notebooks written against ``from flax import
nnx``. This module extracts their ```` ```{code-cell} ```` blocks, applies the renames
the seeds' README asks for, and executes them like a notebook kernel would: each cell
once, in order, its stdout captured, an exception recorded instead of stopping the run.

Example::

    nb = Notebook.load("000_49de18eaf9d64826.txt")
    result = nb.run("def increment")   # runs every cell up to the first containing it
    assert "[2] = " in result.out

The seed files are read from ``<repo>/../shared/seeds`` when that folder exists (the
spec as it is in the workspace) and from the committed copy in ``cells/`` otherwise (a
clean CI clone); ``test_seed_copies.py`` checks that both agree.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED_SEEDS = REPO.parent / "shared" / "seeds"
COPIED_SEEDS = HERE / "cells"

# The seeds' README: `from flax import nnx` reads `import nnx`; seed 001 uses JAX's
# pre-rename names of array refs.
RENAMES: list[tuple[str, str]] = [
    ("from flax import nnx", "import nnx"),
    ("jax.experimental.mutable_array", "jax.new_ref"),
    ("jax.experimental.MutableArray", "jax.Ref"),
]

_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(?P<body>.*?)^```\s*$", re.M | re.S)
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")


def seed_path(name: str) -> Path:
    shared = SHARED_SEEDS / name
    return shared if shared.is_file() else COPIED_SEEDS / name


@dataclass
class Cell:
    index: int
    source: str  # after RENAMES
    tags: tuple[str, ...] = ()

    @property
    def skipped(self) -> bool:
        return "skip-execution" in self.tags


def extract_cells(text: str) -> list[Cell]:
    """The code cells of a MyST notebook, with their `:tags:` options parsed."""
    cells = []
    for match in _CELL.finditer(text):
        lines = match["body"].splitlines()
        tags: tuple[str, ...] = ()
        while lines and (opt := _OPTION.match(lines[0])):
            if opt["key"] == "tags":
                tags = tuple(t.strip(" '\"") for t in opt["value"].strip("[]").split(","))
            lines.pop(0)
        source = "\n".join(lines) + "\n"
        for old, new in RENAMES:
            source = source.replace(old, new)
        cells.append(Cell(len(cells), source, tags))
    return cells


def uncomment(source: str) -> str:
    """A commented-out cell (seed 002's "scan over layers") as code: `# ` removed."""
    lines = []
    for line in source.splitlines():
        if line.startswith("# TODO"):
            continue
        lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    return "\n".join(lines) + "\n"


@dataclass
class Result:
    cell: Cell
    out: str
    error: BaseException | None
    ns: dict[str, Any]
    tb: str = ""
    value: Any = None  # the value of a final expression (what a notebook would display)

    def ok(self) -> Result:
        """Self, after failing the test with the cell's traceback if the cell raised."""
        if self.error is not None:
            raise AssertionError(
                f"seed cell {self.cell.index} raised {type(self.error).__name__}: "
                f"{self.error}\n--- cell ---\n{self.cell.source}--- traceback ---\n{self.tb}"
                f"--- stdout ---\n{self.out}"
            ) from self.error
        return self


def _missing(result: Result) -> str | None:
    import nnx

    if isinstance(result.error, nnx.MissingPackageError):
        return str(result.error)
    if "is provided by the" in result.out and "distribution, which is not installed" in result.out:
        return result.out.strip()
    return None


def fail_if_package_missing(result: Result, earlier: list[Result]) -> None:
    """The root tests run with every package installed: a missing one is a failure."""
    import pytest

    if (why := _missing(result)) is not None:
        pytest.fail(f"a sibling package is missing in the full environment: {why}")
    if result.error is not None:
        for prev in earlier:
            if prev.cell.index < result.cell.index and (why := _missing(prev)):
                pytest.fail(f"an earlier cell found a sibling package missing: {why}")


@dataclass
class Notebook:
    name: str
    cells: list[Cell]
    ns: dict[str, Any] = field(default_factory=dict)
    results: dict[int, Result] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str) -> Notebook:
        return cls(name, extract_cells(seed_path(name).read_text()))

    def find(self, marker: str) -> Cell:
        """The first cell whose source contains `marker`."""
        for cell in self.cells:
            if marker in cell.source:
                return cell
        raise LookupError(f"no cell of {self.name} contains {marker!r}")

    def run(self, marker: str) -> Result:
        """Run every cell up to the one containing `marker` (each at most once).

        The root tests run with every distribution installed, so a cell that meets a
        ``MissingPackageError`` (here or in an earlier cell the target depends on) fails
        the test, naming the distribution.
        """
        target = self.find(marker)
        result = self.run_index(target.index)
        assert result is not None, f"cell {target.index} of {self.name} is skip-execution"
        fail_if_package_missing(result, [self.results[i] for i in sorted(self.results)])
        return result

    def exec(self, cell: Cell, source: str) -> Result:
        """Execute `source` as cell `cell`: stdout captured, exceptions recorded."""
        filename = f"<{self.name} cell {cell.index}>"
        tree = ast.parse(source, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(cast(ast.Expr, tree.body.pop()).value)
        out = io.StringIO()
        error, tb, value = None, "", None
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(tree, filename, "exec"), self.ns)
                if last is not None:
                    value = eval(compile(last, filename, "eval"), self.ns)
            except Exception as e:  # a notebook kernel keeps going too
                error, tb = e, traceback.format_exc()
        return Result(cell, out.getvalue(), error, self.ns, tb, value)

    def run_source(self, marker: str, source: str) -> Result:
        """Run the cells before the one containing `marker`, then `source` in its place."""
        target = self.find(marker)
        if target.index:
            self.run_index(target.index - 1)
        result = self.exec(target, source)
        self.results[target.index] = result
        return result

    def run_index(self, index: int) -> Result | None:
        for cell in self.cells[: index + 1]:
            if cell.index not in self.results and not cell.skipped:
                self.results[cell.index] = self.exec(cell, cell.source)
        return self.results.get(index)
