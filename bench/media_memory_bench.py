"""Peak memory of `archiver run`, `verify`, `verify --replay`, `rebuild` and `export` when one post carries one
large media file, against the same commands on the same account with no media file (the baseline, in the same run).

The sample Mastodon server runs in this process; each archiver command runs as its own process and its VmHWM
(and that of any child it starts) is polled every 0.05 s until it exits, as bench/ingest_bench.py does. Each size
is archived `--repeats` times into a fresh archive; the medians are printed as a table (BENCHMARKS.md, "Memory with
one large media file").

    python bench/media_memory_bench.py [--sizes 0,50,200,400] [--repeats 3] [--out DIR]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import peak_rss_mb, process_tree  # noqa: E402 - VmHWM of a process and its children, as polled there

TOKEN = "media-mem-token-Zx81"
ENV = {**os.environ, "MM_TOKEN": TOKEN}


def measure(args: list[str], log: Path) -> dict:
    """Run `python -m archiver ARGS`; its own peak RSS, the sum over its tree, wall time and exit code."""
    start = time.perf_counter()
    peaks: dict[int, int] = {}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "archiver", *args], stdout=fh, stderr=subprocess.STDOUT, env=ENV)
        while proc.poll() is None:
            for pid in process_tree(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0), peak_rss_mb(pid))
            time.sleep(0.05)
    return {
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_main_mib": peaks.get(proc.pid, 0),
        "peak_tree_mib": sum(peaks.values()),
        "processes": len(peaks),
    }


def state_with_media(size_mib: int) -> MastodonState:
    now = datetime.now(UTC)
    state = MastodonState()
    owner = state.add_account("riverside", "Riverside Clinic")
    state.add_status(owner["id"], "an ordinary post", created_at=now - timedelta(days=3))
    media = [(os.urandom(size_mib * 2**20), "a clinic video")] if size_mib else None
    state.add_status(owner["id"], "our new clinic video", created_at=now - timedelta(days=2), media=media)
    return state


def write_config(folder: Path, server: SampleMastodonServer) -> Path:
    folder.mkdir(parents=True, exist_ok=False)
    path = folder / "archiver.toml"
    path.write_text(
        f'[archive]\ndir = "{folder / "arch"}"\n\n[[accounts]]\nname = "riverside"\nplatform = "mastodon"\n'
        f'api_base = "{server.base_url}"\naccount = "@riverside"\ntoken_env = "MM_TOKEN"\n'
    )
    return path


def media_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM media_files").fetchall()
    except sqlite3.Error as exc:
        return [("media table?", str(exc))]
    finally:
        conn.close()


def item_key(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT item_key FROM item_versions WHERE text LIKE '%clinic video%'").fetchone()[0]
    finally:
        conn.close()


STEPS = ("run", "verify", "verify --replay", "rebuild", "export")


def one_archive(size: int, folder: Path) -> dict[str, dict]:
    """Archive one account whose second post carries a `size` MiB file, then read it back every way."""
    shutil.rmtree(folder, ignore_errors=True)
    with SampleMastodonServer(state_with_media(size), TOKEN, rate_limit=1_000_000) as server:
        cfg = write_config(folder, server)
        found = {"run": measure(["run", "--config", str(cfg), "--quiet"], folder / "run.log")}
    db = folder / "arch" / "archive.db"
    assert len(media_rows(db)) == (1 if size else 0), media_rows(db)
    commands = {
        "verify": ["verify", "--config", str(cfg)],
        "verify --replay": ["verify", "--config", str(cfg), "--replay"],
        "rebuild": ["rebuild", "--config", str(cfg), "--out", str(folder / "rebuilt.db"), "--quiet"],
        "export": [
            "export",
            "--config",
            str(cfg),
            "--case",
            "MM-1",
            "--item",
            item_key(db),
            "--out",
            str(folder / "bundle"),
            "--quiet",
        ],
    }
    for name, command in commands.items():
        found[name] = measure(command, folder / f"{name}.log")
    for name, result in found.items():
        assert result["rc"] == 0, f"{name} exited {result['rc']}: see {folder}"
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,50,200,400", help="media file sizes in MiB; 0 is the baseline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "media-memory-bench")
    args = parser.parse_args()
    sizes = sorted({0, *(int(s) for s in args.sizes.split(","))})
    peaks: dict[tuple[int, str], list[int]] = {}
    walls: dict[tuple[int, str], list[float]] = {}
    for repeat in range(args.repeats):
        for size in sizes:  # interleaved: a load that comes and goes falls on every size alike
            for name, result in one_archive(size, args.out / f"m{size}-r{repeat}").items():
                peaks.setdefault((size, name), []).append(result["peak_tree_mib"])
                walls.setdefault((size, name), []).append(result["wall_s"])
            print(f"repeat {repeat + 1}: {size} MiB done", flush=True)
    print("| media file | " + " | ".join(STEPS) + " |")
    print("| --- " * (len(STEPS) + 1) + "|")
    for size in sizes:
        cells = []
        for name in STEPS:
            peak = statistics.median(peaks[(size, name)])
            base = statistics.median(peaks[(0, name)])
            cells.append(f"{peak:.0f} MiB ({peak / base:.2f}x)" if size else f"{peak:.0f} MiB")
        print(f"| {f'{size} MiB' if size else 'none (baseline)'} | " + " | ".join(cells) + " |")
    print(
        "wall time, median s: "
        + "; ".join(
            f"{size} MiB " + ", ".join(f"{name} {statistics.median(walls[(size, name)]):.1f}" for name in STEPS)
            for size in sizes
        )
    )
    (args.out / "results.json").write_text(
        json.dumps({f"{size} {name}": values for (size, name), values in peaks.items()}, indent=2)
    )


if __name__ == "__main__":
    main()
