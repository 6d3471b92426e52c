"""The public interface of nnx.transforms is exactly the reviewed snapshot in ``api.txt``.

A change to ``nnx.transforms.__all__`` or to a public signature fails this test until the
snapshot is refreshed (``python tools/api_snapshot.py --write transforms``, or
``hatch run full:api --write transforms``), so the change shows up as a diff in review.
"""

import importlib
import importlib.util
from pathlib import Path

import pytest

_TOOL = Path(__file__).resolve().parents[3] / "tools" / "api_snapshot.py"


def _load_tool():
    if not _TOOL.exists():  # e.g. tests run from an sdist, outside the monorepo
        pytest.skip("tools/api_snapshot.py is not available outside the monorepo")
    spec = importlib.util.spec_from_file_location("nnx_api_snapshot", _TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_public_api_matches_committed_snapshot():
    tool = _load_tool()
    diff = tool.diff("transforms")
    if diff:
        pytest.fail(
            "the public interface of nnx.transforms differs from its committed snapshot "
            "(- committed, + installed):\n\n"
            + diff
            + "\nIf the change is intended, refresh the snapshot and commit it:\n    "
            + tool.REFRESH.format(pkg="transforms"),
            pytrace=False,
        )


def test_every_public_name_is_defined():
    module = importlib.import_module("nnx.transforms")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"nnx.transforms.__all__ lists names it does not define: {missing}"
