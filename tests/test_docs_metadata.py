"""Release metadata: the licence in every distribution, the project URLs, the Python and
JAX versions the matrices test, and package READMEs whose links work on a package index.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "transforms", "layers", "optim")
HATCH = tomllib.loads((ROOT / "hatch.toml").read_text())
REPO = "https://github.com/nnx-project/nnx"


def _project(pkg: str) -> dict:
    return tomllib.loads((ROOT / f"packages/nnx-{pkg}/pyproject.toml").read_text())["project"]


def test_root_licence_is_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_distribution_ships_the_licence(pkg):
    project = _project(pkg)
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    copy = ROOT / f"packages/nnx-{pkg}/LICENSE"
    assert copy.read_bytes() == (ROOT / "LICENSE").read_bytes(), f"{copy} differs from LICENSE"
    assert project["authors"], "authors"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_project_urls(pkg):
    urls = _project(pkg)["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog"}
    assert all(u.startswith("https://") for u in urls.values())
    assert urls["Changelog"].endswith(f"packages/nnx-{pkg}/CHANGELOG.md")
    mkdocs = (ROOT / "mkdocs.yml").read_text()
    assert f"site_url: {urls['Documentation']}" in mkdocs


def _matrix(env: str) -> list[dict]:
    return HATCH["envs"][env]["matrix"]


@pytest.mark.parametrize("pkg", PACKAGES)
def test_classifiers_name_exactly_the_pythons_the_matrix_tests(pkg):
    tested = {py for row in _matrix("py") for py in row["python"]}
    classified = {
        c.rsplit(" ", 1)[1]
        for c in _project(pkg)["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert classified == tested == {"3.11", "3.12", "3.13"}
    assert SpecifierSet(_project(pkg)["requires-python"]).contains(
        min(tested, key=lambda v: int(v.split(".")[1]))
    )


def test_jax_range_ends_lie_in_every_declared_range():
    ends = [v for row in _matrix("jaxrange") for v in row["jax"]]
    assert len(ends) == 2, "the lowest and the highest JAX of the range"
    declared = {}
    for pkg in PACKAGES:
        for dep in _project(pkg)["dependencies"]:
            if re.match(r"jax\b", dep):
                declared[pkg] = SpecifierSet(dep[3:])
    assert "core" in declared, "nnx-core declares the JAX range"
    assert len({str(s) for s in declared.values()}) == 1, f"packages disagree: {declared}"
    for spec in declared.values():
        for end in ends:
            assert spec.contains(end), f"matrix tests jax {end}, outside {spec}"
    decision = (ROOT / "docs/decisions/0010-jax-range.md").read_text()
    for end in ends:
        assert end in decision


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_readme_links_work_on_a_package_index(pkg):
    text = (ROOT / f"packages/nnx-{pkg}/README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    relative = [t for t in links if not re.match(r"https?://", t)]
    assert not relative, f"nnx-{pkg}/README.md: relative links break on a package index: {relative}"
    for target in links:
        m = re.match(rf"{REPO}/(?:blob|tree)/main/(.+)$", target)
        if m:
            assert (ROOT / m[1]).exists(), f"nnx-{pkg}/README.md links to missing {m[1]}"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_package_has_a_version(pkg):
    import importlib

    mod = importlib.import_module(f"nnx.{pkg}")
    version = importlib.import_module(f"nnx.{pkg}._version").__version__
    assert mod.__version__ == version


def test_readme_says_which_distribution_to_install():
    readme = (ROOT / "README.md").read_text()
    assert "pip install nnx-core" in readme
    assert re.search(r"`pip install nnx` installs an unrelated", readme)
