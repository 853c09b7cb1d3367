"""What a bundle's checkpoint history costs as the archive ages: export and verify-bundle of one flagged item of
the demo archive as it is (its own few checkpoints: the baseline) and with N checkpoints more (a nightly run's
for N days), each timed as the command a person runs, `verify-bundle` against every kept copy. Prints medians and
custody.json's size.

    python bench/history_bench.py [--checkpoints 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from archiver.config import load_config
from archiver.demo.run import run_demo
from archiver.pipeline import checkpoint_archive
from archiver.store import Store


def timed(args: list[str], before: Callable[[], object] = lambda: None, repeats: int = 3) -> list[float]:
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(done.stdout + done.stderr)
    return times


def measure(archive: Path, repeats: int) -> None:
    config = archive / "archiver.toml"
    database = load_config(config).archive.database
    conn = sqlite3.connect(database)
    item = conn.execute("SELECT item_key FROM flags ORDER BY id LIMIT 1").fetchone()[0]
    conn.close()
    out = archive / "case"
    export = [
        "archiver",
        "export",
        "--quiet",
        "--case",
        "B-1",
        "--item",
        item,
        "--out",
        str(out),
        "--config",
        str(config),
    ]
    made = timed(export, lambda: shutil.rmtree(out, ignore_errors=True), repeats)
    kept = str(database.parent / "warcs" / "checkpoints")
    checked = timed(["archiver", "verify-bundle", str(out), "--checkpoints", kept], repeats=repeats)
    custody = json.loads((out / "data" / "custody.json").read_text("utf-8"))
    size = (out / "data" / "custody.json").stat().st_size
    print(
        f"{len(custody['earlier_checkpoints'])} earlier checkpoints carried (the last repeat's): export median "
        f"{statistics.median(made):.2f} s, verify-bundle --checkpoints median {statistics.median(checked):.2f} s, "
        f"custody.json {size / 1e6:.2f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        assert run_demo(base, echo=lambda line: None).exit_code == 0
        aged = Path(tmp) / "aged"
        shutil.copytree(base, aged)
        config = load_config(aged / "archiver.toml")
        store = Store.open(config.archive.database, create=False)
        start = time.perf_counter()
        for _ in range(args.checkpoints):
            checkpoint_archive(store, config, None)
        store.close()
        print(f"{args.checkpoints} checkpoints added in {time.perf_counter() - start:.1f} s")
        measure(base, args.repeats)
        measure(aged, args.repeats)


if __name__ == "__main__":
    main()
