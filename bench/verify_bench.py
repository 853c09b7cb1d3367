"""Verify throughput against hashlib sha256 over the same WARC files, measured in the same run.

Builds an archive from a synthetic clinic (posts with replies and images) served by the sample Mastodon
server, then times, REPEATS times each: hashlib sha256 over every WARC file (the baseline: the least any
verification must do); the floor of any check of the records (inflate the gzipped WARCs, hash the file and
every inflated byte); and `verify_archive` (ledger chain, checkpoints, WARC files, every record), in one
process and with the ledger recomputed in a second process beside the WARC check (what large archives
get). Prints medians, MB/s, the ratios, and ledger rows/s.

    python bench/verify_bench.py [--posts 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import random
import statistics
import struct
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver import verify as verify_module
from archiver.checkpoints import PUBLIC_KEY
from archiver.config import Config, load_config
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.demo.png import make_png
from archiver.ledger import verify_ledger
from archiver.pipeline import run_archive
from archiver.store import Store
from archiver.verify import FileCheck, _HashingReader, verify_archive

TOKEN = "bench-token-0123456789"


def unique_image(base: bytes, i: int, size: int = 50_000) -> bytes:
    """A valid PNG per post, about as incompressible as a photo: the base image plus a private chunk of noise."""
    noise = random.Random(i).randbytes(size)
    chunk = struct.pack(">I", size) + b"prVt" + noise + struct.pack(">I", zlib.crc32(b"prVt" + noise))
    return base[:-12] + chunk + base[-12:]  # before IEND


def synthetic_clinic(posts: int) -> MastodonState:
    now = datetime.now(UTC)
    state = MastodonState()
    clinic = state.add_account("clinic", "Bench Clinic")
    base = make_png(320, 240, 1)
    people = [state.add_account(f"p{i}", f"Person {i}") for i in range(200)]
    for i in range(posts):
        at = now - timedelta(days=60, minutes=posts - i)
        post = state.add_status(
            clinic["id"],
            f"Post {i}: opening hours and flu shots " * 3,
            created_at=at,
            media=[(unique_image(base, i), f"image {i}")],
        )
        for j in range(5):
            state.add_status(
                people[(i + j) % 200]["id"],
                f"Reply {j} to post {i}, thanks!",
                in_reply_to_id=post["id"],
                created_at=at + timedelta(seconds=j + 1),
            )
    return state


def sha256_files(paths: list[Path]) -> None:
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        digest.hexdigest()


def inflate_and_hash(paths: list[Path]) -> None:
    """The least any check of the records must do: the file's sha256 and one sha256 over every inflated byte
    (the records' block digests together cover about that much)."""
    for path in paths:
        inner = hashlib.sha256()
        with open(path, "rb") as fh:
            outer = _HashingReader(fh)  # verify's own reader: the file's digest as it is read
            with gzip.GzipFile(fileobj=outer) as records:  # type: ignore[arg-type]
                while chunk := records.read(1 << 20):
                    inner.update(chunk)
        outer.digest.hexdigest(), inner.hexdigest()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build_archive(folder: Path, clinic: MastodonState, archive_lines: str = "") -> tuple[Config, float]:
    """`clinic` served by the sample Mastodon server and archived once into `folder`: the config and the
    seconds the run took. `archive_lines` go into the config's [archive] table."""
    os.environ["BENCH_TOKEN"] = TOKEN
    with SampleMastodonServer(clinic, TOKEN, rate_limit=10**9) as server:
        cfg_path = folder / "archiver.toml"
        cfg_path.write_text(
            f'[archive]\ndir = "arch"\n{archive_lines}[[accounts]]\nname = "c"\nplatform = "mastodon"\n'
            f'api_base = "{server.base_url}"\ntoken_env = "BENCH_TOKEN"\n'
        )
        config = load_config(cfg_path)
        start = time.perf_counter()
        run = run_archive(config)
        ingest = time.perf_counter() - start
    assert run.ok, run.summary()
    return config, ingest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config, ingest = build_archive(Path(tmp), synthetic_clinic(args.posts))
        warcs = sorted(config.archive.warc_dir.glob("*.warc.gz"))
        size = sum(p.stat().st_size for p in warcs)
        store = Store.open(config.archive.database, readonly=True)
        rows = store.conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
        versions = store.conn.execute("SELECT count(*) FROM item_versions").fetchone()[0]
        baseline, floor, verify, beside, ledger, warc_stage = [], [], [], [], [], []
        for _ in range(args.repeats):
            baseline.append(timed(lambda: sha256_files(warcs)))
            floor.append(timed(lambda: inflate_and_hash(warcs)))
            verify_module.PARALLEL_LEDGER_FROM = 10**15  # one process
            verify.append(
                timed(
                    lambda: verify_archive(
                        config.archive.database, config.archive.warc_dir, config.archive.keys_dir / PUBLIC_KEY
                    )
                )
            )
            verify_module.PARALLEL_LEDGER_FROM = 1  # the ledger in a second process, beside the WARC check
            beside.append(
                timed(
                    lambda: verify_archive(
                        config.archive.database, config.archive.warc_dir, config.archive.keys_dir / PUBLIC_KEY
                    )
                )
            )
            ledger.append(timed(lambda: list(verify_ledger(store.conn))))
            warc_stage.append(timed(lambda: [list(FileCheck(p).check_rows(store.conn)) for p in warcs]))
        store.close()
        problems = verify_archive(
            config.archive.database, config.archive.warc_dir, config.archive.keys_dir / PUBLIC_KEY
        )
        assert not problems, problems[:3]
    b, v, lg = statistics.median(baseline), statistics.median(verify), statistics.median(ledger)
    vb = statistics.median(beside)
    w = statistics.median(warc_stage)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; archive: {versions} item versions, "
        f"{rows} ledger rows, {len(warcs)} WARC file(s), {size / 1e6:.1f} MB (ingest {ingest:.1f} s)"
    )
    print(f"hashlib sha256 over the WARCs: median {b:.3f} s = {size / 1e6 / b:.0f} MB/s")
    fl = statistics.median(floor)
    print(
        f"floor, inflate + sha256 of the file and of every inflated byte: median {fl:.3f} s = "
        f"{size / 1e6 / fl:.0f} MB/s, ratio {b / fl:.2f} (no record-level check can do better)"
    )
    print(f"archiver verify (everything):  median {v:.3f} s = {size / 1e6 / v:.0f} MB/s")
    print(f"ratio verify / hashlib: {b / v:.2f}")
    print(f"verify, ledger in a second process: median {vb:.3f} s = {size / 1e6 / vb:.0f} MB/s, ratio {b / vb:.2f}")
    print(
        f"WARC stage alone (file digest + every record's digest + rows into it): median {w:.3f} s = "
        f"{size / 1e6 / w:.0f} MB/s, ratio {b / w:.2f}"
    )
    print(f"ledger recompute: median {lg:.3f} s = {rows / lg:,.0f} rows/s")


if __name__ == "__main__":
    main()
