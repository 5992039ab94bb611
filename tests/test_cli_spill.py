"""``logship spill status|replay|purge`` (SPEC section 7), run as ``python -m logship``.

The spill folders are made by real handlers (an endpoint that is down, then
``close()``), and every command runs in a real subprocess with a timeout.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import logship
from logship.cli import spillinspect as si
from logship.worker.spill import deadletters as dl
from logship.worker.spill import folder as sf

from conftest import FAST, attach, require_within
from faultserver import FaultServer, status
from procs import plain_env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Any:
    """``python -m logship spill ARGS`` with stdin not a TTY; the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "logship", "spill", *args],
        env=plain_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spill(server: FaultServer, folder: str, n: int, tag: str = "ev", batch: int = 10) -> None:
    """Leave ``n`` events spilled in ``folder`` for ``server``'s URL (down meanwhile)."""
    server.down()
    h = logship.ShipHandler(
        url=server.url(),
        spill_dir=folder,
        batch_max_records=batch,
        **{**FAST, "shutdown_timeout": 0.5},
    )
    log = attach(h, f"spill-{tag}", logging.INFO)
    for i in range(n):
        log.info("%s %d", tag, i)
    h.close()
    server.up()
    assert h.stats()["spilled"] == n, h.stats()


def reject_one(server: FaultServer, make_handler: Callable[..., Any], folder: str) -> None:
    """Have a batch rejected for good, so that it lands in the folder's dead-letter file."""
    server.default = status(422, b"no such stream")
    h = make_handler(server.url(), spill=True, spill_dir=folder)
    attach(h, "rejected").info("rejected 0")
    require_within(lambda: h.stats()["rejected"] == 1, what="the rejection")
    h.close()
    assert os.path.exists(os.path.join(folder, dl.DEAD_LETTER_NAME))


def live_writer(
    server: FaultServer, make_handler: Callable[..., Any], folder: str, **options: Any
) -> Any:
    """An open handler of this process with events spilled in its own file."""
    server.default = status(503)
    h = make_handler(
        server.url(),
        spill=True,
        spill_dir=folder,
        capacity=100,
        batch_max_records=5,
        shutdown_timeout=0.5,
        **options,
    )
    log = attach(h, "live")
    for i in range(0, 300, 10):
        for j in range(i, i + 10):
            log.info("live %d", j)
        # Before the next chunk, at most half the ring and the 4 batches it may hold
        # in memory: the ring (100) never overflows, and the worker must spill.
        require_within(lambda: h.stats()["queued"] <= 50 + 4 * 5, what="the worker to catch up")
    assert h.stats()["spilled"] > 0 and h.stats()["dropped"] == 0, h.stats()
    assert any(f.state == "o" for f in sf.list_files(folder))
    return h


def events_on_disk(folder: str) -> int:
    return si.summarize(folder, set()).events


def numbers(server: FaultServer, tag: str) -> list[int]:
    out = []
    for e in server.events():
        t, _, n = e["message"].partition(" ")
        if t == tag:
            out.append(int(n))
    return out


def test_status_shows_events_files_bytes_and_endpoint(server, tmp_path):
    root = tmp_path / "cache"
    one, two = str(root / "one"), str(root / "two")
    spill(server, one, 40)
    spill(server, two, 7)
    files = sf.list_files(one)

    r = cli("status", "--dir", one)
    assert r.returncode == 0, r.stderr
    size = sum(f.size for f in files)
    assert one in r.stdout
    assert f"endpoint      {server.url()}" in r.stdout
    assert f"spilled       40 events in {len(files)} files, {size} bytes" in r.stdout
    # A folder of spill folders: one block each.
    r = cli("status", "--dir", str(root))
    assert r.returncode == 0, r.stderr
    assert one in r.stdout and two in r.stdout
    assert "40 events" in r.stdout and "7 events" in r.stdout
    # Reading changes nothing.
    assert events_on_disk(one) == 40 and sf.list_files(one) == files


def test_status_reports_damage_dead_letters_and_live_writers(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    # (In this order: a handler that starts replays released files, and a
    # failing one stops replaying after its first failure.)
    reject_one(server, make_handler, folder)
    live_writer(server, make_handler, folder)
    spill(server, folder, 30)
    (f,) = [f for f in sf.list_files(folder) if f.state == "r"]
    with open(f.path, "r+b") as fh:  # a flipped byte in the middle of the file
        fh.seek(f.size // 2)
        byte = fh.read(1)
        fh.seek(f.size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))

    r = cli("status", "--dir", folder)
    assert r.returncode == 0, r.stderr
    assert "corrupt       1 damaged regions" in r.stdout
    assert "dead letters  1 events in 1 rejected batches" in r.stdout
    assert f"by live process(es) {os.getpid()}" in r.stdout


def test_dead_letters_are_readable_with_status(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    reject_one(server, make_handler, folder)

    r = cli("status", "--dir", folder)
    assert r.returncode == 0, r.stderr
    # The summary names the latest rejections: when, the status, how many, why.
    (line,) = [ln for ln in r.stdout.splitlines() if "no such stream" in ln]
    assert re.fullmatch(r"    \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  422  1 events  no such stream", line)

    r = cli("status", "--dir", folder, "--dead-letters")
    assert r.returncode == 0, r.stderr
    (record,) = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert record["status"] == 422 and record["reason"] == "no such stream"
    assert record["url"] == server.url() and record["folder"] == folder
    assert record["event"]["message"] == "rejected 0" and record["event"]["uuid"]
    # Reading changes nothing.
    assert si.read_dead_letters(folder).batches[0].events == [record["event"]]


def damaged_dead_letters(folder: str, batches: int, inside: bytes) -> None:
    """Write ``batches`` one-event dead letters, then flip the first byte of ``inside``."""
    for i in range(batches):
        dl.write_dead_letter(folder, "http://127.0.0.1:9/app", f"k{i}", [{"n": i}], 400, "bad")
    path = os.path.join(folder, dl.DEAD_LETTER_NAME)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[data.index(inside)] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))


def test_damaged_dead_letters_are_skipped_counted_and_the_rest_printed(tmp_path):
    folder = str(tmp_path / "spill")
    damaged_dead_letters(folder, 3, b"k1")  # inside the second batch's frame

    r = cli("status", "--dir", folder, "--dead-letters")
    assert r.returncode == 1
    assert [json.loads(ln)["event"]["n"] for ln in r.stdout.splitlines()] == [0, 2]
    assert "1 damaged regions skipped" in r.stderr
    r = cli("status", "--dir", folder)
    assert "corrupt" not in r.stdout  # dead letters are never replayed
    assert "dead letters  2 events in 2 rejected batches, 1 damaged regions" in r.stdout


def test_a_damaged_dead_letter_header_loses_no_batch(tmp_path):
    folder = str(tmp_path / "spill")
    damaged_dead_letters(folder, 2, b"dead-letter")  # inside the file's header frame

    letters = si.read_dead_letters(folder)
    assert [b.events for b in letters.batches] == [[{"n": 0}], [{"n": 1}]]
    assert letters.corrupt == 1


def test_a_reason_cannot_drive_the_terminal(tmp_path):
    folder = str(tmp_path / "spill")
    reason = "bad\x1b[2J\x1b]0;owned\x07 field\r\nnext"
    dl.write_dead_letter(folder, "http://127.0.0.1:9/app", "k", [{"n": 1}], 400, reason)
    r = cli("status", "--dir", folder)
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    # Escaped as the library's warnings escape it: what the server sent, on one line.
    assert "400  1 events  bad\\x1b[2J\\x1b]0;owned\\x07 field\\r\\nnext" in r.stdout
    r = cli("status", "--dir", folder, "--dead-letters")
    assert "\x1b" not in r.stdout  # JSON escapes it
    assert json.loads(r.stdout)["reason"] == reason


def dead_letters_to(folder: str, stdout: Any) -> Any:
    """``logship spill status --dead-letters`` writing to ``stdout``; the process, started."""
    return subprocess.Popen(
        [sys.executable, "-m", "logship", "spill", "status", "--dir", folder, "--dead-letters"],
        env=plain_env(),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("events", [3, 3000])  # a few lines; far beyond a pipe's 64 KiB
def test_a_reader_gone_before_the_first_line_ends_the_command_quietly(tmp_path, events):
    folder = str(tmp_path / "spill")
    batch = [{"message": "x" * 100, "n": i} for i in range(events)]
    dl.write_dead_letter(folder, "http://127.0.0.1:9/app", "k", batch, 400, "bad")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        p = dead_letters_to(folder, write_end)
    finally:
        os.close(write_end)
    try:
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()  # no-op once it has ended; a hung child must not outlive the test
    assert p.returncode == 1 and "Traceback" not in err and "Exception" not in err, err


def test_a_reader_gone_partway_ends_the_command_quietly(tmp_path):
    folder = str(tmp_path / "spill")
    batch = [{"message": "x" * 100, "n": i} for i in range(3000)]  # far beyond a pipe's 64 KiB
    dl.write_dead_letter(folder, "http://127.0.0.1:9/app", "k", batch, 400, "bad")
    p = dead_letters_to(folder, subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline().startswith("{")  # it is writing...
    p.stdout.close()  # ...and the reader goes away, the pipe full
    try:
        _, err = p.communicate(timeout=30)  # stderr is small: nothing waits on it
    finally:
        p.kill()  # no-op once it has ended; a hung child must not outlive the test
    assert p.returncode == 1 and "Traceback" not in err and "Exception" not in err, err


def test_replay_delivers_everything_and_exits_0(server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 55, batch=10)
    r = cli("replay", "--dir", folder)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "everything spilled was delivered" in r.stdout
    assert sorted(numbers(server, "ev")) == list(range(55))
    assert len(server.uuids()) == 55
    assert not sf.has_spilled(folder)


def test_replay_sends_to_another_url_when_asked(server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 12)
    other = FaultServer().start()
    try:
        r = cli("replay", "--dir", folder, "--url", other.url("/elsewhere"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert sorted(numbers(other, "ev")) == list(range(12))
        assert {q.path for q in other.requests} == {"/elsewhere"}
        assert server.requests == []
    finally:
        other.stop()


def test_replay_exits_1_and_keeps_everything_when_the_endpoint_is_down(server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 30)
    server.down()
    t0 = time.monotonic()
    r = cli("replay", "--dir", folder, "--timeout", "1")
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stdout + r.stderr
    files = len(sf.list_files(folder))
    assert f"{files} spill files remain" in r.stdout, r.stdout
    assert "the connection was refused" in r.stdout
    assert took < 10, f"replay took {took:.1f} s with --timeout 1"
    # Nothing was lost: the files are back, free for the next attempt.
    assert events_on_disk(folder) == 30
    assert {f.state for f in sf.list_files(folder)} == {"r"}
    server.up()
    r = cli("replay", "--dir", folder)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(numbers(server, "ev")) == list(range(30))


def test_purge_asks_first_and_deletes_nothing_without_a_yes(server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 25)
    before = sorted(os.listdir(folder))
    r = cli("purge", "--dir", folder)  # stdin is not a TTY: no answer is a no
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nothing deleted" in r.stdout
    assert sorted(os.listdir(folder)) == before and events_on_disk(folder) == 25


def test_purge_with_yes_deletes_but_keeps_dead_letters_and_live_writers_files(
    server, make_handler, tmp_path
):
    folder = str(tmp_path / "spill")
    # (In this order: a handler that starts replays released files, and a
    # failing one stops replaying after its first failure.)
    reject_one(server, make_handler, folder)
    live = live_writer(server, make_handler, folder)
    own = {f.path for f in sf.list_files(folder)}
    spill(server, folder, 25)
    released = {f.path for f in sf.list_files(folder)} - own
    assert released and own

    r = cli("purge", "--dir", folder, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    kept = len(own)
    said = f"{folder}: deleted {len(released)} files, kept {kept} being written by live processes"
    assert said in r.stdout, r.stdout
    left = {f.path for f in sf.list_files(folder)}
    assert not (left & released), "the released files are deleted"
    assert own <= left, "a live writer's files are not"
    assert os.path.exists(os.path.join(folder, dl.DEAD_LETTER_NAME))

    live.close()
    r = cli("purge", "--dir", folder, "--yes", "--dead-letters")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sf.list_files(folder) == []
    assert not os.path.exists(os.path.join(folder, dl.DEAD_LETTER_NAME))


def test_commands_default_to_the_user_cache_dir(server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in plain_env(HOME=str(home)).items() if not k.startswith("XDG_")}
    r = cli("status", env=dict(env))
    assert r.returncode == 0, r.stderr
    assert "nothing spilled" in r.stdout and str(home / ".cache" / "logship") in r.stdout

    folder = str(home / ".cache" / "logship" / sf.endpoint_slug(server.url()))
    spill(server, folder, 9)
    r = cli("status", env=dict(env))
    assert r.returncode == 0, r.stderr
    assert folder in r.stdout and "9 events" in r.stdout
    r = cli("replay", env=dict(env))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(numbers(server, "ev")) == list(range(9))


@pytest.mark.parametrize("action", ["status", "replay", "purge"])
def test_an_empty_folder_has_nothing_to_do(action, tmp_path):
    r = cli(action, "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "nothing spilled" in r.stdout


@pytest.mark.parametrize("action", ["status", "replay", "purge"])
def test_a_dir_that_does_not_exist_is_a_usage_error(action, tmp_path):
    missing = str(tmp_path / "typo")
    r = cli(action, "--dir", missing, *(["--yes"] if action == "purge" else []))
    assert r.returncode == 2 and r.stdout == ""
    assert f"--dir {missing}: no such folder" in r.stderr


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_dir_given_through_a_link_is_refused_and_left_alone(server, tmp_path, slash):
    real = str(tmp_path / "real")
    spill(server, real, 5)
    files = sorted(os.listdir(real))
    link = tmp_path / "spill"
    link.symlink_to(real)
    r = cli("status", "--dir", str(link) + slash)
    assert r.returncode == 0, r.stderr
    assert f"  refused       the spill folder {link} is a symbolic link" in r.stdout
    r = cli("purge", "--yes", "--dir", str(link) + slash)
    assert r.returncode == 1 and "is a symbolic link" in r.stdout + r.stderr
    assert sorted(os.listdir(real)) == files  # nothing deleted through the link


def with_token(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSHIP_")}
    return {**env, "LOGSHIP_TOKEN": "tok-replay-7f3a9c", **more}


def authorizations(server: FaultServer) -> set[str | None]:
    return {r.headers.get("Authorization") for r in server.requests}


def test_replay_sends_the_token_only_where_it_was_given_for(server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 12)
    (f,) = sf.list_files(folder)
    # LOGSHIP_URL names another endpoint: the one the file records gets no token.
    r = cli("replay", "--dir", folder, env=with_token(LOGSHIP_URL="http://127.0.0.1:1/other"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{f.path} -> {server.url()}" in r.stdout
    assert f"no token sent to {server.url()}" in r.stdout
    assert sorted(numbers(server, "ev")) == list(range(12))
    assert authorizations(server) == {None}


@pytest.mark.parametrize("how", ["LOGSHIP_URL", "--url"])
def test_replay_sends_the_token_to_the_endpoint_named_for_it(how, server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 5)
    if how == "--url":
        r = cli("replay", "--dir", folder, "--url", server.url(), env=with_token())
    else:
        r = cli(
            "replay",
            "--dir",
            folder,
            env=with_token(LOGSHIP_URL=server.url().replace("http:", "HTTP:")),
        )
    assert r.returncode == 0, r.stdout + r.stderr
    assert authorizations(server) == {"Bearer tok-replay-7f3a9c"}


def test_replay_says_the_connection_was_refused(server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 30)
    server.down()
    r = cli("replay", "--dir", folder, "--timeout", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    files = len(sf.list_files(folder))
    assert "adopted" not in r.stdout
    assert f"{folder}: 30 events in {files} files left: the connection was refused" in r.stdout


def test_status_and_replay_refuse_a_folder_of_another_user(server, tmp_path):
    folder = str(tmp_path / "spill")
    spill(server, folder, 5)
    os.chown(folder, 54321, 54321)
    r = cli("status", "--dir", folder)
    assert r.returncode == 0, r.stderr
    assert f"  refused       the spill folder {folder} is owned by uid 54321" in r.stdout
    r = cli("replay", "--dir", folder)
    assert r.returncode == 1 and "is owned by uid 54321" in r.stdout + r.stderr
    assert server.requests == []


def test_replay_speaks_the_protocol_the_files_were_spilled_in(server, tmp_path):
    folder = str(tmp_path / "spill")
    server.down()
    h = logship.ShipHandler(
        url=server.url(""),
        protocol="splunk",
        token="hec-token",
        spill_dir=folder,
        batch_max_records=10,
        **{**FAST, "shutdown_timeout": 0.5},
    )
    log = attach(h, "spill-splunk", logging.INFO)
    for i in range(25):
        log.info("hec %d", i)
    h.close()
    server.up()
    env = {**plain_env(), "LOGSHIP_URL": server.url(""), "LOGSHIP_TOKEN": "hec-token"}
    done = cli("replay", "--dir", folder, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {r.path for r in server.requests} == {"/services/collector/event"}
    assert {r.headers["Authorization"] for r in server.requests} == {"Splunk hec-token"}
    events = [e["event"]["message"] for r in server.requests for e in concatenated(r.wire)]
    assert sorted(events) == sorted(f"hec {i}" for i in range(25))


def concatenated(wire: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a gzipped HEC body, one after another."""
    text, pos, out = gzip.decompress(wire).decode(), 0, []
    decoder = json.JSONDecoder()
    while pos < len(text):
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
    return out
