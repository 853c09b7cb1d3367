"""The nightly run when nothing is new: 100 X accounts archived once, then `archiver run` again, REPEATS times.

Each account (bench/synthetic_x.py) has posts over the last 60 days with 89 replies each and DMs; the
archive's re-check window (14 days) holds the youngest threads. On a run with nothing new, a good archiver
asks each account for its identity, one page of each listing (posts since the newest known id, DM events
down to the newest known one) and, for the re-check window, one search page for each thread in it and one
lookup per 100 of its posts the searches did not return (X's conversation search lists the replies, not the
root: the lookup is what proves the root still there), and nothing more.
That bound is computed from the data and compared with the requests the server counted.

The baseline, measured in the same run, is the first (full) run of the same accounts: wall time and
requests. `archiver run` runs as its own process (`python -m archiver run`), as cron starts it.

    python bench/incremental_bench.py [--accounts 100] [--posts 10] [--dms 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import REPLIES, counts, run_cli, write_config  # noqa: E402
from synthetic_x import POST, Shape, SyntheticXServer  # noqa: E402

RECHECK_DAYS = 14


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--posts", type=int, default=10, help="posts per account (each with 89 replies)")
    parser.add_argument("--dms", type=int, default=100, help="DM events per account")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    shape = Shape(args.accounts, args.posts, REPLIES, args.dms, days=60, end=now - timedelta(hours=1))
    window_start = now - timedelta(days=RECHECK_DAYS)
    with SyntheticXServer(shape) as server, tempfile.TemporaryDirectory() as tmp:
        data = server.data
        in_window = sum(
            1 for i in range(shape.posts) if data.ms(0, POST, i) / 1000 >= window_start.timestamp() + 60
        )  # a minute's margin: the run starts after `now`
        lookups = -(-in_window // 100)
        bound = args.accounts * (1 + 2 + in_window + lookups)
        folder = Path(tmp)
        config = write_config(folder, server, args.accounts, RECHECK_DAYS)
        print(
            f"python {sys.version.split()[0]}; {args.accounts} accounts x {shape.items_per_account:,} items = "
            f"{shape.items:,} items; {in_window} of {shape.posts} threads per account in the {RECHECK_DAYS}-day "
            f"re-check window",
            flush=True,
        )
        before = len(server.requests_log)
        full_wall, full_peak, _ = run_cli(config, args.accounts)
        full_requests = len(server.requests_log) - before
        found = counts(folder / "archive" / "archive.db")
        assert found["item_versions"] == shape.items, found
        print(f"first run: {full_wall:.1f} s, {full_requests:,} requests, peak {full_peak} MB", flush=True)
        walls, requests = [], []
        for repeat in range(args.repeats):
            before = len(server.requests_log)
            wall, peak, _ = run_cli(config, args.accounts)
            asked = len(server.requests_log) - before
            after = counts(folder / "archive" / "archive.db")
            assert after["item_versions"] == shape.items, after  # nothing new, nothing appended
            walls.append(wall)
            requests.append(asked)
            print(f"run {repeat + 2} (nothing new): {wall:.1f} s, {asked:,} requests, peak {peak} MB", flush=True)
    w, r = statistics.median(walls), statistics.median(requests)
    print(f"incremental run: median {w:.1f} s (first run {full_wall:.1f} s, ratio {w / full_wall:.3f})")
    print(
        f"requests: median {r:,.0f} (first run {full_requests:,}, ratio {r / full_requests:.3f}); bound: "
        f"{bound:,} = {args.accounts} x (identity + 2 listings + {in_window} threads in the window + {lookups} "
        f"lookup of their roots) -> "
        f"{'within' if r <= bound else 'OVER'} the bound"
    )


if __name__ == "__main__":
    main()
