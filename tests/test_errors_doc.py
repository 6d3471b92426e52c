"""docs/errors.md is executable: every example raises the error it documents.

A fenced block whose info string is ``python raises=NAME match="REGEX"`` runs in a fresh
namespace and must raise ``NAME`` (an attribute of ``nnx``, else a builtin exception) with
a message that ``re.search`` finds ``REGEX`` in. Every error class that nnx exports must
have at least one such example.
"""

from __future__ import annotations

import builtins
import re
from pathlib import Path

import pytest

import nnx

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "errors.md").read_text()
BLOCK = re.compile(
    r'^```python raises=(?P<name>[\w.]+) match="(?P<match>(?:[^"\\]|\\.)*)"\n(?P<body>.*?)^```$',
    re.M | re.S,
)
EXAMPLES = [(m["name"], m["match"].replace('\\"', '"'), m["body"]) for m in BLOCK.finditer(DOC)]


def _exception(name: str) -> type[BaseException]:
    obj = nnx
    try:
        for part in name.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        obj = getattr(builtins, name)
    assert isinstance(obj, type) and issubclass(obj, BaseException), name
    return obj


@pytest.fixture
def restore_modes():
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)


@pytest.mark.parametrize(
    "name,match,body",
    EXAMPLES,
    ids=[f"{i}-{n}" for i, (n, _, _) in enumerate(EXAMPLES)],
)
def test_example_raises_what_it_documents(name, match, body, restore_modes):
    with pytest.raises(_exception(name), match=match):
        exec(compile(body, f"<docs/errors.md {name}>", "exec"), {"__name__": "errors_doc"})


def test_every_exported_error_type_has_an_example():
    documented = {n.split(".")[-1] for n, _, _ in EXAMPLES}
    exported = {
        name
        for name in dir(nnx)
        if not name.startswith("_")
        and isinstance(obj := getattr(nnx, name, None), type)
        and issubclass(obj, nnx.NnxError)
        and obj is not nnx.NnxError
    }
    missing = sorted(exported - documented)
    assert not missing, f"docs/errors.md has no example for {missing}"
