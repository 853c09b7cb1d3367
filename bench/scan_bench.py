"""PHI scan speed: texts per second on one core, start-up time, and a whole-archive rescan.

Texts: the labelled set (tests/data/phi_eval.jsonl) and the demo clinic's item texts, repeated with a
varying suffix to --texts texts. Times, REPEATS times each: `Detector.detect` over every text in one
process (one core), a fresh interpreter importing the engine and compiling the rules (start-up), and
`append_scan(mode="all")` over the demo archive with a new rules version each time (so every hit is
appended as a flag through the ledger). Prints medians.

    python bench/scan_bench.py [--texts 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from archiver.demo.run import run_demo
from archiver.scan.archive import append_scan, build_detector
from archiver.scan.engine import Detector
from archiver.scan.rules import BUILTIN_FILES, build_rules
from archiver.store import Store

ROOT = Path(__file__).resolve().parent.parent
ENGINE = (
    "from archiver.scan.engine import Detector; from archiver.scan.rules import load_rules; "
    "Detector(load_rules()).detect('my DOB is 1/2/1990')"
)
CLI = ["-m", "archiver.cli", "scan", "--text", "-"]


def median_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        outcome = run_demo(demo, echo=lambda line: None)
        conn = sqlite3.connect(outcome.config.archive.database)
        demo_texts = [
            (r[0] or "", r[1], r[2]) for r in conn.execute("SELECT text, kind, author_handle FROM item_versions")
        ]
        conn.close()
        labelled = [json.loads(line) for line in (ROOT / "tests/data/phi_eval.jsonl").read_text().splitlines()]
        pool = [(r["text"], r.get("kind"), r.get("author")) for r in labelled] + demo_texts
        texts = [(f"{pool[i % len(pool)][0]} #{i}", *pool[i % len(pool)][1:]) for i in range(args.texts)]
        chars = sum(len(t[0]) for t in texts)

        detector = build_detector(outcome.config)

        def detect_all() -> None:
            for text, kind, author in texts:
                detector.detect(text, kind, author)

        detect_s = median_of(args.repeats, detect_all)
        startup_s = median_of(args.repeats, lambda: subprocess.run([sys.executable, "-c", ENGINE], check=True))
        cli_s = median_of(
            args.repeats,
            lambda: subprocess.run(
                [sys.executable, *CLI], input=b'{"id": 1, "text": "hi"}', check=True, stdout=subprocess.DEVNULL
            ),
        )
        baseline_s = median_of(args.repeats, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))

        folder = resources.files("archiver.scan").joinpath("rules")
        sources = [(name, folder.joinpath(name).read_bytes()) for name in BUILTIN_FILES]
        copy = Path(tmp) / "copy.db"
        shutil.copy(outcome.config.archive.database, copy)
        store = Store.open(copy)
        versions = store.conn.execute("SELECT count(*) FROM item_versions").fetchone()[0]
        rescans = []
        for i in range(args.repeats):
            rules = build_rules([*sources, ("bench.yml", f"version: bench-{i}\n".encode())])
            fresh = Detector(rules, detector.allow)
            start = time.perf_counter()
            flags = len(append_scan(store, fresh, mode="all").flags)
            rescans.append(time.perf_counter() - start)
        store.close()

    print(
        f"python {sys.version.split()[0]}, pinned to 1 core; {len(texts)} texts, "
        f"{chars / len(texts):.0f} chars each on average"
    )
    print(f"detect: median {detect_s:.3f} s = {len(texts) / detect_s:,.0f} texts/s ({chars / detect_s / 1e6:.2f} MB/s)")
    print(
        f"start-up (fresh python, import + load and compile rules + one text): median {startup_s:.3f} s; "
        f"`archiver scan --text -` of one line: {cli_s:.3f} s (python alone {baseline_s:.3f} s)"
    )
    print(
        f"archive rescan (--all, new rules version): {versions} versions, {flags} flags appended, "
        f"median {statistics.median(rescans):.3f} s = {versions / statistics.median(rescans):,.0f} versions/s"
    )


if __name__ == "__main__":
    main()
