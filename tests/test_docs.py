"""The documentation cannot drift from the code it describes."""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import logship

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_stats_key_is_documented():
    doc = (ROOT / "docs" / "delivery.md").read_text()
    h = logship.ShipHandler(url="http://127.0.0.1:9/x", spill=False)
    try:
        keys = set(h.stats())
    finally:
        h.close()
    documented = set(re.findall(r"`(\w+)`", doc.split("## Reading `stats()`")[1].split("##")[0]))
    assert keys <= documented, f"undocumented stats keys: {keys - documented}"


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


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
