"""nnx.optim's public interface is its committed ``api.txt``: tools/api_snapshot_checks.py."""

import runpy
from pathlib import Path

import pytest

_CHECKS = Path(__file__).resolve().parents[3] / "tools" / "api_snapshot_checks.py"
if not _CHECKS.exists():  # tests run from an sdist: the snapshot lives in the monorepo only
    pytest.skip("tools/ is not available outside the monorepo", allow_module_level=True)

test_public_api_matches_committed_snapshot, test_every_public_name_is_defined = runpy.run_path(
    str(_CHECKS)
)["tests_for"]("optim")
