"""Time to export an evidence bundle of 10,000 items (issue 8's target: under 10 s), and to verify it.

Builds an archive from a synthetic clinic (posts with five replies each, an image on every tenth post)
served by the sample Mastodon server, then times, REPEATS times each, `export_bundle` of every item
(`--platform mastodon`: every version, event, media file, WARC record, ledger entry, the report) into a new
folder, and `verify_bundle` of the result. Prints medians and items/s.

    python bench/export_bench.py [--posts 1667] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from verify_bench import build_archive  # noqa: E402

from archiver.bundle.select import Selectors
from archiver.bundle.verify import verify_bundle
from archiver.bundle.write import export_bundle
from archiver.demo.mastodon_server import MastodonState
from archiver.demo.png import make_png


def synthetic_clinic(posts: int) -> MastodonState:
    now = datetime.now(UTC)
    state = MastodonState()
    clinic = state.add_account("clinic", "Bench Clinic")
    people = [state.add_account(f"p{i}", f"Person {i}") for i in range(200)]
    for i in range(posts):
        at = now - timedelta(days=60, minutes=posts - i)
        media = [(make_png(64, 48, i), f"image {i}")] if i % 10 == 0 else []
        post = state.add_status(clinic["id"], f"Post {i}: opening hours and flu shots", created_at=at, media=media)
        for j in range(5):
            state.add_status(
                people[(i + j) % 200]["id"],
                f"Reply {j} to post {i}, thanks!",
                in_reply_to_id=post["id"],
                created_at=at + timedelta(seconds=j + 1),
            )
    return state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=1667)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config, ingest = build_archive(Path(tmp), synthetic_clinic(args.posts), 'organisation = "Bench Clinic"\n')
        exports, verifies = [], []
        result = None
        for n in range(args.repeats):
            out = Path(tmp) / f"bundle-{n}"
            start = time.perf_counter()
            result = export_bundle(config, out, f"BENCH-{n}", Selectors(platforms=("mastodon",)))
            exports.append(time.perf_counter() - start)
            start = time.perf_counter()
            problems = verify_bundle(out)
            verifies.append(time.perf_counter() - start)
            assert not problems, problems[:3]
        assert result is not None
        size = sum(p.stat().st_size for p in result.path.rglob("*") if p.is_file())
    items = result.counts["items"]
    e, v = statistics.median(exports), statistics.median(verifies)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; ingest of {items} items {ingest:.1f} s")
    print(f"bundle: {', '.join(f'{k} {c}' for k, c in result.counts.items())}; {size / 1e6:.1f} MB")
    print(f"export: median {e:.2f} s = {items / e:,.0f} items/s (runs: {', '.join(f'{x:.2f}' for x in exports)})")
    print(f"verify-bundle: median {v:.2f} s = {items / v:,.0f} items/s")


if __name__ == "__main__":
    main()
