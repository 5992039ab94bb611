"""benchmarks/install.py: a peer whose package will not install is recorded, not fatal.

These run the real pip, with ``--no-index`` so that nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)

import install  # noqa: E402
import peers  # noqa: E402


def test_every_peer_package_is_in_the_bench_extra():
    names = set(map(install.requirement_name, install.bench_requirements()))
    assert peers.PEERS
    for peer in peers.PEERS:
        assert set(map(install.requirement_name, peer.packages)) <= names, peer.kind
    assert set(install.HARNESS) <= names


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("psutil", "psutil"),
        ("Fluent_Logger>=0.10", "fluent-logger"),
        ("opentelemetry.sdk ; python_version >= '3.9'", "opentelemetry-sdk"),
        ("python-logstash-async[extra]", "python-logstash-async"),
    ],
)
def test_requirement_names_are_normalised(requirement, name):
    assert install.requirement_name(requirement) == name


def test_a_requirement_that_cannot_be_installed_is_recorded_with_pips_reason(tmp_path):
    offline = ["--no-index", "--find-links", str(tmp_path)]
    failures = install.install_each(["logship-no-such-package-xyz==1.0", "pip"], offline)
    assert list(failures) == ["logship-no-such-package-xyz"]  # pip itself is already there
    assert "logship-no-such-package-xyz" in failures["logship-no-such-package-xyz"]


def test_a_failed_package_names_its_peer_as_skipped(tmp_path):
    path = tmp_path / "failures.json"
    path.write_text(json.dumps({"fluent-logger": "ERROR: no wheel for this Python"}))
    failures = install.read_failures(str(path))
    fluent = next(p for p in peers.PEERS if p.kind == "fluent")
    otel = next(p for p in peers.PEERS if p.kind == "otel")
    assert install.not_installed(fluent.packages, failures) == (
        "fluent-logger could not be installed: ERROR: no wheel for this Python"
    )
    assert install.not_installed(otel.packages, failures) is None
    assert install.read_failures(str(tmp_path / "absent.json")) == {}
