"""The one exception tree of the archiver.

ArchiverError                 anything the archiver reports to a person (one line, no secrets)
├── ConfigError               bad configuration or input: exit code 2, nothing archived is touched
├── LockedError               another run holds the archive's lock
├── StoreError                the archive database refused something (e.g. an append-only trigger)
├── StorageError              a disk under the archive failed (full, quota, read-only, I/O error): the command
│                             stopped as a whole, exit 1; what was committed is kept
├── Interrupted               a run was told to stop (Ctrl-C, SIGTERM); what it captured is kept
└── PlatformError             a platform call failed for one account; the run goes on with the others
    ├── AuthError             the platform refused the credential (expired, revoked): a person must act
    └── RateLimitedError      throttled for longer than the configured wait

OSError
└── StorageWriteError         a write the archive depends on failed (a WARC file): a StorageError whatever its errno
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path


class ArchiverError(Exception):
    """An error meant for a person: its message is one line naming what is wrong and what to do."""

    exit_code = 1


class ConfigError(ArchiverError):
    exit_code = 2


class LockedError(ArchiverError):
    exit_code = 1


class StoreError(ArchiverError):
    exit_code = 1


class StorageError(ArchiverError):
    """Not bad input but a condition of the disk: the command did not complete (exit 1), and says which file (and so
    which volume) failed and what to do. Made by `storage_failure`."""

    exit_code = 1


class Interrupted(ArchiverError):
    exit_code = 130  # a shell's code for a stop by SIGINT


class PlatformError(ArchiverError):
    exit_code = 1


class AuthError(PlatformError):
    pass


class RateLimitedError(PlatformError):
    pass


class StorageWriteError(OSError):
    """An OSError (errno, strerror, the file or folder) from a write the archive cannot go on without: a storage
    failure whatever its errno, so that a folder made unwritable under a run stops it as a full disk does."""


NOTHING_LOST = "nothing committed is lost"

# What each errno of a failed write says about the disk, and what to do: (condition, fix).
_BY_ERRNO = {
    errno.ENOSPC: ("its disk is full", "free some space"),
    errno.EDQUOT: ("the user's disk quota is exceeded", "free some space or raise the quota"),
    errno.EROFS: ("the file system became read-only", "find out why (the kernel log) and remount it read-write"),
    errno.EIO: ("the disk reported an I/O error", "check the device"),
}
_REFUSED = ("the user running archiver cannot write it", "check its owner, mode and mount")  # EACCES, EPERM
_SQLITE_IOERR = (
    "the disk reported an I/O error",
    "check the device, and the user's disk quota (SQLite reports a quota exceeded so too)",
)
_SQLITE_READONLY = (
    "it cannot be written",
    "check that its file system is not read-only and that the user running archiver can write it and its -wal "
    "and -shm files",
)


def storage_condition(exc: BaseException, database: Path | None = None) -> tuple[str, str] | None:
    """(what happened to the disk, what to do) when `exc` is a storage failure: an OSError of a full disk, a quota,
    a read-only file system or an I/O error (any errno for a StorageWriteError), SQLite's SQLITE_FULL, SQLITE_IOERR
    or SQLITE_READONLY (`database`: its file, looked at to tell what SQLite's "disk I/O error" hides), or a
    StoreError such an error made. None for anything else."""
    if isinstance(exc, StoreError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, OSError):
        found = _BY_ERRNO.get(exc.errno or 0)
        if found is None and isinstance(exc, StorageWriteError):
            refused = exc.errno in (errno.EACCES, errno.EPERM)
            found = _REFUSED if refused else ("it cannot be written", "check the disk and the folder")
        return found
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    if code is None:
        return None
    primary = code & 0xFF  # an extended code (SQLITE_IOERR_WRITE) keeps its primary code in its low byte
    if primary == sqlite3.SQLITE_FULL:
        return _BY_ERRNO[errno.ENOSPC]
    if primary == sqlite3.SQLITE_IOERR:
        if database is not None and Path(database).exists() and not Path(database).is_file():
            return None  # a folder where the database should be reads as "disk I/O error" too: bad input
        return _probed(database, full_too=True) or _SQLITE_IOERR
    if primary == sqlite3.SQLITE_READONLY:
        return _probed(database, full_too=False) or _SQLITE_READONLY
    return None


def _probed(database: Path | None, *, full_too: bool) -> tuple[str, str] | None:
    """SQLite turns every errno of a write but ENOSPC into "disk I/O error" (EDQUOT, EROFS, EIO alike): the
    database's file system, looked at now, may still tell a read-only remount or (`full_too`) a full disk."""
    if database is None:
        return None
    try:
        found = os.statvfs(Path(database).parent)
    except OSError:
        return None
    if found.f_flag & os.ST_RDONLY:
        return _BY_ERRNO[errno.EROFS]
    if full_too and found.f_bavail == 0:
        return _BY_ERRNO[errno.ENOSPC]
    return None


def storage_failure(
    exc: BaseException,
    *,
    database: Path | None = None,
    fallback: str | None = None,
    name: str | None = None,
    then: str = NOTHING_LOST,
) -> StorageError | None:
    """The one line that says `exc` when it is a storage failure (see storage_condition), else None: what failed
    (`name` if given, else the OSError's file, else `fallback`; `database` for a SQLite error), what happened to
    its disk, what to do, then `then`."""
    found = storage_condition(exc, database)
    if found is None:
        return None
    cause = exc.__cause__ if isinstance(exc, StoreError) and exc.__cause__ is not None else exc
    if isinstance(cause, OSError):
        named = name or cause.filename or fallback
        detail = cause.strerror or str(cause)
    else:
        named = name or (str(database) if database is not None else fallback)
        detail = str(cause)
    condition, fix = found
    return StorageError(f"{f'{named}: ' if named else ''}{condition} ({detail}): {fix}; {then}")
