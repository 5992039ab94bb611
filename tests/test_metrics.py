"""logship's own metrics, scraped from a real prometheus_client HTTP exposition."""

from __future__ import annotations

import urllib.request

import pytest

from conftest import attach, require_within

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="the prometheus extra (prometheus_client) is not installed"
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import logship.metrics  # noqa: E402


@pytest.fixture
def scrape():
    """Serve a fresh registry holding logship's collector; ``scrape()`` reads it over HTTP."""
    registry = prometheus_client.CollectorRegistry()
    logship.metrics.register(registry)
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_address[1]

    def read() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                out.setdefault(sample.name, {})[labels] = sample.value
        return out

    yield read
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_every_figure_of_every_live_handler_is_exposed(server, make_handler, scrape, refused_url):
    good = make_handler(server.url() + "?api_key=s3cr3t")
    good.set_name("ship")
    down = make_handler(refused_url.replace("http://", "http://user:pw@"), shutdown_timeout=0.5)
    attach(good, "good").info("one")
    attach(good, "good").info("two")
    attach(down, "down").info("lost soon")
    assert good.flush(5)
    require_within(lambda: down.stats()["last_error_time"] is not None, what="a failed attempt")
    metrics = scrape()
    good_labels = (("endpoint", server.url() + "?api_key=***"), ("handler", "ship"))
    assert metrics["logship_emitted_total"][good_labels] == 2
    assert metrics["logship_shipped_total"][good_labels] == 2
    assert metrics["logship_pending"][good_labels] == 0
    assert good_labels in metrics["logship_last_success_timestamp_seconds"]
    for key in logship.metrics.COUNTERS:
        assert f"logship_{key}_total" in metrics, key
    for key in logship.metrics.GAUGES:
        assert f"logship_{key}" in metrics, key
    (down_labels,) = [k for k in metrics["logship_pending"] if k != good_labels]
    endpoint = dict(down_labels)["endpoint"]
    assert "pw" not in endpoint and "***" in endpoint  # credentials removed
    assert metrics["logship_pending"][down_labels] == 1
    assert down_labels in metrics["logship_last_error_timestamp_seconds"]


def test_a_closed_handler_is_no_longer_reported(server, make_handler, scrape):
    h = make_handler(server.url())
    h.set_name("short-lived")
    attach(h).info("x")
    assert h.flush(5)
    assert any(dict(k)["handler"] == "short-lived" for k in scrape()["logship_emitted_total"])
    h.close()
    assert not any(
        dict(k)["handler"] == "short-lived" for k in scrape().get("logship_emitted_total", {})
    )


def test_every_number_stats_gives_has_a_metric(server, make_handler):
    """A counter or gauge added to stats() and not to logship.metrics fails here."""
    h = make_handler(server.url())
    attach(h).info("x")
    assert h.flush(5)
    numbers = {k for k, v in h.stats().items() if isinstance(v, (int, float))}
    numbers |= set(logship.metrics.TIMES)  # None until they happen
    exposed = {*logship.metrics.COUNTERS, *logship.metrics.GAUGES, *logship.metrics.TIMES}
    assert numbers == exposed
