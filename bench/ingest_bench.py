"""End-to-end ingest: `archiver run` over one synthetic X account, against warcio writing the same payloads.

The account (bench/synthetic_x.py, served on loopback from this process) has posts with 89 replies each (one
search page of 100 a thread) and direct messages, one item in ten: 1,000,000 items are 10,000 posts, 890,000
replies and 100,000 DMs, about 1.5 KB of JSON a post, read in about 11,100 requests of up to 100 items.
`archiver run` runs as its own process (`python -m archiver run`), so its wall time and peak memory
(its VmHWM, polled) are its own; the server's work runs on the other core, as a platform's would.

Each repeat measures, in this order:
- baseline: the same response bodies, generated beforehand, written as gzipped WARC response records by
  warcio alone (no HTTP, no parsing, no database): the least any capture must do;
- the run: wall time, and its stages from the archive's own timestamps: capture (run start to the account's
  end: HTTP + WARC + store + ledger + FTS) and the PHI scan, consent check and checkpoint after it.

    python bench/ingest_bench.py [--items 1000000] [--repeats 3] [--keep DIR] [--scan-workers auto,0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_x import POST, Shape, SyntheticXServer, token  # noqa: E402

from archiver.connectors.x import TWEET_FIELDS  # noqa: E402
from archiver.demo.loopback import Request  # noqa: E402

REPLIES = 89  # a thread is one search page: the post's 89 replies


def shape_for(items: int, accounts: int = 1) -> Shape:
    """Posts with REPLIES replies each, and one DM for every nine thread items, `items` per account."""
    posts = max(1, round(items * 0.9 / (1 + REPLIES)))
    return Shape(accounts=accounts, posts=posts, replies_per_post=REPLIES, dms=items - posts * (1 + REPLIES))


def write_config(
    folder: Path, server: SyntheticXServer, accounts: int, recheck_days: int = 14, scan_workers: int | None = None
) -> Path:
    lines = [f'[archive]\ndir = "{folder / "archive"}"\nrecheck_days = {recheck_days}\n']
    if scan_workers is not None:
        lines.append(f"[scan]\nworkers = {scan_workers}\n")
    for a in range(accounts):
        lines.append(
            f'[[accounts]]\nname = "clinic{a}"\nplatform = "x"\napi_base = "{server.base_url}"\n'
            f'account = "{2_000_000 + a}"\ntoken_env = "BENCH_X_TOKEN_{a}"\nmedia = false\n'
            'options = { access_level = "pro" }\n'
        )
    path = folder / "archiver.toml"
    path.write_text("\n".join(lines))
    return path


def bench_env(accounts: int) -> dict[str, str]:
    return {**os.environ, **{f"BENCH_X_TOKEN_{a}": token(a) for a in range(accounts)}}


def peak_rss_mb(pid: int) -> int:
    """VmHWM of a running process: its own peak RSS since exec (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) // 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the PHI scan's worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def run_cli(config: Path, accounts: int) -> tuple[float, int, str]:
    """`python -m archiver run`: (wall seconds, peak RSS in MB, stderr's tail); raises when it fails.

    The peak is the sum of the VmHWM of the run and of each process it started (its scan workers), each
    read every 0.2 s while it lives: an upper bound of their memory at any one time. wait4's ru_maxrss would
    not do: Linux folds the RSS the process had before exec, i.e. this bench's own memory (the payloads it
    holds), into it."""
    start = time.perf_counter()
    peaks: dict[int, int] = {}
    with open(config.parent / "run.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(config), "--quiet", "--json"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=bench_env(accounts),
        )
        while proc.poll() is None:
            for pid in process_tree(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0), peak_rss_mb(pid))
            time.sleep(0.2)
    wall = time.perf_counter() - start
    tail = (config.parent / "run.log").read_text()[-2000:]
    if proc.returncode != 0:
        raise SystemExit(f"archiver run failed ({proc.returncode}):\n{tail}")
    return wall, sum(peaks.values()), tail


def stages(database: Path) -> dict[str, float]:
    """Seconds from the run's start to the end of its accounts (capture) and on to its result (after)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    started = conn.execute("SELECT started_at FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    captured = conn.execute("SELECT max(finished_at) FROM account_runs").fetchone()[0]
    finished = conn.execute("SELECT finished_at FROM run_results ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    conn.close()
    at = [datetime.fromisoformat(v.replace("Z", "+00:00")) for v in (started, captured, finished)]
    return {"capture": (at[1] - at[0]).total_seconds(), "after": (at[2] - at[1]).total_seconds()}


def counts(database: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    found = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("item_versions", "events", "ledger")}
    conn.close()
    return found


def payloads(server: SyntheticXServer, account: int = 0) -> list[tuple[str, bytes]]:
    """The bodies a run of `account` is answered, in the order it asks for them."""
    shape, data = server.shape, server.data
    base = f"{server.base_url}/2"
    out: list[tuple[str, bytes]] = []

    def get(path: str, **query: str) -> bytes:
        status, body = server.route(Request("GET", path, query, {}, {}, b""), account)
        assert status == 200, (path, body)
        raw = json.dumps(body, separators=(",", ":")).encode()
        out.append((f"{base}{path.removeprefix('/2')}", raw))
        return raw

    get(f"/2/users/{2_000_000 + account}")
    fields = TWEET_FIELDS
    token_value = ""
    while True:
        query = {"tweet.fields": fields, **({"pagination_token": token_value} if token_value else {})}
        page = json.loads(get(f"/2/users/{2_000_000 + account}/tweets", **query))
        token_value = page["meta"].get("next_token", "")
        if not token_value:
            break
    for index in range(shape.posts - 1, -1, -1):
        get(
            "/2/tweets/search/all", query=f"conversation_id:{data.id(account, POST, index)}", **{"tweet.fields": fields}
        )
    token_value = ""
    while True:
        page = json.loads(get("/2/dm_events", **({"pagination_token": token_value} if token_value else {})))
        token_value = page["meta"].get("next_token", "")
        if not token_value:
            break
    return out


def warcio_baseline(bodies: list[tuple[str, bytes]], path: Path) -> float:
    """Seconds warcio takes to write each body as a gzipped WARC response record (bodies made beforehand)."""
    start = time.perf_counter()
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, body in bodies:
            headers = StatusAndHeaders(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                protocol="HTTP/1.1",
            )
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
            writer.write_record(record)
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - start


def workers_setting(value: str) -> int | None:
    return None if value == "auto" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the last repeat's archive here (for rebuild_bench.py)")
    parser.add_argument(
        "--scan-workers",
        default="auto",
        help="`[scan] workers` of the run, or several to compare in each repeat: auto,0 (auto: cores - 1)",
    )
    args = parser.parse_args()
    settings = args.scan_workers.split(",")
    shape = shape_for(args.items)
    base: list[float] = []
    runs: dict[str, dict[str, list[float]]] = {w: {"wall": [], "rss": [], "capture": [], "after": []} for w in settings}
    with SyntheticXServer(shape) as server, tempfile.TemporaryDirectory() as tmp:
        bodies = payloads(server)
        size = sum(len(b) for _, b in bodies)
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; account: {shape.items:,} items "
            f"({shape.posts:,} posts, {shape.posts * shape.replies_per_post:,} replies, {shape.dms:,} DMs), "
            f"{len(bodies):,} responses, {size / 1e6:.0f} MB of JSON",
            flush=True,
        )
        for repeat in range(args.repeats):
            base.append(warcio_baseline(bodies, Path(tmp) / "baseline.warc.gz"))
            print(f"repeat {repeat + 1}: baseline {base[-1]:.1f} s", flush=True)
            for setting in settings:
                last = repeat == args.repeats - 1 and setting == settings[0]
                folder = (args.keep if args.keep and last else Path(tmp) / f"r{repeat}-{setting}").resolve()
                folder.mkdir(parents=True, exist_ok=False)
                config = write_config(folder, server, 1, scan_workers=workers_setting(setting))
                wall, peak, _ = run_cli(config, 1)
                found = counts(folder / "archive" / "archive.db")
                assert found["item_versions"] == shape.items, found
                timing = stages(folder / "archive" / "archive.db")
                for name, value in (("wall", wall), ("rss", peak), *timing.items()):
                    runs[setting][name].append(value)
                print(
                    f"  scan workers {setting}: run {wall:.1f} s (capture {timing['capture']:.1f} s, "
                    f"after {timing['after']:.1f} s), peak {peak} MB; {found}",
                    flush=True,
                )
                if not last and folder.parent == Path(tmp).resolve():
                    shutil.rmtree(folder)  # a 1M-item archive is 5 GB
    b = statistics.median(base)
    items = shape.items
    print(f"baseline (warcio alone, same payloads): median {b:.1f} s = {items / b:,.0f} items/s")
    for setting, found in runs.items():
        w, c = statistics.median(found["wall"]), statistics.median(found["capture"])
        print(f"scan workers {setting}:")
        print(f"  archiver run end to end: median {w:.1f} s = {items / w:,.0f} items/s, ratio {b / w:.2f}")
        print(f"  capture stage (HTTP+WARC+store+ledger+FTS): median {c:.1f} s = {items / c:,.0f} items/s")
        after, rss = statistics.median(found["after"]), statistics.median(found["rss"])
        print(f"  after the capture (rest of the PHI scan, consent check, checkpoint): median {after:.1f} s")
        print(f"  peak memory, run and its workers: median {rss:.0f} MB (max {max(found['rss'])} MB)")


if __name__ == "__main__":
    main()
