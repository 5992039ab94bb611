"""``logship spill status|replay|purge``: inspect, send or clear what is spilled.

``--dir`` names one spill folder, or a folder of them (the default is the
cache folder that holds every endpoint's default spill folder). Files being
written by a live handler are never replayed or deleted from here: that
handler replays them itself when its endpoint answers. A folder that is not
the user's own is reported, never replayed or purged. Nothing read from a
file (an endpoint, a reason) is printed with a secret or a control
character in it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import logship
from logship.cli import spillinspect as si
from logship.pure.diagnosis import hint as kind_hint
from logship.pure.options import url_protocol
from logship.pure.printable import printable
from logship.pure.redact_url import MASK, normalize_url, redact_url
from logship.pure.retry import Verdict, classify, hold_hint
from logship.pure.sealing import Sealer, parse_key
from logship.worker.sender import status_hint
from logship.worker.spill import folder as sf
from logship.worker.spill.deadletters import DEAD_LETTER_NAME
from logship.worker.spill.safefiles import UnsafeFolder

_POLL = 0.1
# Summaries here treat this process's own handlers as gone: the replaying
# handler's claimed files still count as "left to send" until deleted.
_OURS: set[str] = set()


def _sealer() -> Sealer | None:
    """The key of ``LOGSHIP_SPILL_KEY``, to read encrypted spill files."""
    key = os.environ.get("LOGSHIP_SPILL_KEY")
    return Sealer(parse_key(key)) if key else None


def add_parser(subparsers: Any) -> None:
    """Register ``spill`` and its three actions."""
    p = subparsers.add_parser("spill", help="inspect, replay or purge spilled events")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, helptext in (
        ("status", "show files, events, bytes and age per endpoint"),
        ("replay", "send what is spilled, then exit non-zero if anything remains"),
        ("purge", "delete what is spilled (asks first unless --yes)"),
    ):
        a = actions.add_parser(name, help=helptext)
        a.add_argument("--dir", help="a spill folder, or a folder of them (default: the cache)")
        a.set_defaults(run=run)
    actions.choices["status"].add_argument(
        "--dead-letters",
        action="store_true",
        help="print every rejected event as a JSON line, with the status and reason",
    )
    replay = actions.choices["replay"]
    replay.add_argument("--url", help="send here instead of the endpoint the files record")
    replay.add_argument(
        "--timeout", type=float, default=30.0, help="give up after this long without progress"
    )
    purge = actions.choices["purge"]
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.add_argument(
        "--dead-letters", action="store_true", help="delete the dead-letter files too"
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; returns the exit status."""
    root = args.dir or sf.cache_root()
    if args.dir is not None:
        # "link/" would name what a link points to: the folder checks must see the link.
        root = args.dir.rstrip(os.sep) or os.sep
        if not os.path.lexists(root):  # a typo must not read as "nothing spilled"
            print(f"logship spill: error: --dir {args.dir}: no such folder", file=sys.stderr)
            return 2
    folders = si.find_folders(root)
    if args.action == "status":
        if args.dead_letters:
            return dead_letters(folders)
        return status(folders, root)
    if args.action == "replay":
        return replay(folders, root, args.url, args.timeout)
    return purge(folders, root, args.yes, args.dead_letters)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def status(folders: list[str], root: str) -> int:
    """Print one block per spill folder; 0 always (it only reads)."""
    if not folders:
        print(f"nothing spilled under {root}")
        return 0
    now = time.time()
    sealer = _sealer()
    for folder in folders:
        s = si.summarize(folder, _OURS, sealer)
        print(folder)
        if s.refused:
            print(f"  refused       {s.refused}: logship will not use it (docs/security.md)")
        print(f"  endpoint      {printable(s.url or 'unknown', 200)}")
        oldest = f", oldest {_age(now - s.oldest)} old" if s.oldest is not None else ""
        print(f"  spilled       {s.events} events in {s.files} files, {s.bytes} bytes{oldest}")
        if s.regions:
            print(
                f"  regions       {s.regions} files left by processes that died "
                "(durability='crash'), counted above: the next handler replays them"
            )
        if s.live_files:
            pids = ", ".join(str(p) for p in sorted(s.live_owners))
            print(f"  being written {s.live_files} files by live process(es) {pids}")
        if s.locked_files:
            print(
                f"  encrypted     {s.locked_files} files under a key not given "
                "(set LOGSHIP_SPILL_KEY to count their events)"
            )
        if s.corrupt:
            print(f"  corrupt       {s.corrupt} damaged regions (skipped on replay)")
        # Read as a stream: only the latest few batches are kept.
        letters = si.read_dead_letters(folder, sealer, keep=_LATEST)
        if letters.count or letters.corrupt:
            damaged = f", {letters.corrupt} damaged regions" if letters.corrupt else ""
            print(
                f"  dead letters  {letters.events} events in {letters.count} "
                f"rejected batches{damaged} ({DEAD_LETTER_NAME}; --dead-letters prints them)"
            )
            _latest_rejections(letters)
    return 0


# The summary shows this many of the latest rejections; --dead-letters shows all.
_LATEST = 3
_REASON_CHARS = 100


def _latest_rejections(letters: si.DeadLetters) -> None:
    for b in letters.batches:
        if b.events is None:
            print(f"    a rejected batch that cannot be read: {letters.locked_why}")
            continue
        when = _utc(b.time) if b.time is not None else "time unknown"
        status = b.status or "no status"
        print(f"    {when}  {status}  {len(b.events)} events  {_one_line(b.reason)}")
    if letters.count > len(letters.batches):
        print(f"    … and {letters.count - len(letters.batches)} earlier")


def _one_line(reason: str) -> str:
    """The server's reason on one short line (the file keeps it as the server said it)."""
    return printable(reason.strip(), _REASON_CHARS) or "no reason given"


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def dead_letters(folders: list[str]) -> int:
    """Print every dead-lettered event as a JSON line; 1 if some could not be read.

    Each line holds the event and why its batch was rejected:
    ``{"rejected_at", "status", "reason", "url", "folder", "event"}``. The
    files are read as a stream, one batch at a time.
    """
    sealer = _sealer()
    unreadable = 0
    for folder in folders:
        letters = si.DeadLetterReader(folder, sealer)
        for b in letters:
            for event in b.events or ():
                line = {
                    "rejected_at": _utc(b.time) if b.time is not None else None,
                    "status": b.status,
                    "reason": b.reason,
                    "url": b.url,
                    "folder": folder,
                    "event": event,
                }
                # ASCII: the line survives any terminal or pipe encoding; jq decodes it.
                print(json.dumps(line, default=repr))
        if letters.locked:
            print(
                f"{folder}: {letters.locked} rejected batches cannot be read: {letters.locked_why}",
                file=sys.stderr,
            )
        if letters.corrupt:
            print(f"{folder}: {letters.corrupt} damaged regions skipped", file=sys.stderr)
        unreadable += letters.locked + letters.corrupt
    return 1 if unreadable else 0


# -- replay ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Target:
    """Where one folder's files are sent, and whether the token goes with them."""

    url: str  # to send to (may hold the secrets LOGSHIP_URL or --url gave)
    token: bool  # LOGSHIP_TOKEN / LOGSHIP_TOKEN_FILE are sent
    why_no_token: str = ""


def _target(s: si.FolderSummary, url: str | None) -> _Target | str:
    """Where to send a folder, or why it cannot be sent (a usage error).

    The token goes only to the endpoint it was given for: ``--url``, or the
    endpoint the files record when it is ``LOGSHIP_URL`` (spelled either
    way). Anywhere else the files are sent without it. Files record their
    endpoint redacted: one whose secrets were masked needs ``--url`` or
    ``LOGSHIP_URL``.
    """
    if url:
        return _Target(url, True)
    recorded = set(s.urls.values()) or ({s.url} if s.url else set())
    if not recorded:
        return "no endpoint recorded; pass --url"
    if len(recorded) > 1:
        named = ", ".join(sorted(recorded))
        return f"its files record {len(recorded)} endpoints ({named}); pass --url"
    (shown,) = recorded
    env_url = os.environ.get("LOGSHIP_URL")
    if env_url and _same_endpoint(env_url, shown):
        return _Target(env_url, True)
    if MASK in shown:
        return (
            f"its files record {shown}, whose secrets are not stored: pass --url, "
            "or set LOGSHIP_URL to it"
        )
    why = "" if not _token_given() else f"it is not LOGSHIP_URL (pass --url {shown} to send it)"
    return _Target(shown, False, why)


def _same_endpoint(url: str, recorded: str) -> bool:
    return redact_url(normalize_url(url)) == redact_url(normalize_url(recorded))


def _token_given() -> bool:
    return any(os.environ.get(k) for k in _TOKEN_VARIABLES)


_TOKEN_VARIABLES = ("LOGSHIP_TOKEN", "LOGSHIP_TOKEN_FILE")


@contextlib.contextmanager
def _no_token_from_environment(token: bool) -> Iterator[None]:
    """While a handler is built: without ``token``, it finds no token in the environment."""
    saved = {} if token else {k: os.environ.pop(k) for k in _TOKEN_VARIABLES if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _why_not_sent(st: dict[str, Any]) -> str:
    """What the last failed attempt says about the endpoint, precisely."""
    kind, error = st["last_error_kind"], st["last_error"]
    if kind is None:
        return "no answer from the endpoint"
    if kind.startswith("http-"):
        code = int(kind[5:])
        hint = hold_hint(code) if classify(code) is Verdict.HOLD else status_hint(code)
        return f"the endpoint answered {code}: {hint}"
    return f"{kind_hint(kind)} ({error})"


def _replay_folder(folder: str, target: _Target, timeout: float, protocol: str) -> int:
    """Adopt and send one folder's files, in ``protocol``; returns the spill files left."""
    with _no_token_from_environment(target.token):
        handler = logship.ShipHandler(
            url=target.url,
            spill_dir=folder,
            shutdown_timeout=5.0,
            protocol=protocol,  # type: ignore[arg-type]
        )
    sealer = _sealer()  # the handler takes LOGSHIP_SPILL_KEY too: count what it can open
    tty = sys.stdout.isatty()
    try:
        last_progress, last_shipped = time.monotonic(), -1
        last_line = ""
        while True:
            st = handler.stats()
            remaining = si.summarize(folder, _OURS, sealer)
            line = (
                f"  sent {st['replayed']:>8}  dropped {st['dropped']:>6}  "
                f"left on disk {remaining.events:>8}"
            )
            if tty:
                print("\r" + line, end="", flush=True)
            elif line != last_line:
                print(line, flush=True)
            last_line = line
            # Files under a key not given can never be sent from here: said below.
            adoptable = remaining.files - remaining.live_files - remaining.locked_files
            if not adoptable and st["pending"] == 0:
                break
            if st["shipped"] != last_shipped:
                last_shipped, last_progress = st["shipped"], time.monotonic()
            elif time.monotonic() - last_progress > timeout:
                print(f"\n  nothing sent for {timeout:g} s")  # why: said below
                break
            time.sleep(_POLL)
    finally:
        handler.close()
    if tty:
        print()
    return _report_left(folder, sealer, handler.stats())


def _report_left(folder: str, sealer: Sealer | None, st: dict[str, Any]) -> int:
    """Say what is left in ``folder`` and why; returns the spill files left."""
    left = si.summarize(folder, _OURS, sealer)
    undelivered = left.files - left.live_files - left.locked_files
    if undelivered:
        print(f"{folder}: {left.events} events in {undelivered} files left: {_why_not_sent(st)}")
    if left.live_files:
        pids = ", ".join(str(p) for p in sorted(left.live_owners))
        print(
            f"{folder}: {left.live_files} files are being written by live process(es) {pids}, "
            "which replay them themselves"
        )
    if left.locked_files:
        print(
            f"{folder}: {left.locked_files} files are encrypted under a key not given "
            "(set LOGSHIP_SPILL_KEY to the key they were written with)"
        )
    return left.files


def replay(folders: list[str], root: str, url: str | None, timeout: float) -> int:
    """Replay every folder; 1 if any spill file remains, 2 if an endpoint is unknown.

    Before sending, each file is listed with where it goes.
    """
    if not folders:
        print(f"nothing spilled under {root}")
        return 0
    logging.getLogger("logship").setLevel(logging.WARNING)
    left = 0
    for folder in folders:
        s = si.summarize(folder, _OURS)
        if s.refused:
            print(f"{folder}: {s.refused}: not replayed (docs/security.md)")
            left += s.files
            continue
        target = _target(s, url)
        if isinstance(target, str):
            print(f"{folder}: {target}", file=sys.stderr)
            return 2
        shown = redact_url(target.url)
        for f in sf.list_files(folder):
            print(f"{f.path} -> {shown}")
        if target.why_no_token:
            print(f"  no token sent to {shown}: {target.why_no_token}")
        # As the files were sent: a spilled Splunk or Loki batch is no JSON
        # array. Files from before headers named the protocol: a scheme only
        # one protocol takes (tcp://, tls://, unix://: forward) names it.
        protocol = s.protocol or url_protocol(target.url) or "http"
        left += _replay_folder(folder, target, timeout, protocol)
    if left:
        print(f"{left} spill files remain")
        return 1
    print("everything spilled was delivered")
    return 0


def purge(folders: list[str], root: str, yes: bool, dead_letters: bool) -> int:
    """Delete spill files after confirmation; 1 when not confirmed, or a folder is refused."""
    if not folders:
        print(f"nothing spilled under {root}")
        return 0
    total = sum(si.summarize(f, _OURS).events for f in folders)
    if not yes:
        prompt = f"Delete {total} spilled events in {len(folders)} folder(s) under {root}? [y/N] "
        try:
            answer = input(prompt) if sys.stdin and sys.stdin.isatty() else ""
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted (pass --yes to skip this question)")
            return 1
    refused = 0
    for folder in folders:
        try:
            deleted, kept = si.purge(folder, _OURS, dead_letters)
        except UnsafeFolder as e:
            print(f"{folder}: {e}: nothing deleted (docs/security.md)")
            refused += 1
            continue
        kept_note = f", kept {kept} being written by live processes" if kept else ""
        print(f"{folder}: deleted {deleted} files{kept_note}")
    return 1 if refused else 0
