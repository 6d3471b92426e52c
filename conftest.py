"""Strictness shared by every test folder of the monorepo (pytest loads this file first).

- ``jax_numpy_rank_promotion="raise"`` in every test (a fixture): an implicit broadcast
  of arrays of different ranks (a silent ``(3,) + (2, 3)``) is an error, as in Equinox's
  tests, except in the folders of ``RANK_PROMOTION_ALLOWED`` (each with its reason). The
  package conftests set it too, for a package's tests run outside the monorepo.
- In the ``full`` hatch environment (``NNX_ALL_PACKAGES=1``) every nnx package and every
  optional dependency the tests use is installed, so a test skipped because an import
  failed (``pytest.importorskip``, a skip whose reason is an ``ImportError`` or a
  ``MissingPackageError``) is a failure there: it would hide a broken install or a
  missing sibling. The single-package environments (core, transforms, ...) keep the skip.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parent

# Test folders where numpy-style rank promotion stays allowed, and why.
RANK_PROMOTION_ALLOWED = {
    # code written as a Flax NNX user writes it (seeds, guides, examples, README):
    # `x @ w + b` with a batch axis is ordinary numpy broadcasting there
    "tests/": "user-style programs",
}


@pytest.fixture(autouse=True)
def _rank_promotion(request):
    try:
        where = Path(str(request.node.path)).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        where = ""
    allowed = any(where.startswith(folder) for folder in RANK_PROMOTION_ALLOWED)
    with jax.numpy_rank_promotion("allow" if allowed else "raise"):
        yield


ALL_PACKAGES = os.environ.get("NNX_ALL_PACKAGES") == "1"

# the reasons pytest.importorskip, a skip on ImportError and nnx's MissingPackageError give
_IMPORT_SKIP = re.compile(
    r"could not import|No module named|cannot import name|MissingPackageError"
    r"|is provided by the .* distribution"
)


def _import_skip_reason(longrepr) -> str | None:
    # a skip's longrepr is (file, line, "Skipped: <reason>")
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        if _IMPORT_SKIP.search(reason):
            return reason
    return None


def _fail_if_import_skip(report) -> None:
    if not (ALL_PACKAGES and report.skipped):
        return
    reason = _import_skip_reason(report.longrepr)
    if reason is None:
        return
    report.outcome = "failed"
    report.longrepr = (
        f"{reason}\nNNX_ALL_PACKAGES=1 (the full environment has every nnx package and "
        "test dependency installed): a skip for a failed import is a failure here."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport():  # pluggy passes only the arguments named here
    outcome = yield
    report = outcome.get_result()
    _fail_if_import_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report():
    outcome = yield
    report = outcome.get_result()
    _fail_if_import_skip(report)
