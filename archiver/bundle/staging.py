"""The folder a bundle is written in before it becomes --out, and what a stopped export leaves of it.

The bundle is written into `.NAME.partial-PID` beside --out, private to its owner (0700, files 0600: it holds
PHI), and renamed to --out only once its export is recorded. A marker in the archive folder names the staging
folder while the export works, so that what an export killed on the way leaves (kill -9, the OOM killer, a
power cut) is found wherever its --out was: the next export removes it (it holds the archive's lock, so the
export that made it is over) and `archiver doctor` warns about it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArchiverError, ConfigError, storage_failure

MARKER = "export-in-progress.json"
STAGING_NAME = re.compile(r"^\..+\.partial-\d+$")


@dataclass(frozen=True)
class Leftover:
    staging: Path
    pid: int
    host: str

    def running(self) -> bool:
        """Whether the export that made it may still be at work (its process is alive, or on another host)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, another user's
        return True


def leftover(archive_dir: Path) -> Leftover | None:
    """The staging folder the marker names, if the marker is there and names one of ours."""
    try:
        marker = json.loads((archive_dir / MARKER).read_text("utf-8"))
        found = Leftover(Path(marker["staging"]), int(marker["pid"]), str(marker["host"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArchiverError(f"{archive_dir / MARKER}: not an export marker ({exc}); remove it") from None
    return found if STAGING_NAME.match(found.staging.name) else None


def remove_leftover(archive_dir: Path) -> list[str]:
    """Remove what a stopped export left (call it holding the archive's lock); says what was removed."""
    found = leftover(archive_dir)
    said = []
    if found is not None and found.staging.is_dir() and not found.staging.is_symlink():
        shutil.rmtree(found.staging)
        said.append(
            f"note: removed {found.staging}, the unfinished bundle of an export that was stopped (pid {found.pid} "
            f"on {found.host}) before it was moved to its --out"
        )
    (archive_dir / MARKER).unlink(missing_ok=True)
    return said


def make_private(folder: Path) -> None:
    """Folders 0700 and files 0600 under `folder`, whatever the umask and the tools that wrote them (bagit
    gives data/ the bag folder's mode, the wacz tool its own)."""
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
        for name in files:
            os.chmod(os.path.join(root, name), 0o600, follow_symlinks=False)
    os.chmod(folder, 0o700)


@contextmanager
def staging_folder(out: Path, archive_dir: Path) -> Iterator[Path]:
    """A private folder beside `out` that becomes `out` only when the bundle is complete; removed on failure,
    so a half-written bundle is never left where a finished one is expected."""
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    marker = archive_dir / MARKER
    try:
        marker.write_text(json.dumps({"staging": str(staging), "pid": os.getpid(), "host": socket.gethostname()}))
    except OSError as exc:  # a write's error names no file: the marker is in the archive folder, not at --out
        raise OSError(exc.errno, exc.strerror or str(exc), str(marker)) from exc
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir(mode=0o700)
        os.chmod(staging, 0o700)  # mkdir's mode is cut by the umask
    except OSError as exc:
        marker.unlink(missing_ok=True)
        # a full or failing disk is no bad --out: the same folder works once it is fixed
        failure = storage_failure(exc, name=f"the bundle folder {out}", then="export again once it is fixed")
        if failure is not None and exc.errno != errno.EROFS:
            raise failure from None
        raise ConfigError(
            f"--out {out}: cannot make the bundle folder there ({exc.strerror or exc}); choose a folder in a "
            "place you can write to"
        ) from None
    try:
        yield staging
    except BaseException:
        _discard(staging, marker)
        raise
    try:
        if out.exists():
            out.rmdir()  # empty, checked before
        staging.rename(out)
    except OSError as exc:
        _discard(staging, marker)
        raise ArchiverError(
            f"--out {out}: the finished bundle could not be moved there ({exc.strerror or exc}); its export is "
            "in the archive's exports register, the bundle is not: export again to a new folder"
        ) from None
    marker.unlink(missing_ok=True)


def _discard(staging: Path, marker: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    if not staging.exists():  # else the marker stays, for the next export and doctor to find it
        marker.unlink(missing_ok=True)
