"""The checks of every package's ``tests/test_api_snapshot.py``, written once.

Each of the four packages binds the two test functions that :func:`tests_for` makes::

    test_public_api_matches_committed_snapshot, test_every_public_name_is_defined = (
        runpy.run_path(".../tools/api_snapshot_checks.py")["tests_for"]("layers")
    )

The first fails with the diff when the installed ``nnx.<pkg>`` differs from the committed
``packages/nnx-<pkg>/api.txt`` (rendered by ``api_snapshot.py`` next to this file), so a
change to ``nnx.<pkg>.__all__`` or to a public signature shows up as a diff in review
until the snapshot is refreshed (``python tools/api_snapshot.py --write <pkg>``, or
``hatch run full:api --write <pkg>``); the second fails when ``nnx.<pkg>.__all__`` lists
a name the package does not define.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

_TOOL = Path(__file__).resolve().parent / "api_snapshot.py"


def _snapshot_tool():
    spec = importlib.util.spec_from_file_location("nnx_api_snapshot", _TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tests_for(pkg: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """The snapshot test and the ``__all__`` test of ``nnx.<pkg>``, as pytest functions."""

    def test_public_api_matches_committed_snapshot() -> None:
        tool = _snapshot_tool()
        diff = tool.diff(pkg)
        if diff:
            pytest.fail(
                f"the public interface of nnx.{pkg} differs from its committed snapshot "
                "(- committed, + installed):\n\n"
                + diff
                + "\nIf the change is intended, refresh the snapshot and commit it:\n    "
                + tool.REFRESH.format(pkg=pkg),
                pytrace=False,
            )

    def test_every_public_name_is_defined() -> None:
        module = importlib.import_module(f"nnx.{pkg}")
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        if missing:
            pytest.fail(f"nnx.{pkg}.__all__ lists names it does not define: {missing}")

    return test_public_api_matches_committed_snapshot, test_every_public_name_is_defined
