"""README.md is executable documentation.

Every ```python block runs, in order, in one namespace (like a reader pasting them into
one session), and each `print(...)  # expected` line must print exactly what its comment
says. Every ```bash block is checked against the repository: the hatch scripts it names
exist in hatch.toml, the examples and flags it names exist, the packages it installs are
the repository's distributions; and the README's first two commands are the demo and
the command that .ci/run runs.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest

import nnx

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<out>.+?)\s*$")


def blocks(lang: str) -> list[str]:
    return [m["body"] for m in BLOCK.finditer(README) if m["lang"] == lang]


def commands() -> list[list[str]]:
    out = []
    for body in blocks("bash"):
        for line in body.splitlines():
            line = line.split(" #")[0].strip()
            if line:
                out.append(shlex.split(line))
    return out


@pytest.fixture(scope="module")
def restore_modes():
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)


def test_python_blocks_run_in_order_and_print_what_they_say(restore_modes):
    python = blocks("python")
    assert len(python) >= 8, "the tour has a block per topic"
    ns: dict = {"__name__": "readme"}
    for i, body in enumerate(python):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, f"<README.md python block {i}>", "exec"), ns)
        printed = out.getvalue().splitlines()
        expected = [m["out"] for line in body.splitlines() if (m := EXPECTED.match(line))]
        position = 0
        for want in expected:  # in order, each a whole printed line
            hits = [j for j in range(position, len(printed)) if printed[j].strip() == want]
            assert hits, f"block {i}: expected a line {want!r}, printed:\n{out.getvalue()}"
            position = hits[0] + 1


def test_first_two_commands_are_the_demo_and_the_ci_command():
    first, second = commands()[:2]
    assert first == ["hatch", "run", "full:demo"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec " + " ".join(second) in ci, "the README's test command is what .ci/run runs"


def test_hatch_scripts_named_in_the_readme_exist():
    config = tomllib.loads((ROOT / "hatch.toml").read_text())
    named = [c[2] for c in commands() if c[:2] == ["hatch", "run"]]
    named += re.findall(r"`hatch run (\w+:\w+)", README)
    assert named
    for env_script in named:
        env, script = env_script.split(":")
        assert script in config["envs"][env]["scripts"], f"hatch run {env_script}"
    demo = config["envs"]["full"]["scripts"]["demo"]
    assert "examples/train_digits.py" in demo


def test_example_commands_name_real_files_and_flags():
    runs = [c for c in commands() if c[:1] == ["python"]]
    assert runs
    for cmd in runs:
        script = ROOT / cmd[1]
        assert script.is_file(), cmd
        for flag in (a for a in cmd[2:] if a.startswith("--")):
            assert f'"{flag}"' in script.read_text(), f"{cmd[1]} has no option {flag}"
    for link in re.findall(r"\]\((examples/[\w.]+\.py)\)", README):
        assert (ROOT / link).is_file(), link


def test_pip_commands_install_the_repository_distributions():
    dists = {
        tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"]: p
        for p in (ROOT / "packages").iterdir()
        if (p / "pyproject.toml").is_file()
    }
    assert set(dists) == {"nnx-core", "nnx-transforms", "nnx-layers", "nnx-optim"}
    for cmd in (c for c in commands() if c[:2] == ["pip", "install"]):
        args = [a for a in cmd[2:] if a != "-e"]
        for arg in args:
            if arg.startswith("packages/"):
                assert (ROOT / arg / "pyproject.toml").is_file(), arg
            elif arg.startswith("nnx"):
                assert arg in dists, arg


def test_links_to_files_in_the_repository_resolve():
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), f"broken link: {target}"
