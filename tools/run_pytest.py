"""Run pytest for one hatch ``test`` script; "no tests collected" is a failure.

Every package has tests, so pytest's exit code 5 (nothing collected) means a wrong path
or a broken collection, and fails like any other error. Used by the ``test`` scripts of
hatch.toml.
"""

import sys

import pytest

NO_TESTS_COLLECTED = 5

if __name__ == "__main__":
    code = pytest.main(sys.argv[1:])
    if code == NO_TESTS_COLLECTED:
        print(f"error: no tests collected in {' '.join(sys.argv[1:])}")
    sys.exit(int(code))
