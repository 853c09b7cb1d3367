"""The review queue page at scale: the queries Datasette runs for /archive/flag_queue (its first 51 rows, its count
and the five facets datasette-metadata.yml names), against the queue read from recorded states (flag_queue,
migration 0023) and, as the baseline in the same run, the queue computed from flag_status on every read (0.3.0's
flag_queue, kept here as a temporary view). Both must list the same flags.

    python bench/flag_queue_bench.py --db ARCHIVE.db [--repeats 5]

ARCHIVE.db is any archive at schema 23 or later with flags in it (an upgraded copy of a real one, or a synthetic
hospital archive); it is opened read-only and nothing is written to it. Figures: the median over the repeats of
each query and of the page (the seven together), warm (one untimed pass first).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

FACETS = ("severity", "category", "status", "platform", "kind")
# flag_queue as migration 0021 made it and 0022 kept it: every flag's state computed from flag_status
LIVE_QUEUE = """
CREATE TEMP VIEW live_flag_queue AS
SELECT s.flag_id, s.severity, s.category, s.reason, s.matched, coalesce(s.decision, 'open') AS status,
       v.platform, v.account, v.kind, v.author_handle, v.created_at, v.text, v.url, s.item_key, s.version_id,
       s.rule_id, s.rules_version, s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC"""


def page_queries(view: str) -> dict[str, str]:
    queries = {"rows": f"SELECT * FROM {view} LIMIT 51", "count": f"SELECT count(*) FROM {view}"}
    for facet in FACETS:
        queries[f"facet {facet}"] = f"SELECT {facet}, count(*) FROM {view} GROUP BY {facet} ORDER BY count(*) DESC"
    return queries


def timed(conn: sqlite3.Connection, sql: str) -> tuple[float, list]:
    started = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    return time.perf_counter() - started, rows


def measure(conn: sqlite3.Connection, view: str, repeats: int) -> tuple[dict[str, float], float, dict[str, list]]:
    queries = page_queries(view)
    answers = {name: timed(conn, sql)[1] for name, sql in queries.items()}  # warm
    times: dict[str, list[float]] = {name: [] for name in queries}
    pages = []
    for _ in range(repeats):
        page = 0.0
        for name, sql in queries.items():
            took, _ = timed(conn, sql)
            times[name].append(took)
            page += took
        pages.append(page)
    return {name: statistics.median(t) for name, t in times.items()}, statistics.median(pages), answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="an archive database at schema 23 or later")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    conn = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    schema = conn.execute("PRAGMA user_version").fetchone()[0]
    if schema < 23:
        print(f"{args.db}: schema {schema}; open it once with this archiver (a run or `archiver scan`) to upgrade")
        return 2
    flags, states = conn.execute("SELECT (SELECT count(*) FROM flags), (SELECT count(*) FROM flag_states)").fetchone()
    conn.execute(LIVE_QUEUE)
    live, live_page, live_answers = measure(conn, "live_flag_queue", args.repeats)
    recorded, recorded_page, recorded_answers = measure(conn, "flag_queue", args.repeats)
    same = live_answers == recorded_answers
    queued = recorded_answers["count"][0][0]
    print(f"{args.db}: {flags:,} flags, {states:,} recorded states, {queued:,} in the queue; median of {args.repeats}")
    print(f"{'query':<18}{'flag_status (s)':>16}{'recorded (s)':>14}{'ratio':>8}")
    for name in live:
        print(f"{name:<18}{live[name]:>16.3f}{recorded[name]:>14.3f}{live[name] / recorded[name]:>8.1f}")
    print(f"{'page (7 queries)':<18}{live_page:>16.3f}{recorded_page:>14.3f}{live_page / recorded_page:>8.1f}")
    print("same rows, count and facets: " + ("yes" if same else "NO (a flag's recorded state is not flag_status's)"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
