"""Rebuild of the database from the WARCs: records/s of `archiver rebuild`, against reading the same records.

The archive is the one `bench/ingest_bench.py --keep DIR` left (a synthetic X account), or one made here from
`--items` the same way. Each repeat measures, in this order:
- baseline: every record of every WARC file read and inflated by warcio's ArchiveIterator, the least any
  rebuild must do;
- `python -m archiver rebuild --out NEW.db` as its own process: every run's records replayed through the X
  connector, change detection, store, ledger and full-text index into a fresh database.

    python bench/rebuild_bench.py --archive DIR [--repeats 3]
    python bench/rebuild_bench.py --items 100000 [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import bench_env, run_cli, shape_for, write_config  # noqa: E402
from synthetic_x import SyntheticXServer  # noqa: E402


def read_records(warcs: list[Path]) -> int:
    records = 0
    for path in warcs:
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                record.content_stream().read()
                records += 1
    return records


def rebuild(config: Path, out: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "archiver", "rebuild", "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        env=bench_env(1),
    )
    if done.returncode != 0:
        raise SystemExit(f"archiver rebuild failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def versions(database: Path) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    found = conn.execute("SELECT count(*) FROM item_versions").fetchone()[0]
    conn.close()
    return found


def measure(folder: Path, repeats: int) -> None:
    config = folder / "archiver.toml"
    warcs = sorted((folder / "archive" / "warcs").glob("*.warc.gz"))
    live = versions(folder / "archive" / "archive.db")
    size = sum(p.stat().st_size for p in warcs)
    base, runs = [], []
    records = 0
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            start = time.perf_counter()
            records = read_records(warcs)
            base.append(time.perf_counter() - start)
            out = Path(tmp) / f"rebuilt{repeat}.db"
            runs.append(rebuild(config, out))
            assert versions(out) == live, (versions(out), live)
            print(f"repeat {repeat + 1}: baseline {base[-1]:.1f} s, rebuild {runs[-1]:.1f} s", flush=True)
    b, r = statistics.median(base), statistics.median(runs)
    print(
        f"archive: {live:,} item versions, {records:,} WARC records in {len(warcs)} file(s), {size / 1e6:.0f} MB; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    print(f"baseline (warcio reads every record): median {b:.1f} s = {records / b:,.0f} records/s")
    print(
        f"archiver rebuild: median {r:.1f} s = {records / r:,.0f} records/s = {live / r:,.0f} item versions/s, "
        f"ratio {b / r:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path, help="a folder left by ingest_bench.py --keep")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.archive:
        measure(args.archive.resolve(), args.repeats)
        return
    with SyntheticXServer(shape_for(args.items)) as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_cli(write_config(folder, server, 1), 1)
        measure(folder, args.repeats)


if __name__ == "__main__":
    main()
