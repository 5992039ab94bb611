"""logship's own metrics for Prometheus: every ``stats()`` figure of every live handler.

Needs the ``prometheus`` extra (``pip install 'pylogship[prometheus]'``)::

    import logship.metrics
    logship.metrics.register()          # into prometheus_client's default registry

Then whatever exposes that registry (``prometheus_client.start_http_server``,
a framework's ``/metrics`` view) shows, for each handler alive at the
scrape, labelled by its ``endpoint`` (the URL with its secrets removed) and
``handler`` (the name ``dictConfig`` gave it, else a number):

- counters ``logship_<name>_total`` for the cumulative figures: emitted,
  adopted, shipped, dropped, rejected, spilled, replayed, retries, corrupt,
  truncated;
- gauges ``logship_<name>`` for the current ones: pending, queued,
  spill_bytes; ``logship_spill_refused`` (1 when the spill folder is refused);
- gauges ``logship_last_success_timestamp_seconds``,
  ``logship_last_error_timestamp_seconds`` and
  ``logship_cert_expiry_timestamp_seconds`` (absent until there is one).

Nothing is kept between scrapes: each reads ``stats()`` afresh.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from logship import lifecycle
from logship.pure.redact_url import redact_url


def _prometheus() -> Any:
    """prometheus_client's metric families, imported when first needed."""
    try:
        from prometheus_client import core
    except ImportError as e:
        raise ImportError(
            "logship.metrics needs the 'prometheus' extra: pip install 'pylogship[prometheus]'"
        ) from e
    return core


__all__ = ["COUNTERS", "GAUGES", "LogshipCollector", "register"]

#: ``stats()`` keys exposed as counters (``logship_<key>_total``).
COUNTERS = (
    "emitted",
    "adopted",
    "shipped",
    "dropped",
    "rejected",
    "spilled",
    "replayed",
    "retries",
    "corrupt",
    "truncated",
    "not_durable",
)
#: ``stats()`` keys exposed as gauges (``logship_<key>``).
GAUGES = ("pending", "queued", "spill_bytes")
#: ``stats()`` times exposed as gauges of seconds since the epoch.
TIMES = {
    "last_success": "logship_last_success_timestamp_seconds",
    "last_error_time": "logship_last_error_timestamp_seconds",
    "cert_expiry": "logship_cert_expiry_timestamp_seconds",
}
_HELP = {
    "emitted": "records handed to the handler",
    "adopted": "events taken over from another process's spill",
    "shipped": "events delivered",
    "dropped": "events lost, and counted",
    "rejected": "events the endpoint refused for good (dead-lettered)",
    "spilled": "events written to the spill",
    "replayed": "events delivered from the spill",
    "retries": "requests to be tried again",
    "corrupt": "damaged spill frames skipped",
    "truncated": "events cut to fit capacity_bytes",
    "not_durable": "events durability='crash' kept in memory only: the region could not be written",
    "pending": "events neither delivered, dropped nor rejected yet",
    "queued": "pending events in memory",
    "spill_bytes": "bytes the spill folder holds",
}
_LABELS = ("endpoint", "handler")
_numbers = itertools.count(1)


def _label_of(handler: Any) -> str:
    name = getattr(handler, "name", None)
    if name:
        return str(name)
    number = getattr(handler, "_metrics_number", None)
    if number is None:
        number = handler._metrics_number = str(next(_numbers))
    return str(number)


class LogshipCollector:
    """A Prometheus collector of every live ``ShipHandler``'s ``stats()``.

    Any registry takes it (a collector is anything with ``collect()``); the
    module imports ``prometheus_client`` only when metrics are collected or
    registered, so it imports without the extra.
    """

    def __init__(self, handlers: Iterable[Any] | None = None) -> None:
        #: The handlers to report: all live ones (None), or these.
        self._handlers = handlers

    def _live(self) -> list[Any]:
        if self._handlers is not None:
            return list(self._handlers)
        return [h for h in lifecycle.live_handlers() if not getattr(h, "_closed", False)]

    def collect(self) -> Iterator[Any]:
        """One family per figure, one sample per handler."""
        core = _prometheus()
        CounterMetricFamily, GaugeMetricFamily = core.CounterMetricFamily, core.GaugeMetricFamily
        rows = []
        for handler in self._live():
            try:
                stats = handler.stats()
            except Exception:  # a scrape must never fail because of one handler
                continue
            shown = ",".join(redact_url(u) for u in handler.options.url)
            rows.append(((shown, _label_of(handler)), stats))
        for key in COUNTERS:
            family = CounterMetricFamily(f"logship_{key}", _HELP[key], labels=_LABELS)
            for labels, stats in rows:
                family.add_metric(labels, float(stats[key]))
            yield family
        for key in GAUGES:
            gauge = GaugeMetricFamily(f"logship_{key}", _HELP[key], labels=_LABELS)
            for labels, stats in rows:
                gauge.add_metric(labels, float(stats[key]))
            yield gauge
        refused = GaugeMetricFamily(
            "logship_spill_refused", "1 when the spill folder is refused", labels=_LABELS
        )
        for labels, stats in rows:
            refused.add_metric(labels, 1.0 if stats.get("spill_refused") else 0.0)
        yield refused
        for key, name in TIMES.items():
            times = GaugeMetricFamily(name, f"{key}, seconds since the epoch", labels=_LABELS)
            for labels, stats in rows:
                if stats.get(key) is not None:
                    times.add_metric(labels, float(stats[key]))
            yield times


def register(registry: Any = None) -> LogshipCollector:
    """Register a collector of every live handler into ``registry`` (the default one); return it.

    Raises ``ImportError`` naming the extra when ``prometheus_client`` is missing.
    """
    core = _prometheus()
    collector = LogshipCollector()
    (registry if registry is not None else core.REGISTRY).register(collector)
    return collector
