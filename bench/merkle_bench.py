"""The ledger tree's cost: what a checkpoint (root), `archiver verify` (roots) and an export (proofs) add.

Builds a ledger table of N entries with random row digests in a fresh SQLite file, then times, REPEATS times
each: the baseline (reading every row_sha256 and hashing it once with hashlib, the least any tree can cost);
the tree root over the whole ledger (`tree_roots`, as a checkpoint and verify compute it); and the root with
the inclusion proofs of PROOFS rows (as an export computes them). Prints medians and ratios.

    python bench/merkle_bench.py [--entries 2000000] [--proofs 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from archiver.checkpoints import ledger_digests, tree_roots
from archiver.merkle import tree_with_proofs


def build(path: Path, entries: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ledger (seq INTEGER PRIMARY KEY, row_sha256 TEXT NOT NULL)")
    batch = 100_000
    for start in range(1, entries + 1, batch):
        rows = [(seq, os.urandom(32).hex()) for seq in range(start, min(entries + 1, start + batch))]
        conn.executemany("INSERT INTO ledger VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--proofs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        build(path, args.entries)
        conn = sqlite3.connect(path)
        wanted = random.Random(1).sample(range(args.entries), min(args.proofs, args.entries))

        def baseline() -> None:
            for digest in ledger_digests(conn):
                hashlib.sha256(digest).digest()

        def root() -> None:
            tree_roots(conn, {args.entries})

        def proofs() -> None:
            tree_with_proofs(ledger_digests(conn), args.entries, wanted)

        results: dict[str, list[float]] = {"baseline": [], "root": [], "proofs": []}
        for repeat in range(1, args.repeats + 1):
            for name, fn in (("baseline", baseline), ("root", root), ("proofs", proofs)):
                results[name].append(timed(fn))
            print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()))
        conn.close()
    base = statistics.median(results["baseline"])
    print(f"ledger of {args.entries:,} entries; median of {args.repeats}")
    print(f"baseline (read every row_sha256, one sha256 each): {base:.2f} s")
    for name, label in (
        ("root", "tree root (checkpoint, verify)"),
        ("proofs", f"root + {len(wanted):,} proofs (export)"),
    ):
        value = statistics.median(results[name])
        print(f"{label}: {value:.2f} s = {args.entries / value:,.0f} entries/s, {value / base:.1f}x the baseline")


if __name__ == "__main__":
    main()
