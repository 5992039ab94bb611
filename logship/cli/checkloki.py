"""``logship check --protocol loki``: the test event as a Loki push, and Loki's answer.

The event goes to ``/loki/api/v1/push`` (when the URL has no path) as a
handler sends it (:func:`~logship.cli.checkhttp.check_post`), with the
handler's ``--header``s: ``X-Scope-OrgID`` names the tenant. Loki's answers
are plain text; the two whose fix is not the HTTP status's are named here.
"""

from __future__ import annotations

from logship.cli.checkhttp import check_post
from logship.cli.tlsinfo import Finding
from logship.pure.options import Options
from logship.pure.protocols import Answer
from logship.pure.protocols.loki import LOKI

#: Loki's words for a line outside the window of time it takes.
_OUT_OF_TIME = ("too far behind", "timestamp too old", "timestamp too new")


def judge_loki(
    answer: Answer, status: str, what: str, opts: Options, token_from: str | None
) -> Finding | None:
    """What Loki's words say about the test push; None when the status says it all."""
    said = answer.body.strip()
    if answer.status == 401 and "no org id" in said.lower():
        return Finding(
            "FAIL",
            f"{status}: Loki runs multi-tenant and no tenant was named ({what})",
            "send the tenant: --header 'X-Scope-OrgID: <tenant>' (handler option headers)",
        )
    if answer.status == 400 and any(words in said.lower() for words in _OUT_OF_TIME):
        return Finding(
            "FAIL",
            f"{status}: Loki refused the event's time: {said[:300]!r} ({what})",
            "this host's clock and Loki's disagree: check NTP on both (timedatectl, "
            "chronyc tracking)",
        )
    return None


def check_loki(opts: Options, token_from: str | None) -> tuple[Finding, str | None, float]:
    """Push the test event to Loki; the finding, the server's ``Date`` and when it was sent."""
    return check_post(opts, token_from, LOKI, judge_loki)
