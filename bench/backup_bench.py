"""`archiver backup` against a plain copy of the same archive folder, measured in the same run.

Builds the verify bench's archive (a synthetic clinic: posts with replies and ~50 KB images), then times,
REPEATS times each: `shutil.copytree` of the archive folder (the baseline: copying the bytes, no snapshot,
no check), a first backup into an empty folder, and a second backup into the same folder with nothing new
(what a nightly backup costs when the archive barely grew: every file re-hashed on both sides, the new
database snapshot verified). Prints medians and the ratios.

    python bench/backup_bench.py [--posts 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from verify_bench import build_archive, synthetic_clinic  # noqa: E402

from archiver.backup import back_up_archive  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    copy, first, again = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        config, _ = build_archive(Path(tmp), synthetic_clinic(args.posts))
        size = sum(p.stat().st_size for p in config.archive.dir.rglob("*") if p.is_file())
        for repeat in range(args.repeats):
            target = Path(tmp) / f"copy{repeat}"
            start = time.perf_counter()
            shutil.copytree(config.archive.dir, target)
            copy.append(time.perf_counter() - start)
            shutil.rmtree(target)
            target = Path(tmp) / f"backup{repeat}"
            for times in (first, again):
                start = time.perf_counter()
                outcome = back_up_archive(config.archive, target)
                times.append(time.perf_counter() - start)
                assert not [p for p in outcome.problems if p.severity == "error"], outcome.problems[:3]
            assert outcome.copied == 0, outcome
            shutil.rmtree(target)
    c, f, a = statistics.median(copy), statistics.median(first), statistics.median(again)
    print(f"python {sys.version.split()[0]}; archive folder {size / 1e6:.1f} MB")
    print(f"plain copy (shutil.copytree):        median {c:.3f} s = {size / 1e6 / c:.0f} MB/s")
    print(f"first backup (copy + verify):        median {f:.3f} s, ratio {c / f:.2f}")
    print(f"next backup, nothing new (re-check): median {a:.3f} s, ratio {c / a:.2f}")


if __name__ == "__main__":
    main()
