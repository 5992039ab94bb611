"""Spill encryption at rest (issue 5): ``spill_key`` seals spill and dead-letter frames
with AES-256-GCM; a wrong or missing key is reported, never taken for corruption."""

from __future__ import annotations

import logging
import os
import secrets
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator

import pytest
from test_cli_spill import live_writer

from logship.cli import spillinspect as si
from logship.pure import frames
from logship.worker.spill import folder as sf

from conftest import attach, check_identity
from faultserver import status

KEY = secrets.token_hex(32)
OTHER = secrets.token_hex(32)
SECRET_TEXT = "card-holder-ada-lovelace"


class Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def said() -> Iterator[Said]:
    h = Said()
    logging.getLogger("logship").addHandler(h)
    yield h
    logging.getLogger("logship").removeHandler(h)


def spill_some(server, make_handler, folder: str, n: int = 30, key: str = KEY) -> None:
    """Log ``n`` events with the endpoint down and close: they go to disk, encrypted."""
    server.down()
    h = make_handler(server.url(), spill=True, spill_dir=folder, spill_key=key, shutdown_timeout=1)
    log = attach(h, "spiller")
    for i in range(n):
        log.info("%s %d", SECRET_TEXT, i)
    h.close()
    assert h.stats()["spilled"] == n, h.stats()
    server.up()


def spill_files(folder: str) -> list[str]:
    return [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".lship")]


def test_spilled_frames_are_unreadable_without_the_key_and_replay_with_it(
    server, make_handler, tmp_path
):
    folder = str(tmp_path)
    spill_some(server, make_handler, folder)
    assert spill_files(folder)
    for path in spill_files(folder):
        with open(path, "rb") as f:
            data = f.read()
        assert SECRET_TEXT.encode() not in data
        # gzip of the text would also hide it: check a frame is really sealed
        assert b"sealed" in data
    h = make_handler(server.url(), spill=True, spill_dir=folder, spill_key=KEY)
    assert server.wait_for_uuids(30, timeout=10), len(server.uuids())
    assert {e["message"].split()[0] for e in server.events()} == {SECRET_TEXT}
    stats = h.stats()
    assert stats["corrupt"] == 0 and stats["adopted"] == 30
    check_identity(stats)


@pytest.mark.parametrize("other_key", [OTHER, None], ids=["wrong-key", "no-key"])
def test_a_wrong_or_missing_key_is_reported_not_counted_as_corrupt(
    server, make_handler, tmp_path, said, other_key
):
    folder = str(tmp_path)
    spill_some(server, make_handler, folder)
    wrong = make_handler(server.url(), spill=True, spill_dir=folder, spill_key=other_key)
    attach(wrong, "wrong").info("a new event")
    assert wrong.flush(5)  # its own event goes through; the locked file stays
    stats = wrong.stats()
    assert stats["corrupt"] == 0 and stats["adopted"] == 0
    about = [m for m in said.messages if "cannot replay" in m]
    assert len(about) == 1, said.messages
    assert ("another spill_key" in about[0]) if other_key else ("set spill_key" in about[0])
    assert spill_files(folder), "the file must be left in place"
    wrong.close()
    right = make_handler(server.url(), spill=True, spill_dir=folder, spill_key=KEY)
    assert server.wait_for_uuids(31, timeout=10)
    assert right.stats()["corrupt"] == 0


def test_a_tampered_frame_is_counted_as_corrupt(server, make_handler, tmp_path):
    folder = str(tmp_path)
    spill_some(server, make_handler, folder, n=30)
    (path,) = spill_files(folder)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    offsets = [off for off, _p in frames.iter_frames(bytes(data))]
    victim = offsets[1]  # the first batch frame, after the header frame
    length, _crc = struct.unpack_from(">II", data, victim)
    body_start = victim + 8
    data[body_start + length - 5] ^= 0xFF  # inside the ciphertext's tag
    struct.pack_into(">I", data, victim + 4, zlib.crc32(data[body_start : body_start + length]))
    with open(path, "wb") as f:
        f.write(data)
    h = make_handler(server.url(), spill=True, spill_dir=folder, spill_key=KEY)
    assert server.wait_for(lambda s: h.stats()["corrupt"] == 1, 10), h.stats()


def test_dead_letters_are_sealed_too(server, make_handler, tmp_path):
    server.default = status(400, b"no")
    h = make_handler(server.url(), spill=True, spill_dir=str(tmp_path), spill_key=KEY)
    attach(h).info("%s rejected", SECRET_TEXT)
    assert h.flush(5)
    with open(tmp_path / "dead-letter.lship", "rb") as f:
        assert SECRET_TEXT.encode() not in f.read()
    env = {**os.environ, "LOGSHIP_SPILL_KEY": KEY}
    out = subprocess.run(
        [sys.executable, "-m", "logship", "spill", "status", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "1 events in 1 rejected batches" in out.stdout, out.stdout + out.stderr
    dump = [sys.executable, "-m", "logship", "spill", "status", "--dir", str(tmp_path)]
    dump.append("--dead-letters")
    out = subprocess.run(dump, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and f"{SECRET_TEXT} rejected" in out.stdout, out.stderr
    without = {k: v for k, v in env.items() if k != "LOGSHIP_SPILL_KEY"}
    out = subprocess.run(dump, capture_output=True, text=True, timeout=60, env=without)
    assert out.returncode == 1 and SECRET_TEXT not in out.stdout
    assert "1 rejected batches cannot be read: it is encrypted" in out.stderr
    assert "LOGSHIP_SPILL_KEY" in out.stderr
    other = {**env, "LOGSHIP_SPILL_KEY": OTHER}
    out = subprocess.run(dump, capture_output=True, text=True, timeout=60, env=other)
    assert out.returncode == 1 and SECRET_TEXT not in out.stdout
    assert "1 rejected batches cannot be read: it was encrypted with another spill_key" in (
        out.stderr
    )


def test_replay_without_the_key_says_so_at_once(server, make_handler, tmp_path):
    folder = str(tmp_path)
    spill_some(server, make_handler, folder, n=5)
    without = {k: v for k, v in os.environ.items() if k != "LOGSHIP_SPILL_KEY"}
    replay = [sys.executable, "-m", "logship", "spill", "replay", "--dir", folder]
    # A --timeout longer than subprocess.run's: waiting it out fails the test.
    out = subprocess.run(
        [*replay, "--url", server.url(), "--timeout", "600"],
        capture_output=True,
        text=True,
        timeout=60,
        env=without,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    said = "files are encrypted under a key not given (set LOGSHIP_SPILL_KEY to the key"
    assert said in out.stdout
    assert "nothing sent for" not in out.stdout and not server.uuids()
    assert len(spill_files(folder)) == 1  # left as it was


def test_a_live_encrypted_file_counts_as_live_not_as_under_a_key_not_given(
    server, make_handler, tmp_path
):
    # replay stops once every file left is live or under a key not given:
    # one counted as both would hide a file it could still send.
    folder = str(tmp_path)
    live = live_writer(server, make_handler, folder, spill_key=KEY)
    writing = {f.owner for f in sf.list_files(folder) if f.state == "o"}  # the open handler
    seen = si.summarize(folder, writing)
    assert seen.live_files == seen.files >= 1 and seen.locked_files == 0, seen
    live.close()  # its files are released: now they are under a key not given
    seen = si.summarize(folder, writing)
    assert seen.live_files == 0 and seen.locked_files == seen.files >= 1, seen


@pytest.mark.parametrize("bad", ["short", "zz" * 32, "00" * 31])
def test_a_bad_key_fails_at_construction(make_handler, bad):
    with pytest.raises(ValueError, match="spill_key"):
        make_handler("http://127.0.0.1:1/app", spill=True, spill_key=bad)


def test_a_base64_key_is_accepted(server, make_handler, tmp_path):
    import base64

    key = base64.b64encode(os.urandom(32)).decode()
    folder = str(tmp_path)
    spill_some(server, make_handler, folder, n=5, key=key)
    make_handler(server.url(), spill=True, spill_dir=folder, spill_key=key)
    assert server.wait_for_uuids(5, timeout=10), len(server.uuids())


def test_encryption_without_the_extra_names_it(make_handler, monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ValueError, match=r"logship\[encrypt\]"):
        make_handler("http://127.0.0.1:1/app", spill=True, spill_key=KEY)


def test_the_key_comes_from_the_environment_and_never_shows(make_handler, monkeypatch):
    monkeypatch.setenv("LOGSHIP_SPILL_KEY", KEY)
    h = make_handler("http://127.0.0.1:1/app", spill=True)
    assert h.options.spill_key == KEY
    assert KEY not in repr(h) and KEY not in repr(h.options)
