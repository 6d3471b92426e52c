"""The test set-up fails loudly: import skips in the full environment, "no tests
collected", warnings and implicit rank promotion are failures (root conftest.py,
pyproject's [tool.pytest.ini_options], tools/run_pytest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import pytest

    def test_needs_a_sibling():
        pytest.importorskip("nnx.no_such_sibling")

    def test_skipped_for_another_reason():
        pytest.skip("no accelerator here")
    """
)


def _run_probe(tmp_path: Path, all_packages: bool, source: str = PROBE):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_probe.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "NNX_ALL_PACKAGES"}
    if all_packages:
        env["NNX_ALL_PACKAGES"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_full_environment_sets_nnx_all_packages():
    # these root tests run in `full` (hatch.toml), where every package is installed
    assert os.environ.get("NNX_ALL_PACKAGES") == "1"


def test_an_import_skip_fails_when_every_package_is_installed(tmp_path):
    proc = _run_probe(tmp_path, all_packages=True)
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 1 skipped" in proc.stdout
    assert "could not import 'nnx.no_such_sibling'" in proc.stdout
    assert "a skip for a failed import is a failure here" in proc.stdout


def test_an_import_skip_stays_a_skip_in_a_single_package_environment(tmp_path):
    proc = _run_probe(tmp_path, all_packages=False)
    assert proc.returncode == 0, proc.stdout
    assert "2 skipped" in proc.stdout


def test_a_module_level_import_skip_is_a_collection_error_there(tmp_path):
    source = (
        'import pytest\npytest.importorskip("nnx.no_such_sibling")\n\ndef test_x():\n    pass\n'
    )
    proc = _run_probe(tmp_path, all_packages=True, source=source)
    assert proc.returncode != 0, proc.stdout
    assert "1 error" in proc.stdout and "nnx.no_such_sibling" in proc.stdout


def test_no_tests_collected_is_a_failure_of_run_pytest(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_pytest.py"), str(tmp_path / "empty")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 5, proc.stdout
    assert "error: no tests collected" in proc.stdout


def test_warnings_are_errors():
    with pytest.raises(DeprecationWarning, match="old spelling"):
        warnings.warn("old spelling", DeprecationWarning, stacklevel=1)


def test_rank_promotion_is_allowed_in_user_style_root_tests():
    # tests/ holds programs written as Flax users write them (RANK_PROMOTION_ALLOWED)
    assert (jnp.ones((2, 3)) + jnp.ones(3)).shape == (2, 3)
