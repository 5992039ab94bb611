"""The documentation cannot drift from the code it describes."""

from __future__ import annotations

import ast
import contextvars
import doctest
import importlib
import inspect
import os
import pathlib
import pkgutil
import re
import signal
from collections.abc import Iterator

import pytest

import logship

ROOT = pathlib.Path(__file__).resolve().parent.parent


def stats_keys() -> set[str]:
    """The keys of a real handler's ``stats()``."""
    h = logship.ShipHandler(url="http://127.0.0.1:9/x", spill=False)
    try:
        return set(h.stats())
    finally:
        h.close()


def test_every_stats_key_is_in_the_api_reference_and_nothing_else():
    doc = (ROOT / "docs" / "api.md").read_text()
    section = doc.split("## The keys of `stats()`")[1].split("\n::: ")[0].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = [re.fullmatch(r"`(\w+)`", row.split("|")[1].strip())[1] for row in rows]
    assert len(documented) == len(set(documented)), "a stats key is in the table twice"
    keys = stats_keys()
    assert keys <= set(documented), f"undocumented stats keys: {keys - set(documented)}"
    assert set(documented) <= keys, f"documented but not stats keys: {set(documented) - keys}"


def test_the_stats_docstring_names_every_key():
    doc = inspect.getdoc(logship.ShipHandler.stats) or ""
    missing = {k for k in stats_keys() if f"``{k}``" not in doc}
    assert not missing, f"ShipHandler.stats's docstring does not name {missing}"


def documented_object(path: str) -> object:
    """The object a ``::: path`` line of api.md renders (module path, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def test_every_public_name_is_on_the_api_reference():
    doc = (ROOT / "docs" / "api.md").read_text()
    rendered = [documented_object(p) for p in re.findall(r"^::: ([\w.]+)$", doc, re.M)]
    for name in logship.__all__:
        if name.startswith("__"):  # __version__: a string, described in words
            assert f"`logship.{name}`" in doc, name
        else:
            obj = getattr(logship, name)
            assert any(r is obj for r in rendered), f"api.md renders no logship.{name}"


# -- the redaction reference: names and defaults (the options' table: test_options.py) ----------

MiB = 1024 * 1024


def table_rows(doc: str, header: str) -> list[tuple[list[str], str]]:
    """``(names, default)`` of each row of the Markdown table whose header row is ``header``."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((re.findall(r"`(\w+)`", cells[0]), cells[1]))
    return rows


def documented_default(cell: str) -> object:
    """The value a default cell names: `LOGSHIP_*` and "none" are None; sizes and seconds."""
    if cell.startswith("`LOGSHIP_") or cell == "none":
        return None
    if cell.startswith("`"):
        return ast.literal_eval(cell.split("`")[1])
    number = re.fullmatch(r"([\d.,]+)( MiB| s)?", cell)
    assert number, f"cannot read the default {cell!r}"
    value = float(number[1].replace(",", ""))
    if number[2] == " MiB":
        return int(value * MiB)
    return value if number[2] == " s" else int(value)


def test_redaction_options_are_documented_with_their_defaults() -> None:
    doc = (ROOT / "docs" / "redaction.md").read_text()
    params = {
        name: p.default
        for name, p in inspect.signature(logship.RedactFilter).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    rows = {names[0]: cell for names, cell in table_rows(doc, "| option | default |")}
    assert set(rows) == set(params)
    for name, default in params.items():
        documented = documented_default(rows[name])
        assert documented == (default or None), f"{name}: {rows[name]!r} != {default!r}"


# -- the site: every page in the nav, every link resolves ---------------------------------------


def test_every_page_is_in_the_nav_and_every_entry_exists() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config.split("\nnav:\n", 1)[1]
    entries = re.findall(r"^\s+- (?:[^:\n]+: )?([\w./-]+\.md)\s*$", nav, re.M)
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert len(entries) == len(set(entries)), "a page is in the nav twice"
    assert pages - set(entries) == set(), "pages missing from mkdocs.yml's nav"
    assert set(entries) - pages == set(), "nav entries with no page"


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#")[0]
            if not (page.parent / path).resolve().exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


# -- docstring examples: every module's run, as a reader would type them --------------------------


def package_modules() -> list[str]:
    """Every module of the logship package, found by walking it, so new ones are covered."""
    found = ["logship"]
    for info in pkgutil.walk_packages(logship.__path__, "logship."):
        if info.name.rpartition(".")[2] != "__main__":  # importing it runs the command line
            found.append(info.name)
    return sorted(found)


@pytest.fixture
def doctest_sandbox(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The examples' handlers spill under ``tmp_path``; signal handlers they install are undone."""
    for key in [k for k in os.environ if k.startswith("LOGSHIP_")]:
        monkeypatch.delenv(key)
    # Not the user's cache folder: a handler finding spilled events there would replay them.
    monkeypatch.setenv("LOGSHIP_SPILL_DIR", str(tmp_path))
    catchable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    saved = {sig: signal.getsignal(sig) for sig in catchable}
    yield
    for sig, handler in saved.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


@pytest.mark.parametrize("name", package_modules())
@pytest.mark.usefixtures("doctest_sandbox")
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner()
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, name):
        if any(ex.options.get(doctest.SKIP) for ex in test.examples):
            # A skipped example is one that ships events; its docstring says so.
            assert "receiver" in (test.docstring or ""), f"{test.name}: why is an example skipped?"
        # Each docstring in a context of its own: what an example binds stays there.
        contextvars.copy_context().run(runner.run, test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_the_public_names_have_examples_that_run() -> None:
    """The examples are not all skipped: those of the names on the reference page run."""
    names = (
        "ShipHandler.flush",
        "ShipHandler.stats",
        "RedactFilter",
        "context",
        "bind",
        "install_signal_handlers",
    )
    for name in names:
        obj = logship
        for part in name.split("."):
            obj = getattr(obj, part)
        examples = doctest.DocTestParser().get_examples(inspect.getdoc(obj) or "")
        assert any(not ex.options.get(doctest.SKIP) for ex in examples), name
