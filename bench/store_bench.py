"""The store alone: X items appended as a run appends them, and where the time goes, statement by statement.

Items are the ingest bench's (bench/synthetic_x.py: posts and their replies, ~1.5 KB of JSON each), built
beforehand; then, each repeat, a new archive gets them through `Store.append_item` in transactions of 500
(the run's COMMIT_EVERY), with WAL and synchronous=FULL as a run has them. A last pass times every SQL
statement the store runs (by statement, its first words) to show what an item costs in SQLite and what in
Python. No baseline of its own: it explains the capture stage of ingest_bench.py.

    python bench/store_bench.py [--items 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_x import POST, REPLY, Shape, Synthetic  # noqa: E402

from archiver.items import Item  # noqa: E402
from archiver.store import Store  # noqa: E402
from archiver.warc import CaptureRef  # noqa: E402

PER_COMMIT = 500


def build_items(count: int) -> list[Item]:
    threads = -(-count // 90)
    synthetic = Synthetic(Shape(accounts=1, posts=threads, replies_per_post=89, dms=0))
    items: list[Item] = []
    for thread in range(threads):
        for reply in range(90):
            kind = POST if reply == 0 else REPLY
            tweet = synthetic.tweet(0, kind, thread, reply - 1 if reply else 0)
            key = f"x:{tweet['id']}"
            items.append(
                Item(
                    item_key=key,
                    platform="x",
                    kind="post" if reply == 0 else "comment",
                    native_id=tweet["id"],
                    source=CaptureRef("f.warc.gz", thread * 1000, 900, f"<urn:uuid:{thread}>", "2026-11-01T00:00:00Z"),
                    raw=tweet,
                    text=tweet["text"],
                    created_at=tweet["created_at"],
                    author_id=tweet["author_id"],
                    thread_key=f"x:{tweet['conversation_id']}",
                    conversation_key=f"x:{tweet['conversation_id']}",
                )
            )
            if len(items) == count:
                return items
    return items


class TimedConnection:
    """A connection whose `execute` adds up its time by statement."""

    def __init__(self, conn: Any):
        self._conn = conn
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: Any) -> Any:
        start = time.perf_counter()
        found = self._conn.execute(sql, *args)
        statement = " ".join(sql.split()[:4])
        self.seconds[statement] += time.perf_counter() - start
        self.calls[statement] += 1
        return found


def append_all(store: Store, items: list[Item]) -> float:
    store.append_run("run1", "bench", "0" * 64, ["a"])
    start = time.perf_counter()
    store.begin()
    for n, item in enumerate(items, start=1):
        store.append_item("a", item, "run1")
        if n % PER_COMMIT == 0:
            store.commit()
            store.begin()
    store.commit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    items = build_items(args.items)
    size = sum(len(i.raw_json) for i in items)
    print(f"python {sys.version.split()[0]}; {len(items):,} X items, {size / len(items):,.0f} bytes of JSON each")
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            store = Store.open(Path(tmp) / f"r{repeat}.db")
            seconds.append(append_all(store, items))
            store.close()
            print(f"repeat {repeat + 1}: {seconds[-1]:.2f} s = {len(items) / seconds[-1]:,.0f} items/s", flush=True)
        store = Store.open(Path(tmp) / "timed.db")
        timed = TimedConnection(store.conn)
        store.conn = timed  # type: ignore[assignment]
        wall = append_all(store, items)
        store.close()
    median = statistics.median(seconds)
    rate, each = len(items) / median, median / len(items) * 1e6
    print(f"store alone: median {median:.2f} s = {rate:,.0f} items/s = {each:.0f} µs an item")
    in_sql = sum(timed.seconds.values())
    print(f"timed pass: {wall:.2f} s, of which SQLite {in_sql:.2f} s ({in_sql / wall:.0%}); per item:")
    for statement, spent in sorted(timed.seconds.items(), key=lambda kv: -kv[1])[:8]:
        calls = timed.calls[statement]
        print(f"  {spent / len(items) * 1e6:6.1f} µs  {calls:7,} x {spent / calls * 1e6:8.1f} µs  {statement}")
    print(f"  {(wall - in_sql) / len(items) * 1e6:6.1f} µs  in Python (rows, canonical JSON, sha256)")


if __name__ == "__main__":
    main()
