"""Every example in a docstring runs.

Walks every module of the four source trees (``packages/nnx-*/src/nnx/**.py``, private
modules included) and collects, from the module's docstring and those of every class,
function, method and property defined in it:

- ``>>>`` examples: run with :mod:`doctest` (output compared as doctest does, with
  ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``);
- ``Example::`` / ``Examples::`` blocks (the indented literal block after the marker):
  run as a script; a ``print(...)  # text`` line must print ``text``.

Both run in a fresh copy of the namespace of ``tools/docs/example_context.py``: ``jax``,
``jnp``, ``np``, ``optax``, ``nnx``, an ``MLP`` class, ``model`` (an ``MLP(2, 16, 1)``),
``optimizer``, ``loss_fn``, ``rngs``, ``x`` and ``y`` (the API reference shows that file), so an
example shows only what it is about; anything else it uses it defines or imports itself. New docstrings are picked up with no edit here: the test ids
are ``<module>:<qualified name>:<block number>``.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import inspect
import io
import re
import textwrap
from pathlib import Path

import pytest

import nnx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "transforms", "layers", "optim")
MARKER = re.compile(r"^(?P<indent>[ \t]*)(?:\S.*?)?\bExamples?::[ \t]*$", re.M)
EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<out>.+?)\s*$")


def _module_names() -> list[str]:
    names = []
    for pkg in PACKAGES:
        src = ROOT / f"packages/nnx-{pkg}/src"
        for path in sorted((src / "nnx" / pkg).rglob("*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    names.append("nnx")
    return names


def _docstrings(module) -> list[tuple[str, str]]:
    """(qualified name, docstring) of the module and everything defined in it."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()

    def visit(qualname: str, obj, depth: int) -> None:
        if id(obj) in seen or depth > 3:
            return
        seen.add(id(obj))
        doc = obj.__doc__ if not isinstance(obj, type) else obj.__dict__.get("__doc__")
        if isinstance(doc, str):
            found.append((qualname, doc))
        if isinstance(obj, type):
            for name, member in vars(obj).items():
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                ours = getattr(member, "__module__", None) == module.__name__
                if ours and (inspect.isfunction(member) or isinstance(member, type)):
                    visit(f"{qualname}.{name}", member, depth + 1)

    if module.__doc__:
        found.append(("<module>", module.__doc__))
    for name, obj in vars(module).items():
        if (inspect.isfunction(obj) or isinstance(obj, type)) and getattr(
            obj, "__module__", None
        ) == module.__name__:
            visit(name, obj, 0)
    return found


def _example_blocks(doc: str) -> list[str]:
    """The literal blocks after ``Example::`` markers (indented deeper than the marker)."""
    doc = inspect.cleandoc(doc)
    blocks = []
    for m in MARKER.finditer(doc):
        base = len(m["indent"].expandtabs())
        lines = doc[m.end() :].split("\n")[1:]
        body: list[str] = []
        for line in lines:
            if line.strip() and len(line) - len(line.lstrip()) <= base:
                break
            body.append(line)
        text = textwrap.dedent("\n".join(body)).strip("\n")
        if text and not text.lstrip().startswith(">>>"):
            blocks.append(text)
    return blocks


def _collect():
    params = []
    for modname in _module_names():
        try:
            module = importlib.import_module(modname)
        except ImportError as e:  # a module that needs an optional extra
            params.append(
                pytest.param(
                    modname,
                    "<import>",
                    "",
                    "import",
                    id=f"{modname}:import",
                    marks=pytest.mark.skip(reason=str(e)),
                )
            )
            continue
        for qualname, doc in _docstrings(module):
            for i, block in enumerate(_example_blocks(doc)):
                pid = f"{modname}:{qualname}:{i}"
                params.append(pytest.param(modname, qualname, block, "example", id=pid))
            if ">>>" in doc:
                params.append(
                    pytest.param(
                        modname, qualname, doc, "doctest", id=f"{modname}:{qualname}:doctest"
                    )
                )
    return params


PARAMS = _collect()


CONTEXT = ROOT / "tools/docs/example_context.py"


def _namespace(modname: str) -> dict:
    ns: dict = {"__name__": f"docstring_of_{modname}"}
    exec(compile(CONTEXT.read_text(), str(CONTEXT), "exec"), ns)
    return ns


@pytest.fixture(autouse=True)
def _restore_modes():
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)


def test_examples_were_found():
    kinds = [p.values[3] for p in PARAMS]
    assert kinds.count("example") + kinds.count("doctest") >= 90, (
        "the docstrings show ~100 examples"
    )


@pytest.mark.parametrize(("modname", "qualname", "text", "kind"), PARAMS)
def test_docstring_example_runs(modname, qualname, text, kind):
    ns = _namespace(modname)
    label = f"{modname}:{qualname}"
    if kind == "doctest":
        test = doctest.DocTestParser().get_doctest(text, ns, label, modname, 0)
        runner = doctest.DocTestRunner(
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
        )
        out = io.StringIO()
        runner.run(test, out=out.write)
        assert runner.failures == 0, out.getvalue()
        return
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # dont_inherit: the example is compiled as a reader would run it, without this
        # file's `from __future__ import annotations` (a dataclass field annotated `str`
        # would then be a string that dataclasses looks up in a module that does not exist)
        exec(compile(text, f"<docstring of {label}>", "exec", dont_inherit=True), ns)
    printed = out.getvalue().splitlines()
    position = 0
    for line in text.splitlines():
        if m := EXPECTED.match(line):
            hits = [j for j in range(position, len(printed)) if printed[j].strip() == m["out"]]
            assert hits, f"expected a printed line {m['out']!r}; printed:\n{out.getvalue()}"
            position = hits[0] + 1
