"""Every source file of the four packages holds one concept and stays readable in a
sitting: none is over 800 lines (nnx-core's own test says the same for core alone)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 800


def test_no_package_source_file_is_over_800_lines():
    files = sorted(ROOT.glob("packages/*/src/nnx/**/*.py"))
    assert len(files) > 50  # the glob found the sources
    big = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > LIMIT
    }
    assert not big, f"split these by concept: {big}"
