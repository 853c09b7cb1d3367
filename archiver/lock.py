"""One run at a time per archive: an flock on a file in the archive directory.

The kernel releases an flock when its holder dies, so a crashed run never leaves a stale lock behind; the
file's content (command, pid, host, start time) only serves the message shown to the next command, so an operator
can tell a nightly run from a backup still copying to a slow share.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockedError
from .warc import iso, utcnow

LOCK_NAME = "archiver.lock"


@contextmanager
def archive_lock(directory: Path, command: str) -> Iterator[None]:
    """Hold the archive for `command` (e.g. "archiver backup"), or raise LockedError naming the holder."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise LockedError(
                f"{path}: another archiver command holds this archive ({holder}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{command}, pid {os.getpid()} on {socket.gethostname()} since {iso(utcnow())}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
