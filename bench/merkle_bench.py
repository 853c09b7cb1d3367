"""The ledger tree's cost: what a checkpoint (root), `archiver verify` (roots) and an export (proofs) add.

Builds a ledger table of N entries with random row digests in a fresh SQLite file, and a checkpoint signed
NEW entries before its end, then times, REPEATS times each: the baseline (reading every row_sha256 and hashing
it once with hashlib, the least any tree can cost); the tree root over the whole ledger (`tree_roots`, as
verify computes it); a checkpoint's tree with no earlier checkpoint to resume from (`ledger_tree` without a
signer: the whole ledger) and resumed from that checkpoint's frontier (`ledger_tree` with its key: the NEW
entries alone); and the root with the inclusion proofs of PROOFS rows (as an export computes them). Prints
medians and ratios.

    python bench/merkle_bench.py [--entries 2000000] [--new 2000] [--proofs 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archiver.checkpoints import ledger_digests, ledger_tree, make_statement, public_b64, tree_roots
from archiver.items import canonical_json
from archiver.merkle import tree_with_proofs


def build(path: Path, entries: int, checkpoint_at: int, key: Ed25519PrivateKey) -> None:
    """A ledger of `entries` random digests (and random chain hashes: nothing here checks the chain), with a
    checkpoint signed by `key` once `checkpoint_at` of them were in."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ledger (seq INTEGER PRIMARY KEY, row_sha256 TEXT NOT NULL, hash TEXT NOT NULL)")
    conn.execute("CREATE TABLE warc_files (name TEXT PRIMARY KEY, sha256 TEXT, size INTEGER)")
    conn.execute("CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, statement TEXT, signature TEXT, public_key TEXT)")
    batch = 100_000
    for start in range(1, entries + 1, batch):
        stop = min(entries + 1, start + batch)
        if start <= checkpoint_at < stop:
            append(conn, start, checkpoint_at + 1)
            sign(conn, key)
            start = checkpoint_at + 1
        append(conn, start, stop)
    conn.commit()
    conn.close()


def append(conn: sqlite3.Connection, start: int, stop: int) -> None:
    rows = [(seq, os.urandom(32).hex(), os.urandom(32).hex()) for seq in range(start, stop)]
    conn.executemany("INSERT INTO ledger VALUES (?, ?, ?)", rows)


def sign(conn: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    statement = canonical_json(make_statement(conn, "2026-01-01T00:00:00Z")).decode("utf-8")
    signature = base64.b64encode(key.sign(statement.encode("utf-8"))).decode("ascii")
    conn.execute(
        "INSERT INTO checkpoints (statement, signature, public_key) VALUES (?, ?, ?)",
        (statement, signature, public_b64(key.public_key())),
    )


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--new", type=int, default=2_000, help="entries after the earlier checkpoint")
    parser.add_argument("--proofs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        key = Ed25519PrivateKey.generate()
        build(path, args.entries, args.entries - args.new, key)
        conn = sqlite3.connect(path)
        wanted = random.Random(1).sample(range(args.entries), min(args.proofs, args.entries))

        def baseline() -> None:
            for digest in ledger_digests(conn):
                hashlib.sha256(digest).digest()

        def root() -> None:
            tree_roots(conn, {args.entries})

        def proofs() -> None:
            tree_with_proofs(ledger_digests(conn), args.entries, wanted)

        def full() -> None:
            ledger_tree(conn, None)

        def resumed() -> None:
            ledger_tree(conn, key.public_key())

        if ledger_tree(conn, None).root() != ledger_tree(conn, key.public_key()).root():
            raise SystemExit("the resumed tree's root differs from the whole ledger's")
        runs = {"baseline": baseline, "root": root, "full": full, "resumed": resumed, "proofs": proofs}
        results: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(1, args.repeats + 1):
            for name, fn in runs.items():
                results[name].append(timed(fn))
            print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in results.items()))
        conn.close()
    base = statistics.median(results["baseline"])
    print(f"ledger of {args.entries:,} entries; median of {args.repeats}")
    print(f"baseline (read every row_sha256, one sha256 each): {base:.2f} s")
    for name, label in (
        ("root", "tree root (verify)"),
        ("full", "checkpoint's tree, no earlier frontier"),
        ("proofs", f"root + {len(wanted):,} proofs (export)"),
    ):
        value = statistics.median(results[name])
        print(f"{label}: {value:.2f} s = {args.entries / value:,.0f} entries/s, {value / base:.1f}x the baseline")
    value = statistics.median(results["resumed"])
    print(
        f"checkpoint's tree resumed from a frontier {args.new:,} entries back: {value * 1000:.1f} ms, "
        f"{statistics.median(results['full']) / value:,.0f}x faster than without"
    )


if __name__ == "__main__":
    main()
