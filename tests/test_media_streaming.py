"""A media file larger than BODY_HELD is never held whole: the run masks it and writes it to a temporary file as it
arrives and from there to the WARC, and its connector gets its sha256 and size; verify, verify --replay and rebuild
read its record as a stream. What is archived is the same as when the body was held: the masked bytes, their
digests in the record and in media_files, and a replay that gives the connector the same answer.

Memory itself is measured by bench/media_memory_bench.py (BENCHMARKS.md), never in a test: these tests show the
stream is the path taken and that what it writes is right."""

from __future__ import annotations

import errno
import gc
import gzip
import hashlib
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import tracemalloc
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from archiver import warc
from archiver.checkpoints import PUBLIC_KEY
from archiver.cli import app
from archiver.connectors.base import MEDIA_ANSWERS
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.http import BODY_HELD, REDACTED, CapturingSession, DownloadFailed, Redactor, StreamRedactor
from archiver.recovery import TORN_DIR, WarcScan, set_aside_torn_tail
from archiver.replay_check import compare_databases
from archiver.verify import verify_archive
from archiver.warc import HEADERS_END, SpooledBody, read_block, warc_digest

TOKEN = "media-stream-token-Vq83k"
ENV = {"STREAM_TOKEN": TOKEN}
SMALL_PNG = b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(3000)


def large_video() -> bytes:
    """Incompressible bytes (a video's are) past BODY_HELD, carrying the token three times: near the start, across
    the BODY_HELD mark (where the run starts spooling) and near the end (the platform echoing a credential into a
    file is unlikely, but a secret is masked wherever it is)."""
    data = bytearray(random.Random(7).randbytes(3 * BODY_HELD + 12_345))
    for at in (1_000, BODY_HELD - len(TOKEN) // 2, len(data) - 50):
        data[at : at + len(TOKEN)] = TOKEN.encode()
    return bytes(data)


VIDEO = large_video()
MASKED = VIDEO.replace(TOKEN.encode(), REDACTED.encode())


@dataclass
class Archived:
    config: Path
    arch: Path
    spooled: int  # SpooledBody files the run made


def config(directory: Path, base_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "archiver.toml"
    path.write_text(
        f'[archive]\ndir = "arch"\n\n[[accounts]]\nname = "clinic"\nplatform = "mastodon"\n'
        f'api_base = "{base_url}"\naccount = "@riverside"\ntoken_env = "STREAM_TOKEN"\n'
    )
    return path


def invoke(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(app, list(args), env=ENV)


def clinic(now: datetime) -> MastodonState:
    state = MastodonState()
    owner = state.add_account("riverside", "Riverside Clinic")
    state.add_status(owner["id"], "our new clinic video", created_at=now - timedelta(days=2), media=[(VIDEO, "tour")])
    state.add_status(owner["id"], "the lobby", created_at=now - timedelta(days=1), media=[(SMALL_PNG, "lobby")])
    return state


@pytest.fixture(scope="module")
def archived(tmp_path_factory) -> Archived:
    made = []
    opened = SpooledBody.__init__

    def counted(self: SpooledBody, folder: Path) -> None:
        made.append(folder)
        opened(self, folder)

    with pytest.MonkeyPatch.context() as patch, SampleMastodonServer(clinic(datetime.now(UTC)), TOKEN) as server:
        patch.setattr(SpooledBody, "__init__", counted)
        cfg = config(tmp_path_factory.mktemp("stream"), server.base_url)
        result = invoke("run", "--config", str(cfg), "-q")
        assert result.exit_code == 0, result.output
    return Archived(cfg, cfg.parent / "arch", len(made))


def media_rows(database: Path) -> list[tuple]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute("SELECT sha256, size, warc_file, warc_offset FROM media_files ORDER BY size").fetchall()
    finally:
        conn.close()


def warc_bytes(arch: Path) -> bytes:
    return b"".join(gzip.decompress(path.read_bytes()) for path in sorted((arch / "warcs").glob("*.warc.gz")))


# -- the run -----------------------------------------------------------------------------------------------------


def test_the_large_file_is_spooled_and_recorded_masked_with_its_digests(archived):
    assert archived.spooled == 1  # the video; the small image was held as before
    small, large = media_rows(archived.arch / "archive.db")
    assert small[:2] == (hashlib.sha256(SMALL_PNG).hexdigest(), len(SMALL_PNG))
    assert large[:2] == (hashlib.sha256(MASKED).hexdigest(), len(MASKED))
    with open(archived.arch / "warcs" / large[2], "rb") as fh:
        fh.seek(large[3])
        record = next(iter(ArchiveIterator(fh, no_record_parse=True)))
        block = record.raw_stream.read()
    assert block.partition(HEADERS_END)[2] == MASKED
    assert record.rec_headers.get_header("WARC-Payload-Digest") == warc_digest(hashlib.sha256(MASKED).digest())
    assert record.rec_headers.get_header("WARC-Block-Digest") == warc_digest(hashlib.sha256(block).digest())
    assert TOKEN.encode() not in warc_bytes(archived.arch)


def test_no_temporary_file_is_left_beside_the_warcs(archived):
    warcs = archived.arch / "warcs"
    assert [p.name for p in warcs.iterdir() if p.is_file() and not p.name.endswith(".warc.gz")] == []


def test_warcio_checks_the_warcs(archived):
    for path in (archived.arch / "warcs").glob("*.warc.gz"):
        check = subprocess.run([sys.executable, "-m", "warcio.cli", "check", "-v", str(path)], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_verify_and_verify_replay_pass(archived):
    for extra in ([], ["--replay"]):
        result = invoke("verify", "--config", str(archived.config), *extra)
        assert result.exit_code == 0, result.output
        assert "archive verifies" in result.output


def test_a_rebuild_equals_the_live_database(archived, tmp_path):
    out = tmp_path / "rebuilt.db"
    result = invoke("rebuild", "--config", str(archived.config), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert media_rows(out) == media_rows(archived.arch / "archive.db")
    live, rebuilt = sqlite3.connect(archived.arch / "archive.db"), sqlite3.connect(out)
    try:
        assert [str(p) for p in compare_databases(live, rebuilt)] == []
    finally:
        live.close()
        rebuilt.close()


def test_a_byte_changed_in_the_large_record_is_caught(archived, tmp_path):
    """The record re-gzipped with one byte of the video flipped (incompressible bytes: the member keeps its length,
    so nothing else moves): its block digest, the media row's sha256 and the file's own digest all say so."""
    arch = tmp_path / "arch"
    shutil.copytree(archived.arch, arch)
    _, large = media_rows(arch / "archive.db")
    path = arch / "warcs" / large[2]
    data = path.read_bytes()
    inflater = zlib.decompressobj(zlib.MAX_WBITS + 16)
    record = inflater.decompress(data[large[3] :])
    end = len(data) - len(inflater.unused_data)
    changed = bytearray(record)
    changed[len(changed) // 2] ^= 0x01
    packer = zlib.compressobj(warc.GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    member = packer.compress(bytes(changed)) + packer.flush()
    assert len(member) == end - large[3]
    path.write_bytes(data[: large[3]] + member + data[end:])
    key = arch / "keys" / PUBLIC_KEY
    found = [str(p) for p in verify_archive(arch / "archive.db", arch / "warcs", key)]
    assert any(f"offset {large[3]}: block digest does not match" in p for p in found), found
    assert any(p.startswith("media_files ") and f"sha256 expected {large[0]}, found" in p for p in found), found
    assert any(p.startswith(f"WARC {path.name}: sha256 expected") for p in found), found


def test_a_full_disk_under_the_spooled_file_stops_the_run_naming_the_folder(tmp_path, monkeypatch):
    class FullDisk:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    monkeypatch.setattr(warc.tempfile, "TemporaryFile", lambda dir: FullDisk())  # noqa: A006 - tempfile's name
    with SampleMastodonServer(clinic(datetime.now(UTC)), TOKEN) as server:
        cfg = config(tmp_path, server.base_url)
        result = invoke("run", "--config", str(cfg), "-q")
    assert result.exit_code == 1, result.output
    warcs = cfg.parent / "arch" / "warcs"
    last = result.output.splitlines()[-1]  # above it, the sample server may report the download cut short
    assert last.startswith(f"archiver: error: {warcs}: its disk is full (No space left on device)"), result.output


# -- the pieces --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_a_body_masked_piece_by_piece_is_masked_as_a_whole_body_is(seed):
    rng = random.Random(seed)
    secrets = ["tok-" + rng.choice(["A", "BB", "CCCCCCCC"]) * rng.randint(1, 4) for _ in range(rng.randint(1, 3))]
    pieces = [rng.randbytes(rng.randint(0, 40)) for _ in range(30)]
    body = b"".join(piece + rng.choice(secrets).encode() * rng.randint(0, 2) for piece in pieces)
    redactor = Redactor(secrets)
    cuts = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randint(0, 25))))
    stream = redactor.stream()
    masked = b"".join(stream.feed(body[a:b]) for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True))
    masked += stream.finish()
    assert not any(secret.encode() in masked for secret in secrets)
    if not any(a != b and a in b for a in secrets for b in secrets):  # no secret inside another: the same bytes
        assert masked == redactor.bytes(body)


def test_a_secret_split_across_every_possible_cut_is_masked():
    body = b"xx" + TOKEN.encode() + b"yy"
    for cut in range(len(body) + 1):
        stream = StreamRedactor([TOKEN.encode()])
        assert stream.feed(body[:cut]) + stream.feed(body[cut:]) + stream.finish() == b"xx[REDACTED]yy"


def test_a_block_read_as_a_stream_gives_what_a_whole_read_gives():
    for block in (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n" + VIDEO[:300_000], b"k: v\r\nno blank line\r\n", b"\r\n\r\n"):
        whole = read_block(_Stream(block), len(block), None)
        streamed = read_block(_Stream(block), len(block), 0)
        assert streamed.data is None and whole.data == block
        assert (streamed.head, streamed.body_sha256, streamed.body_size, streamed.sha256) == (
            whole.head,
            whole.body_sha256,
            whole.body_size,
            whole.sha256,
        )


class _Stream:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.at + size
        piece, self.at = self.data[self.at : end], min(end, len(self.data))
        return piece


def test_a_head_over_64_kib_is_kept_whole_when_the_block_is_read_as_a_stream():
    """The server of a file decides its head: 80 KB of fields before Content-Type (each line under http.client's
    64 KiB limit) was cut at 64 KiB on replay, and the replay lost the Content-Type the live run had stored."""
    head = b"HTTP/1.1 200 OK\r\nX-Pad-A: " + b"a" * 40_000 + b"\r\nX-Pad-B: " + b"b" * 40_000
    block = head + b"\r\nContent-Type: video/mp4\r\n\r\n" + VIDEO[:2_000_000]
    streamed = read_block(_Stream(block), len(block), 0)
    assert streamed.data is None and streamed.head.endswith(b"Content-Type: video/mp4")


def test_a_torn_tail_is_set_aside_a_chunk_at_a_time(tmp_path):
    """A run killed while writing a video's record leaves most of the record as its torn tail: the next run copied
    it aside (and compared it with a copy already aside) whole in memory, twice its size at worst."""
    path = tmp_path / "archiver-20261125000000-run1-00001.warc.gz"
    kept, tail = b"complete records", random.Random(3).randbytes(24 * 2**20)
    path.write_bytes(kept + tail)
    scan = WarcScan(1, len(kept), len(kept) + len(tail))
    folder = tmp_path / TORN_DIR
    folder.mkdir()
    (folder / f"{path.name}.tail-at-{len(kept)}").write_bytes(tail[:-1] + b"x")  # another tail of that name: kept
    del tail
    tracemalloc.start()
    try:
        aside = set_aside_torn_tail(path, scan)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak
    assert aside.name == f"{path.name}.tail-at-{len(kept)}.1"
    assert aside.read_bytes() == random.Random(3).randbytes(24 * 2**20) and path.read_bytes() == kept


class _Cut(BaseHTTPRequestHandler):
    """A redirect whose body is over BODY_HELD, to a file whose connection drops before any answer."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/video":
            body = b"r" * (BODY_HELD + 5_000)
            self.send_response(302)
            self.send_header("Location", "/gone")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.close_connection = True  # no answer at all: requests raises ConnectionError, a retried failure

    def log_message(self, *args: object) -> None:
        pass


def test_the_spooled_body_of_a_failed_attempt_is_let_go_at_once(tmp_path, monkeypatch):
    """Each failed attempt's spooled redirect body stayed open (its file and disk space) until garbage collection."""
    made: list[SpooledBody] = []
    opened = SpooledBody.__init__
    monkeypatch.setattr(SpooledBody, "__init__", lambda self, folder: made.append(self) or opened(self, folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Cut)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    gc.disable()  # what closes the spools must be the session, not the collector
    try:
        session = CapturingSession(
            warc.WarcWriter(tmp_path / "warcs", "run1"), account="acct", token=None, sleep=lambda s: None, retries=2
        )
        with pytest.raises(DownloadFailed):
            session.get(f"http://127.0.0.1:{server.server_address[1]}/video", auth=False, ok=MEDIA_ANSWERS)
        assert len(made) == 3 and all(spooled._file.closed for spooled in made)
    finally:
        gc.enable()
        server.shutdown()
        server.server_close()
