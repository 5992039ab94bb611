"""The documentation cannot drift from the code it describes."""

from __future__ import annotations

import dataclasses
import pathlib
import re

import logship
from logship.pure.options import Options

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_option_is_documented_and_nothing_else():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    table = {
        m
        for line in doc.splitlines()
        if line.startswith("| `")
        for m in re.findall(r"`(\w+)`", line.split("|")[1])
    }
    options = {f.name for f in dataclasses.fields(Options)}
    assert options <= table, f"undocumented options: {options - table}"
    assert table - {"level"} <= options, f"documented but not options: {table - options}"


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
