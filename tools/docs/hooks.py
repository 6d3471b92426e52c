"""mkdocs hooks of the documentation site (mkdocs.yml ``hooks:``).

- **API reference from ``__all__``.** ``api/<pkg>.md`` (and ``api/index.md``) are generated
  at build time, one mkdocstrings entry per name of ``nnx.<pkg>.__all__``, so a new
  public name appears without editing any page; after the build, every name must have
  its anchor in the rendered page and a docstring of its own (``tools/docs/coverage.py``).
- **Every python block runs.** Each page's ```` ```python ```` blocks run in order in one
  namespace per page (like a reader pasting them into one session); a ``print(...)  #
  text`` line must print ``text``. A block whose info string reads ``python raises=NAME
  match="REGEX"`` (the error catalogue's form) runs in a fresh namespace and must raise
  ``NAME`` (looked up on ``nnx``, then builtins) with a message matching ``REGEX``. A
  failing block fails the build, naming the page and the block. Blocks that are not
  meant to run use another info string (``text``, ``pycon``, ``bash``).
- **Links to the repository.** A relative link from a page to a file outside ``docs/``
  (``../packages/nnx-core/README.md``) becomes a link to that file in the source
  repository; a link to a file that does not exist fails the build.
- **Includes.** ``<!-- include: PATH -->`` (relative to the page) is replaced by that
  file, less its title; ``<!-- include: PATH#Heading -->`` by the body of the section
  under ``## Heading``, its subsections moved up a level. The tour is the README's, the
  performance tables are benchmarks/RESULTS.md: one text, never a copy to keep in step.
- **Decisions.** ``decisions/index.md`` lists every ``docs/decisions/NNNN-*.md`` and the
  nav's "Decisions" section lists them all, so a new decision needs no edit here.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage  # noqa: E402  (tools/docs/coverage.py)

log = logging.getLogger("mkdocs.hooks.nnx")

PACKAGES = coverage.PACKAGES
SOURCE = "https://github.com/nnx-project/nnx/blob/main/"
# Pages other helpers own, linked into the nav; while a branch lacks one, its nav entry
# is left out (with a notice) instead of failing every other branch's build.
PENDING = {"guides/checkpointing.md", "guides/sharding.md"}

FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S
)
EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<out>.+?)\s*$")
RAISES = re.compile(
    r'^python\s+raises=(?P<name>[\w.]+)(?:\s+match="(?P<match>(?:[^"\\]|\\.)*)")?\s*$'
)
LINK = re.compile(r"(?<!!)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")

STATS: dict[str, Any] = {"blocks": 0, "pages": 0, "seconds": 0.0}


# -- nav and generated pages -------------------------------------------------------------


def _decisions() -> list[Path]:
    return sorted((ROOT / "docs" / "decisions").glob("[0-9][0-9][0-9][0-9]-*.md"))


def _title(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def _expand_nav(nav: list, docs_dir: Path) -> list:
    out = []
    for item in nav:
        if isinstance(item, dict):
            ((key, value),) = item.items()
            if key == "Decisions":
                value = ["decisions/index.md"] + [
                    {_title(p): f"decisions/{p.name}"} for p in _decisions()
                ]
                out.append({key: value})
                continue
            if isinstance(value, list):
                out.append({key: _expand_nav(value, docs_dir)})
                continue
            if value in PENDING and not (docs_dir / value).exists():
                log.info(f"nav: {value} is not in this checkout yet; its entry is left out")
                continue
        out.append(item)
    return out


def on_config(config, **kwargs):
    sys.path.insert(0, str(ROOT / "tools"))
    import overlay  # the one-package view mkdocstrings reads (mkdocs.yml paths)

    overlay.make_overlay()
    config["nav"] = _expand_nav(config["nav"], Path(config["docs_dir"]))
    STATS.update(blocks=0, pages=0, seconds=0.0)
    return config


def _external_entry(pkg: str, name: str, origin: str) -> list[str]:
    import inspect

    obj = getattr(coverage.module(pkg), name)
    try:
        signature = f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        signature = f"{name}(...)"
    doc = (inspect.getdoc(obj) or "").strip().split("\n\n")[0].replace("\n", " ")
    url = "https://docs.jax.dev/en/latest/_autosummary/" + origin + ".html"
    return [
        f"## `nnx.{pkg}.{name}` {{ #nnx.{pkg}.{name} }}",
        "",
        "```text",
        signature,
        "```",
        "",
        f"JAX's [`{origin}`]({url}), re-exported unchanged. {doc}",
        "",
    ]


def api_pages() -> dict[str, str]:
    """The generated API reference: {src_uri: markdown}."""
    pages = {}
    index = [
        "# API reference",
        "",
        "Every public name of the four packages, generated from each package's `__all__`.",
        "Every name is also reachable from the flat namespace: `nnx.jit` is",
        "`nnx.transforms.jit`, `nnx.Linear` is `nnx.layers.Linear`.",
        "",
        "| package | distribution | names |",
        "|---|---|---|",
    ]
    for pkg in PACKAGES:
        names = coverage.public_names(pkg)
        index.append(f"| [`nnx.{pkg}`]({pkg}.md) | `nnx-{pkg}` | {len(names)} |")
        mod = coverage.module(pkg)
        doc = (mod.__doc__ or "").strip()
        lines = [f"# nnx.{pkg}", ""]
        if doc:
            lines += [doc.split("\n\n")[0].strip(), ""]
        lines += [
            f"Installed by `pip install nnx-{pkg}`. Every name below is also `nnx.<name>`.",
            "",
        ]
        for name in names:
            origin = coverage.external_origin(pkg, name)
            if origin:  # JAX's own function: its signature and JAX's reference
                lines += _external_entry(pkg, name, origin)
                continue
            lines += [f"::: nnx.{pkg}.{name}", ""]
            if coverage.is_module(pkg, name):
                lines += ["    options:", "      show_submodules: false", "      members: []", ""]
        pages[f"api/{pkg}.md"] = "\n".join(lines)
    pages["api/index.md"] = "\n".join(index) + "\n"
    decisions = ["# Decisions", "", "One page per irreversible design choice.", ""]
    decisions += [f"- [{_title(p)}]({p.name})" for p in _decisions()]
    pages["decisions/index.md"] = "\n".join(decisions) + "\n"
    return pages


def on_files(files: Files, config, **kwargs):
    for uri, content in api_pages().items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=content))
    return files


# -- executing the blocks ---------------------------------------------------------------


def _lookup_error(name: str) -> type[BaseException]:
    import nnx

    obj = getattr(nnx, name, None)
    if obj is None:
        obj = getattr(builtins, name, None)
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise PluginError(f"raises={name}: no such exception on nnx or in builtins")
    return obj


def _run(body: str, ns: dict, label: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(body, label, "exec"), ns)
    return out.getvalue()


def _check_printed(body: str, printed: str, label: str) -> None:
    lines = printed.splitlines()
    position = 0
    for line in body.splitlines():
        if not (m := EXPECTED.match(line)):
            continue
        hits = [j for j in range(position, len(lines)) if lines[j].strip() == m["out"]]
        if not hits:
            raise AssertionError(f"expected a printed line {m['out']!r}; printed:\n{printed}")
        position = hits[0] + 1


def execute_page(markdown: str, page_uri: str) -> tuple[str, int]:
    """Run every python block of one page; return the markdown with plain fences."""
    import nnx

    before = nnx.var_defaults()
    ns: dict = {"__name__": "docs_" + re.sub(r"\W", "_", page_uri)}
    count = 0
    pieces = []
    last = 0
    try:
        for i, m in enumerate(FENCE.finditer(markdown)):
            info = m["info"].strip()
            if not (info == "python" or info.startswith("python ")):
                continue
            body = textwrap.dedent(m["body"])
            label = f"<{page_uri} python block {i}>"
            count += 1
            raises = RAISES.match(info)
            if info != "python" and raises is None:
                raise PluginError(f"{label}: unknown info string {info!r}")
            try:
                if raises:
                    exc_type = _lookup_error(raises["name"])
                    try:
                        # its own namespace and Variable defaults, as tests/test_errors_doc.py
                        try:
                            _run(body, {"__name__": ns["__name__"] + f"_{i}"}, label)
                        finally:
                            nnx.var_defaults(hijax=before.hijax, ref=before.ref)
                    except exc_type as e:
                        pattern = (raises["match"] or "").replace('\\"', '"')
                        if pattern and not re.search(pattern, str(e)):
                            raise AssertionError(
                                f"raised {type(e).__name__} whose message does not match "
                                f"{pattern!r}: {e}"
                            ) from e
                    else:
                        raise AssertionError(f"did not raise {raises['name']}")
                else:
                    printed = _run(body, ns, label)
                    _check_printed(body, printed, label)
            except PluginError:
                raise
            except BaseException as e:  # noqa: BLE001  a failing example fails the build
                import traceback

                tb = "".join(traceback.format_exception(e)[-6:])
                raise PluginError(f"{label} failed: {type(e).__name__}: {e}\n{tb}") from e
            if info != "python":  # the reader sees a python block, and what it raises
                note = f"{m['indent']}*Raises `{raises['name']}`.*\n\n" if raises else ""
                pieces.append(markdown[last : m.start()])
                pieces.append(note + f"{m['indent']}```python\n{m['body']}{m['indent']}```")
                last = m.end()
    finally:
        nnx.var_defaults(hijax=before.hijax, ref=before.ref)
    pieces.append(markdown[last:])
    return "".join(pieces), count


INCLUDE = re.compile(r"^<!-- include: (?P<path>[^#\s]+)(?:#(?P<section>[^>]+?))? -->$", re.M)


def _relink(text: str, source: Path, page_path: Path) -> str:
    """Make the relative links of ``source``'s text relative to ``page_path``."""
    import os

    def fix(m: re.Match) -> str:
        target = m["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return m.group(0)
        absolute = (source.parent / target).resolve()
        rel = os.path.relpath(absolute, page_path.parent)
        return f"]({rel}{m['anchor'] or ''})"

    return LINK.sub(fix, text)


def _include(markdown: str, page_path: Path, page_uri: str) -> str:
    def expand(m: re.Match) -> str:
        source = (page_path.parent / m["path"]).resolve()
        if not source.is_file():
            raise PluginError(f"{page_uri}: include of a missing file {m['path']!r}")
        text = source.read_text()
        if m["section"]:
            head = re.search(rf"^## {re.escape(m['section'].strip())}\s*$", text, re.M)
            if head is None:
                raise PluginError(f"{page_uri}: {m['path']} has no section '## {m['section']}'")
            rest = text[head.end() :]
            end = re.search(r"^## ", rest, re.M)
            text = rest[: end.start()] if end else rest
            text = re.sub(r"^#(#+ )", r"\1", text, flags=re.M)
        else:
            text = re.sub(r"\A# .*\n", "", text)
        return _relink(text.strip("\n"), source, page_path) + "\n"

    return INCLUDE.sub(expand, markdown)


def _rewrite_links(markdown: str, page_path: Path, page_uri: str) -> str:
    docs_dir = ROOT / "docs"

    def fix(m: re.Match) -> str:
        target = m["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return m.group(0)
        resolved = (page_path.parent / target).resolve()
        try:
            resolved.relative_to(docs_dir)
            return m.group(0)  # a page of the site: mkdocs checks it
        except ValueError:
            pass
        try:
            rel = resolved.relative_to(ROOT)
        except ValueError:
            raise PluginError(
                f"{page_uri}: link {target!r} points outside the repository"
            ) from None
        if not resolved.exists():
            raise PluginError(f"{page_uri}: broken link {target!r} (no {rel})")
        kind = "tree" if resolved.is_dir() else "blob"
        url = SOURCE.replace("/blob/", f"/{kind}/") + rel.as_posix()
        return f"]({url}{m['anchor'] or ''})"

    return LINK.sub(fix, markdown)


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    src = page.file.abs_src_path
    if src:  # generated pages have no source file, and no python blocks or links
        markdown = _include(markdown, Path(src), page.file.src_uri)
        markdown = _rewrite_links(markdown, Path(src), page.file.src_uri)
    start = time.perf_counter()
    markdown, count = execute_page(markdown, page.file.src_uri)
    STATS["blocks"] += count
    STATS["pages"] += bool(count)
    STATS["seconds"] += time.perf_counter() - start
    return markdown


def on_post_build(config, **kwargs):
    log.info(
        f"executed {STATS['blocks']} python blocks on {STATS['pages']} pages "
        f"in {STATS['seconds']:.1f}s"
    )
    problems = coverage.check_site(Path(config["site_dir"]))
    if problems:
        raise PluginError("the API reference is incomplete:\n  " + "\n  ".join(problems))
