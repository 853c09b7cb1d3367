"""Search latency of the compliance workspace over a large archive, through HTTP.

Builds an archive of N synthetic items (posts, comments and direct messages with a realistic vocabulary;
rows written straight into the archive's own schema, the FTS index rebuilt once after the bulk load, without
the ledger: this measures reading), starts a real `archiver serve` process on loopback, and times
/-/search.json (the page, snippets, total and every facet) for a mix of queries: rare words, common words,
two-word queries, filtered queries, posted date bounds with and without words (and with an account),
captured date bounds.
Prints p50 / p95 / max per kind of query and overall.

    python bench/search_bench.py [--items 1000000] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from archiver.store import Store

COMMON = ["clinic", "appointment", "flu", "shots", "open", "today", "thanks", "doctor", "pharmacy", "results"]
MEDIUM = ["vaccination", "record", "parking", "pediatrics", "billing", "insurance", "referral", "fever"]
FILLER = [f"word{i}" for i in range(20_000)]  # a long tail, as real text has


def sentence(rng: random.Random) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(8, 24))]
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words)), rng.choice(COMMON))
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), rng.choice(MEDIUM))
    return " ".join(words)


def build(path: Path, items: int) -> None:
    store = Store.open(path)
    conn = store.conn
    now = datetime.now(UTC)
    conn.execute("INSERT INTO runs VALUES ('bench', ?, 'bench', '0', '0', '[]')", (now.isoformat(),))
    # Bulk load: rows are written straight in and the FTS index is rebuilt once at the end (since migration 0008
    # Store.commit indexes new versions, there is no trigger).
    conn.execute("PRAGMA synchronous = OFF")
    rng = random.Random(7)
    batch = []
    started = time.time()
    for i in range(items):
        kind = ("post", "comment", "comment", "comment", "message")[i % 5]
        at = (now - timedelta(minutes=items - i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        key = f"mastodon:bench:{i}"
        root = f"mastodon:bench:{i - i % 5}"
        batch.append(
            (
                key,
                ("mastodon", "facebook", "x", "bluesky")[i % 4],
                f"account-{i % 12}",
                kind,
                str(i),
                root if kind == "comment" else None,
                root if kind == "comment" else (key if kind == "post" else None),
                f"conv-{i % 5000}" if kind == "message" else None,
                str(i % 50_000),
                f"person{i % 50_000}",
                f"Person {i % 50_000}",
                at,
                sentence(rng),
                at,
            )
        )
        if len(batch) == 20_000:
            _insert(conn, batch)
            batch = []
            print(f"  {i + 1:,} items ({time.time() - started:.0f} s)", file=sys.stderr)
    _insert(conn, batch)
    # A few edits and deletions so that every status is present.
    conn.execute(
        "INSERT INTO item_versions (item_key, platform, account, kind, native_id, parent_key, thread_key, "
        "conversation_key, author_id, author_handle, author_name, created_at, edited_at, text, url, visibility, "
        "media, raw_json, content_sha256, run_id, captured_at, warc_file, warc_offset, warc_length, "
        "warc_record_id) SELECT item_key, platform, account, kind, native_id, parent_key, thread_key, "
        "conversation_key, author_id, author_handle, author_name, created_at, captured_at, text || ' (edited)', "
        "url, visibility, media, raw_json, 'y', run_id, captured_at, warc_file, warc_offset, warc_length, "
        "warc_record_id FROM item_versions WHERE id % 499 = 0"
    )
    conn.execute(EDITED_EVENTS)
    conn.execute("INSERT INTO item_versions_fts (item_versions_fts) VALUES ('rebuild')")
    print(f"  full-text index rebuilt ({time.time() - started:.0f} s)", file=sys.stderr)
    conn.execute(
        "INSERT INTO events (item_key, event, version_id, run_id, observed_at, evidence) "
        "SELECT item_key, 'deleted', id, 'bench', captured_at, '{}' FROM item_versions WHERE id % 997 = 0"
    )
    conn.commit()
    conn.execute("ANALYZE")
    store.close()


# Every version after an item's first comes with an `edited` event, as Store.append_item writes it.
EDITED_EVENTS = (
    "INSERT INTO events (item_key, event, version_id, run_id, observed_at, evidence) "
    "SELECT item_key, 'edited', id, 'bench', captured_at, '{}' FROM item_versions WHERE content_sha256 = 'y'"
)


def _insert(conn, batch) -> None:
    conn.executemany(
        "INSERT INTO item_versions (item_key, platform, account, kind, native_id, parent_key, thread_key, "
        "conversation_key, author_id, author_handle, author_name, created_at, text, url, visibility, media, "
        "raw_json, content_sha256, run_id, captured_at, warc_file, warc_offset, warc_length, warc_record_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'public', '[]', '{}', 'x', 'bench', ?, "
        "'bench.warc.gz', 0, 0, 'x')",
        batch,
    )
    conn.commit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the archive in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="search-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "archive" / "archive.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        build(db, args.items)
        print(f"built {args.items:,} items in {time.time() - started:.0f} s: {db}", file=sys.stderr)
    (folder / "archiver.toml").write_text(
        '[archive]\ndir = "archive"\n[[accounts]]\nname = "a"\nplatform = "mastodon"\n'
        'api_base = "http://127.0.0.1:9"\ntoken_env = "X"\n'
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "archiver.cli", "serve", "-c", str(folder / "archiver.toml"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/robots.txt", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        rng = random.Random(1)
        queries = {
            "rare word": [{"q": f"word{rng.randrange(20_000)}"} for _ in range(20)],
            "medium word": [{"q": w} for w in MEDIUM],
            "two words": [{"q": f"{rng.choice(MEDIUM)} word{rng.randrange(20_000)}"} for _ in range(10)],
            "filtered": [{"q": f"word{rng.randrange(20_000)}", "kind": "message", "platform": "x"} for _ in range(10)],
            "common word": [{"q": w} for w in COMMON],
            # posted bounds (a week inside the archive's span), with a word and without: the listing of a week
            "word+week": [{"q": f"word{rng.randrange(20_000)}", **week(rng, args.items)} for _ in range(10)],
            "medium+week": [{"q": rng.choice(MEDIUM), **week(rng, args.items)} for _ in range(8)],
            "week only": [week(rng, args.items) for _ in range(10)],
            "last 7 days": [{"posted_from": str(datetime.now(UTC).date() - timedelta(days=7))}],
            "week+account": [{"account": f"account-{rng.randrange(12)}", **week(rng, args.items)} for _ in range(10)],
            # build() captures each item at its posted time: a captured week holds the same ~10,000 items
            "captured week": [captured(week(rng, args.items)) for _ in range(5)],
            # a broad word in a week (read from the date range first), and a medium word over a year (from its
            # matches: the year holds more versions than the word matches)
            "common+week": [{"q": rng.choice(COMMON), **week(rng, args.items)} for _ in range(5)],
            "medium+year": [{"q": rng.choice(MEDIUM), **year(rng, args.items)} for _ in range(4)],
        }
        timings: dict[str, list[float]] = {}
        for kind, params_list in queries.items():
            for params in params_list:
                requests.get(f"{base}/-/search.json", params=params, timeout=120)  # warm the page cache
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    response = requests.get(f"{base}/-/search.json", params=params, timeout=120)
                    timings.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text[:200]
        print(f"{args.items:,} items, {args.repeats} timed requests per query, /-/search.json over HTTP")
        everything: list[float] = []
        for kind, values in timings.items():
            everything += values
            print(f"{kind:12} n={len(values):4}  {summary(values)}")
        print(f"{'all':12} n={len(everything):4}  {summary(everything)}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def week(rng: random.Random, items: int) -> dict[str, str]:
    """posted_from / posted_to seven days apart, inside the span build() gives created_at (one item a minute)."""
    days = max(8, items // 1440)
    start = datetime.now(UTC).date() - timedelta(days=rng.randrange(8, days + 1))
    return {"posted_from": start.isoformat(), "posted_to": (start + timedelta(days=6)).isoformat()}


def year(rng: random.Random, items: int) -> dict[str, str]:
    """posted_from / posted_to 365 days apart, inside the archive's span where it is long enough."""
    days = max(366, items // 1440)
    start = datetime.now(UTC).date() - timedelta(days=rng.randrange(366, days + 1))
    return {"posted_from": start.isoformat(), "posted_to": (start + timedelta(days=364)).isoformat()}


def captured(bounds: dict[str, str]) -> dict[str, str]:
    return {"captured_from": bounds["posted_from"], "captured_to": bounds["posted_to"]}


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"p50 {statistics.median(ordered):7.1f} ms  p95 {p95:7.1f} ms  max {ordered[-1]:7.1f} ms"


if __name__ == "__main__":
    main()
