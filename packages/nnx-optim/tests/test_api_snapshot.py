"""The public interface of nnx.optim is exactly the reviewed snapshot in ``api.txt``.

A change to ``nnx.optim.__all__`` or to a public signature fails this test until the
snapshot is refreshed (``python tools/api_snapshot.py --write optim``, or
``hatch run full:api --write optim``), so the change shows up as a diff in review. The
checks are the same for the four packages: ``tools/api_snapshot_checks.py``.
"""

import runpy
from pathlib import Path

import pytest

_CHECKS = Path(__file__).resolve().parents[3] / "tools" / "api_snapshot_checks.py"
if not _CHECKS.exists():  # tests run from an sdist: the snapshot lives in the monorepo only
    pytest.skip("tools/ is not available outside the monorepo", allow_module_level=True)

test_public_api_matches_committed_snapshot, test_every_public_name_is_defined = runpy.run_path(
    str(_CHECKS)
)["tests_for"]("optim")
