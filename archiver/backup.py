"""A verified copy of the archive in another folder (another disk, a mounted share), made again each night.

The copy is laid out like the archive folder, so it can take the archive's place. Under the archive's lock
(no run, scan or export writes meanwhile) it takes:
- the database and the access log as SQLite backups, each one consistent snapshot, in rollback-journal mode
  (a reader of the copy leaves no WAL file beside it);
- every file under the WARC folder (WARCs, checkpoint copies, torn tails set aside): only the new ones after
  the first time, since a closed WARC never changes; each through a temporary name, fsynced, then moved;
- the public key and the users file. The private signing key stays where it is: a backup that held it
  would let whoever reads the backup sign checkpoints (keep it apart, in a vault).

Each backup ends by writing `backup.json` in the folder: when it ran, whether the copy verified, and when
and at which ledger entry the last copy that verified was made (what `archiver doctor` checks).

A backup never replaces a good copy with a changed one: a WARC whose bytes no longer match its recorded
sha256, or any other file that changed since it was copied, is reported and the copy kept. The new database
snapshot is verified (`verify_archive`, against the copied WARCs) before it replaces the previous one; when
it does not verify it is kept beside it as `NAME.unverified` and the previous one stays in place.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, ledger
from .access_log import access_log_path, verify_access_log
from .checkpoints import PUBLIC_KEY, load_public_key, signed_warc_files
from .config import ArchiveConfig
from .errors import ConfigError
from .lock import archive_lock
from .problems import Problem
from .recovery import file_sha256, fsync_path
from .store import Store
from .users import users_path
from .verify import verify_archive
from .warc import iso, utcnow

PARTIAL = ".partial"  # suffix of a file being written; left only by a backup that was stopped
UNVERIFIED = ".unverified"
MANIFEST = "backup.json"


@dataclass
class BackupOutcome:
    destination: Path
    ledger_seq: int = 0
    copied: int = 0  # files of the WARC folder, and the public key, copied this time
    unchanged: int = 0  # already in the backup, checked equal
    bytes_copied: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> int:
        """Problems that are not notes: the copy cannot be trusted as it is."""
        return sum(1 for p in self.problems if p.severity == "error")


def back_up_archive(
    archive: ArchiveConfig,
    destination: Path,
    on_step: Callable[[str, int, int], None] | None = None,
) -> BackupOutcome:
    """Copy the archive into `destination` and verify the copy. `on_step(step, done, total)` shows progress:
    the files of the WARC folder copied or checked, then verify's steps."""
    on_step = on_step or (lambda step, done, total: None)
    destination = _checked_destination(archive, destination)
    outcome = BackupOutcome(destination)
    with archive_lock(archive.dir):
        try:
            destination.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--to {destination}: cannot create the backup folder ({exc.strerror})") from None
        if not os.access(destination, os.W_OK | os.X_OK):
            raise ConfigError(f"--to {destination}: the backup folder is not writable")
        _remove_partials(destination)
        database = destination / archive.database.name
        staged = _snapshot(archive.database, database.with_name(database.name + PARTIAL))
        warcs = destination / archive.warc_dir.name
        signer = _trusted_key(destination / archive.keys_dir.name / PUBLIC_KEY, archive.keys_dir / PUBLIC_KEY)
        recorded, outcome.ledger_seq = _recorded_warcs_and_head(staged, signer)
        sources = {p.relative_to(archive.warc_dir).as_posix(): p for p in _files_under(archive.warc_dir)}
        for done, (name, source) in enumerate(sources.items(), start=1):
            _copy_unless_kept(source, warcs / name, recorded.get(name), outcome)
            on_step("copying files", done, len(sources))
        for name in sorted(set(recorded) - set(sources)):
            kept = "; the backup's copy is kept" if (warcs / name).is_file() else ""
            message = f"recorded in warc_files but missing from the archive{kept}"
            outcome.problems.append(Problem(f"backup of {archive.warc_dir / name}", message))
        for source, name in (
            (archive.keys_dir / PUBLIC_KEY, f"{archive.keys_dir.name}/{PUBLIC_KEY}"),
            (users_path(archive.database), None),
        ):
            if source.is_file():
                target = destination / (name or source.name)
                if name is None:  # the users file changes when people are added or removed: the latest is right
                    _copy(source, target)
                else:
                    _copy_unless_kept(source, target, None, outcome)
        public_key = destination / archive.keys_dir.name / PUBLIC_KEY
        trusted = public_key if public_key.is_file() else None
        log = access_log_path(archive.database)
        target_log = destination / log.name
        # The log's snapshot first: the checkpoints in the database's sign heads of it.
        staged_log = _snapshot(log, target_log.with_name(target_log.name + PARTIAL)) if log.is_file() else None
        problems = verify_archive(
            staged,
            warcs,
            trusted,
            lambda step, n, total: on_step(f"verifying {step}", n, total),
            access_log=staged_log or target_log,
        )
        _put_in_place(staged, database, problems, outcome)
        if staged_log is not None:
            _put_in_place(staged_log, target_log, verify_access_log(staged_log), outcome)
        _write_manifest(destination, outcome)
    fsync_path(destination)
    return outcome


def read_manifest(destination: Path) -> dict | None:
    """The folder's `backup.json`, or None when no backup finished there (or it cannot be read)."""
    try:
        return json.loads((Path(destination) / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _write_manifest(destination: Path, outcome: BackupOutcome) -> None:
    errors = outcome.errors
    attempt = {
        "at": iso(utcnow()),
        "verified": not errors,
        "problems": errors,
        "ledger_seq": outcome.ledger_seq,
        "copied": outcome.copied,
        "unchanged": outcome.unchanged,
    }
    previous = read_manifest(destination) or {}
    verified = {"at": attempt["at"], "ledger_seq": outcome.ledger_seq} if not errors else previous.get("last_verified")
    manifest = {"software_version": __version__, "last_backup": attempt, "last_verified": verified}
    with _staged(destination / MANIFEST) as staged:
        staged.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        os.replace(staged, destination / MANIFEST)


def _checked_destination(archive: ArchiveConfig, destination: Path) -> Path:
    destination = Path(destination).resolve()
    source = archive.dir.resolve()
    if destination == source or source in destination.parents or destination in source.parents:
        raise ConfigError(
            f"--to {destination}: the backup must be outside the archive folder {source} (and not hold it)"
        )
    if destination.exists() and not destination.is_dir():
        raise ConfigError(f"--to {destination}: a file is in the way; name a folder")
    if not archive.database.is_file():
        raise ConfigError(f"{archive.database}: archive database not found; nothing to back up")
    return destination


def _remove_partials(destination: Path) -> None:
    """Temporary files of a backup that was stopped: ours, never part of a copy."""
    for path in destination.rglob(f"*{PARTIAL}"):
        if path.is_file():
            path.unlink()


def _files_under(folder: Path) -> list[Path]:
    """The regular files under the WARC folder, but for another process's temporary ones."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith((".tmp", PARTIAL)))


def _snapshot(source: Path, target: Path) -> Path:
    """One consistent copy of a SQLite file (its WAL included), in rollback-journal mode, mode 0600."""
    target.unlink(missing_ok=True)
    target.touch(mode=0o600)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one read snapshot of the source
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    fsync_path(target)
    return target


def _trusted_key(*candidates: Path) -> Path | None:
    """The public key to trust: the backup's own copy first (copied once, never replaced), else the archive's."""
    return next((path for path in candidates if path.is_file()), None)


def _recorded_warcs_and_head(database: Path, signer: Path | None) -> tuple[dict[str, str], int]:
    """The snapshot's WARC files (name -> sha256 as a checkpoint signed it, else as recorded) and its last
    ledger entry. The signed digest comes first: rows can be added behind the archiver's back, signatures by
    the archive's key cannot."""
    try:
        trusted = load_public_key(signer) if signer is not None else None
    except ConfigError:
        trusted = None  # a damaged key file: verify of the copy says so; rows are all there is to go by
    store = Store.open(database, readonly=True)
    try:
        recorded = {name: row["sha256"] for name, row in store.known_warc_files().items()}
        recorded.update({name: signed.sha256 for name, signed in signed_warc_files(store.conn, trusted).items()})
        return recorded, ledger.head(store.conn)[0]
    finally:
        store.close()


def _copy_unless_kept(source: Path, target: Path, expected: str | None, outcome: BackupOutcome) -> None:
    """Copy `source` unless the backup already holds it; never over a good copy.

    `expected` is the recorded sha256 of a WARC file: a copy that has it is good and kept; the archive's file
    replaces a copy only when it has it. Any other file is copied once and must not change afterwards."""
    where = f"backup of {source}"
    if target.is_file():
        if expected is not None and file_sha256(target) == expected:
            outcome.unchanged += 1
            found = file_sha256(source)  # a closed WARC never changes: say so when the archive's has
            if found != expected:
                message = f"sha256 expected {expected} (recorded and signed), found {found}; the backup's copy is kept"
                outcome.problems.append(Problem(where, message))
            return
        if expected is None:
            if target.stat().st_size == source.stat().st_size and filecmp.cmp(source, target, shallow=False):
                outcome.unchanged += 1
            else:
                outcome.problems.append(Problem(where, "the file changed since it was backed up; the copy is kept"))
            return
    with _staged(target) as staged:
        found = _copy_bytes(source, staged)
        if expected is not None and found != expected:
            message = f"sha256 expected {expected} (recorded and signed), found {found}"
            if target.is_file():  # and it does not match either: leave it, a person must look
                outcome.problems.append(Problem(where, f"{message}; the backup's copy does not match either, left"))
                return
            outcome.problems.append(Problem(where, f"{message}; copied as it is, the only copy"))
        os.replace(staged, target)
    outcome.copied += 1
    outcome.bytes_copied += source.stat().st_size


def _copy(source: Path, target: Path) -> None:
    with _staged(target) as staged:
        _copy_bytes(source, staged)
        os.replace(staged, target)


@contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A temporary file beside `target` (mode 0600), removed unless the caller moved it into place."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL)
    os.close(fd)
    staged = Path(name)
    try:
        yield staged
    finally:
        staged.unlink(missing_ok=True)
    fsync_path(target.parent)


def _copy_bytes(source: Path, target: Path) -> str:
    """Copy and fsync; returns the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _put_in_place(staged: Path, target: Path, problems: list[Problem], outcome: BackupOutcome) -> None:
    """Move a verified snapshot over the previous one; one that does not verify is kept beside it."""
    for p in problems:
        outcome.problems.append(Problem(f"backup {p.where.replace(str(staged), str(target))}", p.message, p.severity))
    if any(p.severity == "error" for p in problems):
        kept = target.with_name(target.name + UNVERIFIED)
        previous = "the previous stays" if target.exists() else "there is no verified one yet"
        os.replace(staged, kept)
        outcome.problems.append(
            Problem(f"backup {target}", f"the new snapshot does not verify: kept as {kept.name}, {previous}")
        )
    else:
        os.replace(staged, target)
