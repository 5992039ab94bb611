"""``logship check --protocol splunk``: the test event as an HEC envelope, and HEC's answer.

The event goes to ``/services/collector/event`` (when the URL has no path)
with ``Authorization: Splunk <token>``, exactly as a handler sends it
(:func:`~logship.cli.checkhttp.check_post`). HEC's answers carry a
``code`` of their own; the ones whose fix is not the HTTP status's are
named here, the others are judged by their status.
"""

from __future__ import annotations

from logship.cli.checkhttp import check_post
from logship.cli.tlsinfo import Finding
from logship.pure.options import Options
from logship.pure.protocols import Answer
from logship.pure.protocols.splunk import SPLUNK, hec_error

_CHANNEL_FIX = (
    "the token has indexer acknowledgement on, which wants a channel on every request: "
    "turn acknowledgement off for this token, or send one with "
    "--header 'X-Splunk-Request-Channel: <a GUID>' (handler option headers)"
)

#: HEC's ``code`` to ``(verdict, what it means, the fix)``, where the status alone misleads.
HEC_CODES: dict[int, tuple[str, str, str]] = {
    1: ("FAIL", "the token is disabled", "enable the token in Splunk (HTTP Event Collector)"),
    6: (
        "FAIL",
        "HEC could not read the event",
        "check that the URL is HEC's JSON event endpoint (/services/collector/event) and "
        "that no proxy rewrites the body",
    ),
    7: (
        "FAIL",
        "the token may not write to this index",
        "add the index to the token's allowed indexes in Splunk, or use one it allows",
    ),
    9: (
        "WARN",
        "HEC is busy",
        "Splunk's queues are full; the handler retries with back-off: check the indexers",
    ),
    10: ("FAIL", "no data channel was sent", _CHANNEL_FIX),
    11: ("FAIL", "the data channel is not valid", _CHANNEL_FIX),
}


def judge_hec(
    answer: Answer, status: str, what: str, opts: Options, token_from: str | None
) -> Finding | None:
    """What HEC's own ``code`` says about the test event; None when the status says it all."""
    code, _failed = hec_error(answer.body)
    if code is None or code not in HEC_CODES or answer.status is None or answer.status < 300:
        return None
    verdict, meaning, fix = HEC_CODES[code]
    said = answer.body.strip()[:300]
    return Finding(verdict, f"{status}: {meaning} (HEC code {code}, {said!r}; {what})", fix)


def check_splunk(opts: Options, token_from: str | None) -> tuple[Finding, str | None, float]:
    """Send the test event to HEC; the finding, the server's ``Date`` and when it was sent."""
    return check_post(opts, token_from, SPLUNK, judge_hec)
