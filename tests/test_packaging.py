"""The monorepo's packaging rules (docs/architecture.md), checked on the source tree and on
the ``full`` environment. Building and installing the wheels one by one is
tools/check_packaging.py, which ``hatch run test:all`` runs before the tests."""

import importlib
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import nnx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "transforms", "layers", "optim")
SIBLINGS = PACKAGES[1:]


def _pyproject(pkg: str) -> dict:
    return tomllib.loads((ROOT / f"packages/nnx-{pkg}/pyproject.toml").read_text())


def _version(pkg: str) -> Version:
    text = (ROOT / f"packages/nnx-{pkg}/src/nnx/{pkg}/_version.py").read_text()
    m = re.search(r'__version__ = "([^"]+)"', text)
    assert m is not None
    return Version(m[1])


@pytest.mark.parametrize("pkg", PACKAGES)
def test_version_has_one_source_inside_the_package(pkg):
    config = _pyproject(pkg)
    assert "version" not in config["project"]
    assert config["project"]["dynamic"] == ["version"]
    assert config["tool"]["hatch"]["version"]["path"] == f"src/nnx/{pkg}/_version.py"


@pytest.mark.parametrize("pkg", SIBLINGS)
def test_sibling_accepts_the_nnx_core_of_this_repository(pkg):
    requirements = [Requirement(r) for r in _pyproject(pkg)["project"]["dependencies"]]
    (core,) = [r for r in requirements if r.name == "nnx-core"]
    assert core.specifier.contains(_version("core"))
    assert any(s.operator == "<" for s in core.specifier), "the range needs an upper bound"


@pytest.mark.parametrize("pkg", SIBLINGS)
def test_sibling_wheel_ships_only_its_subpackage(pkg):
    wheel = _pyproject(pkg)["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["only-include"] == [f"src/nnx/{pkg}"]
    assert not (ROOT / f"packages/nnx-{pkg}/src/nnx/__init__.py").exists()


@pytest.mark.parametrize("pkg", PACKAGES)
def test_editable_install_is_a_plain_path(pkg):
    # pkgutil.extend_path in nnx/__init__.py scans sys.path folders; import hooks hide them
    assert _pyproject(pkg)["tool"]["hatch"]["build"]["dev-mode-dirs"] == ["src"]


def test_public_names_are_unique_across_packages():
    owners: dict[str, list[str]] = {}
    for pkg in PACKAGES:
        for name in importlib.import_module(f"nnx.{pkg}").__all__:
            owners.setdefault(name, []).append(pkg)
    clashes = {name: pkgs for name, pkgs in owners.items() if len(pkgs) > 1}
    assert not clashes, f"names exported by several packages, ambiguous as nnx.<name>: {clashes}"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_flat_namespace_holds_every_public_name(pkg):
    module = importlib.import_module(f"nnx.{pkg}")
    listed = set(dir(nnx))
    for name in module.__all__:
        assert getattr(nnx, name) is getattr(module, name), name
        assert name in listed, name
