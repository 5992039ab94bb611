"""``logship spill status|replay|purge``: inspect, send or clear what is spilled.

``--dir`` names one spill folder, or a folder of them (the default is the
cache folder that holds every endpoint's default spill folder). Files being
written by a live handler are never replayed or deleted from here: that
handler replays them itself when its endpoint answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import logship
from logship.pure.sealing import Sealer, parse_key
from logship.worker import spillfolder as sf

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
    folders = sf.find_folders(root)
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
        s = sf.summarize(folder, _OURS, sealer)
        print(folder)
        print(f"  endpoint      {s.url or 'unknown'}")
        oldest = f", oldest {_age(now - s.oldest)} old" if s.oldest is not None else ""
        print(f"  spilled       {s.events} events in {s.files} files, {s.bytes} bytes{oldest}")
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
        letters = sf.read_dead_letters(folder, sealer)
        if letters.batches or letters.corrupt:
            damaged = f", {letters.corrupt} damaged regions" if letters.corrupt else ""
            print(
                f"  dead letters  {letters.events} events in {len(letters.batches)} "
                f"rejected batches{damaged} ({sf.DEAD_LETTER_NAME}; --dead-letters prints them)"
            )
            _latest_rejections(letters)
    return 0


# The summary shows this many of the latest rejections; --dead-letters shows all.
_LATEST = 3
_REASON_CHARS = 100


def _latest_rejections(letters: sf.DeadLetters) -> None:
    batches = letters.batches
    for b in batches[-_LATEST:]:
        if b.events is None:
            print(f"    a rejected batch that cannot be read: {letters.locked_why}")
            continue
        when = _utc(b.time) if b.time is not None else "time unknown"
        status = b.status or "no status"
        print(f"    {when}  {status}  {len(b.events)} events  {_one_line(b.reason)}")
    if len(batches) > _LATEST:
        print(f"    … and {len(batches) - _LATEST} earlier")


def _one_line(reason: str) -> str:
    """The server's reason on one short line, with nothing a terminal would act on."""
    printable = "".join(c if c.isprintable() else " " for c in reason)
    text = " ".join(printable.split()) or "no reason given"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def dead_letters(folders: list[str]) -> int:
    """Print every dead-lettered event as a JSON line; 1 if some could not be read.

    Each line holds the event and why its batch was rejected:
    ``{"rejected_at", "status", "reason", "url", "folder", "event"}``.
    """
    sealer = _sealer()
    unreadable = 0
    for folder in folders:
        letters = sf.read_dead_letters(folder, sealer)
        for b in letters.batches:
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


def _replay_folder(folder: str, url: str, timeout: float) -> int:
    """Adopt and send one folder's files; returns the spill files left afterwards."""
    handler = logship.ShipHandler(url=url, spill_dir=folder, shutdown_timeout=5.0)
    sealer = _sealer()  # the handler takes LOGSHIP_SPILL_KEY too: count what it can open
    try:
        last_progress, last_shipped = time.monotonic(), -1
        tty = sys.stdout.isatty()
        last_line = ""
        while True:
            st = handler.stats()
            remaining = sf.summarize(folder, _OURS, sealer)
            line = (
                f"  adopted {st['adopted']:>8}  replayed {st['replayed']:>8}  "
                f"dropped {st['dropped']:>6}  on disk {remaining.events:>8}"
            )
            if tty:
                print("\r" + line, end="", flush=True)
            elif line != last_line:
                print(line, flush=True)
            last_line = line
            adoptable = remaining.files - remaining.live_files
            if not adoptable and st["pending"] == 0:
                break
            if st["shipped"] != last_shipped:
                last_shipped, last_progress = st["shipped"], time.monotonic()
            elif time.monotonic() - last_progress > timeout:
                print(f"\n  no progress for {timeout:.0f} s: {st['last_error'] or 'no answer'}")
                break
            time.sleep(_POLL)
    finally:
        handler.close()
    if tty:
        print()
    return sf.summarize(folder, _OURS).files


def replay(folders: list[str], root: str, url: str | None, timeout: float) -> int:
    """Replay every folder; 1 if any spill file remains, 2 if an endpoint is unknown."""
    if not folders:
        print(f"nothing spilled under {root}")
        return 0
    logging.getLogger("logship").setLevel(logging.WARNING)
    left = 0
    for folder in folders:
        target = url or sf.summarize(folder, _OURS).url
        if not target:
            print(f"{folder}: no endpoint recorded; pass --url", file=sys.stderr)
            return 2
        print(f"{folder} -> {target}")
        left += _replay_folder(folder, target, timeout)
    if left:
        print(f"{left} spill files remain (endpoint unreachable, or written by live processes)")
        return 1
    print("everything spilled was delivered")
    return 0


def purge(folders: list[str], root: str, yes: bool, dead_letters: bool) -> int:
    """Delete spill files after confirmation; 1 when not confirmed."""
    if not folders:
        print(f"nothing spilled under {root}")
        return 0
    total = sum(sf.summarize(f, _OURS).events for f in folders)
    if not yes:
        prompt = f"Delete {total} spilled events in {len(folders)} folder(s) under {root}? [y/N] "
        try:
            answer = input(prompt) if sys.stdin and sys.stdin.isatty() else ""
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted (pass --yes to skip this question)")
            return 1
    for folder in folders:
        deleted, kept = sf.purge(folder, _OURS, dead_letters)
        kept_note = f", kept {kept} being written by live processes" if kept else ""
        print(f"{folder}: deleted {deleted} files{kept_note}")
    return 0
