"""The archive's Ed25519 key and the signed checkpoints of the ledger head (see schemas/ledger.md).

`cryptography` does the Ed25519 work: a well-kept, audited implementation rather than code of ours.
The private key file is created 0600 and never leaves the archive's key folder; the public key is what a
third party needs to check a checkpoint, and `archiver key export` prints it.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import ledger, merkle
from .errors import ConfigError
from .items import canonical_json
from .problems import Problem
from .recovery import fsync_path
from .warc import iso, utcnow

PRIVATE_KEY = "archive-ed25519.key"
PUBLIC_KEY = "archive-ed25519.pub"
CHECKPOINT_DIR = "checkpoints"
# Type 1 listed every WARC file in each statement (quadratic: 148 KB a night after three years); type 2 lists
# those recorded since the previous checkpoint and a digest of them all. Both are read; only type 2 is written.
EVERY_FILE_TYPE = "archiver-checkpoint/1"
STATEMENT_TYPE = "archiver-checkpoint/2"
STATEMENT_TYPES = (EVERY_FILE_TYPE, STATEMENT_TYPE)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_b64(key: Ed25519PublicKey) -> str:
    """The key as checkpoints and bundles hold it: its raw 32 bytes in base64."""
    return base64.b64encode(raw_public(key)).decode("ascii")


def ensure_signing_key(keys_dir: Path) -> tuple[Path, bool]:
    """The private key file, generated (mode 0600) when absent; returns (path, created). The public key is
    written first and each file appears whole (a temporary name, fsynced, then moved): a first run killed
    between the two never leaves a private key without its public one beside it."""
    path = keys_dir / PRIVATE_KEY
    if path.exists():
        return path, False
    keys_dir.mkdir(parents=True, exist_ok=True)
    keys_dir.chmod(0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_whole(keys_dir / PUBLIC_KEY, public_pem(key.public_key()), 0o644, replace=True)
    _write_whole(path, pem, 0o600, replace=False)
    return path, True


def restore_public_key(keys_dir: Path, key: Ed25519PrivateKey) -> Path | None:
    """Write the public key beside the private one when it is missing (a first run of an earlier version
    killed between the two files); returns its path when written. Every checkpoint is still checked against it,
    so a private key swapped for another is not hidden by this: the checkpoints it did not sign fail."""
    public = keys_dir / PUBLIC_KEY
    if public.exists():
        return None
    _write_whole(public, public_pem(key.public_key()), 0o644, replace=True)
    return public


def _write_whole(path: Path, data: bytes, mode: int, replace: bool) -> None:
    """`data` at `path` all at once: a temporary name, fsynced, then moved (replace=False: never over a file
    that exists, as O_EXCL would refuse)."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(staged, path)
        else:
            os.link(staged, path)  # FileExistsError when another process made the key meanwhile
    finally:
        staged.unlink(missing_ok=True)
    fsync_path(path.parent)


def load_private_key(keys_dir: Path) -> Ed25519PrivateKey:
    path = keys_dir / PRIVATE_KEY
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: signing key not found; `archiver checkpoint` (or the first run) creates it while the archive "
            "has no checkpoint; an archive with checkpoints needs its own key put back there"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not an Ed25519 PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: public key not found") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Checkpoint:
    statement: str
    signature: str
    public_key: str
    file_name: str
    ledger_seq: int
    ledger_hash: str


def make_statement(
    conn: sqlite3.Connection,
    created_at: str,
    access_log: tuple[int, str] | None = None,
    signer: Ed25519PublicKey | None = None,
) -> dict[str, Any]:
    """The statement a checkpoint signs (schemas/ledger.md). `signer` is the archive's own key: the ledger tree
    is resumed from the latest checkpoint it signed that still holds (`resumable_tree`), not built again."""
    seq, head = ledger.head(conn)
    tree = ledger_tree(conn, signer)
    statement = {
        "type": STATEMENT_TYPE,
        "created_at": created_at,
        "ledger": {"seq": seq, "hash": head},
        "ledger_tree": {
            "size": tree.size,
            "root": tree.root().hex(),
            "frontier": [value.hex() for value in tree.frontier_hashes()],
        },
    }
    if access_log is not None:
        statement["access_log"] = {"seq": access_log[0], "hash": access_log[1]}
    since = conn.execute("SELECT coalesce(max(ledger_seq), 0) FROM checkpoints").fetchone()[0]
    every = conn.execute("SELECT name, sha256 FROM warc_files").fetchall()
    added = [
        {"name": name, "sha256": sha, "size": size} for _, name, sha, size in recorded_warc_files(conn, since, seq)
    ]
    listing = {"count": len(every), "sha256": listing_digest(every), "since": since, "added": added}
    return {**statement, "warc_files": listing}


def listing_digest(files: Iterable[tuple[str, str]]) -> str:
    """The digest a statement signs of every WARC file (name, sha256): sha256 of the lines `sha256sum` prints
    for them ("<sha256>  <name>\\n"), ordered by name, so a copy of the folder can be checked without us."""
    lines = "".join(f"{sha}  {name}\n" for name, sha in sorted(tuple(file) for file in files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def recorded_warc_files(conn: sqlite3.Connection, after: int = 0, upto: int | None = None) -> list[tuple]:
    """(ledger seq, name, sha256, size) of each WARC file whose ledger entry lies in (after, upto], by name."""
    rows = conn.execute(
        "SELECT l.seq, w.name, w.sha256, w.size FROM ledger l JOIN warc_files w ON w.name = l.row_key "
        "WHERE l.table_name = 'warc_files' AND l.seq > ? AND l.seq <= ? ORDER BY w.name",
        (after, upto if upto is not None else ledger.head(conn)[0]),
    )
    return [tuple(row) for row in rows]


def listed_files(statement: Any) -> list[dict[str, Any]]:
    """The WARC files a statement lists by name: every one (type 1) or those added since the previous checkpoint
    (type 2). KeyError, TypeError or ValueError when it is not a statement of a known type."""
    if statement["type"] not in STATEMENT_TYPES:
        raise ValueError(f"statement type {statement['type']!r} unknown to this archiver")
    files = statement["warc_files"] if statement["type"] == EVERY_FILE_TYPE else statement["warc_files"]["added"]
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise TypeError("warc_files lists no files")
    return files


@dataclass(frozen=True)
class Listing:
    """What a type 2 statement says of the WARC files: how many there are and their digest, and from which
    ledger seq its `added` files were recorded."""

    count: int
    sha256: str
    since: int


def signed_listing(statement: Any) -> Listing | None:
    """The listing a type 2 statement signs; None for type 1 (which lists every file itself). KeyError, TypeError
    or ValueError when its shape is not the documented one."""
    if statement["type"] == EVERY_FILE_TYPE:
        return None
    listed_files(statement)
    files = statement["warc_files"]
    count, digest, since = files["count"], files["sha256"], files["since"]
    if not (isinstance(count, int) and isinstance(since, int) and isinstance(digest, str)):
        raise TypeError("warc_files count, sha256 or since of the wrong type")
    return Listing(count, digest, since)


def listing_problems(conn: sqlite3.Connection, statements: list[tuple[str, Any]]) -> Iterator[Problem]:
    """Each type 2 statement's listing (`where`, parsed statement) against the WARC files the ledger recorded by
    the seq it signs: its count and digest over all of them, its `added` those recorded after `since`."""
    checked = []
    for where, statement in statements:
        try:
            listing = signed_listing(statement)
            if listing is not None:
                checked.append((where, int(statement["ledger"]["seq"]), listing, statement["warc_files"]["added"]))
        except (KeyError, TypeError, ValueError) as exc:
            yield Problem(where, f"its list of WARC files is not of the documented shape ({exc})")
    if not checked:
        return
    recorded = sorted(recorded_warc_files(conn), key=lambda row: row[0])
    seqs = [row[0] for row in recorded]
    for where, seq, listing, added in checked:
        upto = bisect.bisect_right(seqs, seq)
        digest = listing_digest((name, sha) for _, name, sha, _ in recorded[:upto])
        if (listing.count, listing.sha256) != (upto, digest):
            yield Problem(
                where,
                f"signs {listing.count} WARC files of digest {listing.sha256}; the archive recorded {upto} by ledger "
                f"seq {seq}, of digest {digest}",
            )
        start = bisect.bisect_right(seqs, listing.since)
        expected = {(name, sha, size) for _, name, sha, size in recorded[start:upto]}
        found = {(str(f.get("name")), str(f.get("sha256")), f.get("size")) for f in added}
        if found != expected:
            yield Problem(
                where,
                f"its WARC files added after ledger seq {listing.since} are not those the ledger records up to seq "
                f"{seq}: only in the statement {_names(found - expected)}; "
                f"only in the archive {_names(expected - found)}",
            )


def _names(files: set[tuple[str, str, Any]]) -> str:
    names = sorted(name for name, _, _ in files)
    if not names:
        return "none"
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def ledger_digests(conn: sqlite3.Connection, after: int = 0) -> Iterator[bytes]:
    """The leaves of the ledger's Merkle tree: each entry's row_sha256, in seq order (those after seq `after`)."""
    for (row_sha,) in conn.execute("SELECT row_sha256 FROM ledger WHERE seq > ? ORDER BY seq", (after,)):
        try:
            yield bytes.fromhex(row_sha)
        except (TypeError, ValueError):
            yield str(row_sha).encode("utf-8", "replace")  # a damaged entry: its root will not match


def ledger_tree(conn: sqlite3.Connection, signer: Ed25519PublicKey | None) -> merkle.TreeBuilder:
    """The Merkle tree over every ledger entry: the entries after the latest checkpoint `signer` signed that can
    be resumed added to its frontier, or all of them from the first when there is none (or no signer)."""
    tree = resumable_tree(conn, signer) if signer is not None else None
    if tree is None:
        tree = merkle.TreeBuilder()
    tree.extend(ledger_digests(conn, after=tree.size))
    return tree


def resumable_tree(conn: sqlite3.Connection, signer: Ed25519PublicKey) -> merkle.TreeBuilder | None:
    """The ledger tree as the latest checkpoint fit to extend left it, tried newest first: signed by `signer`
    (the signature checked, so a row edited in the database is skipped: only a frontier the archive's key signed
    is ever extended), its ledger head still in the ledger with the hash it signed, its tree over that whole
    ledger and its frontier folding to the root it signs. None when there is none; the search stops at the
    first statement `signer` signed without a frontier, as every earlier one lacks it too."""
    signer_b64 = public_b64(signer)
    rows = conn.execute("SELECT statement, signature, public_key FROM checkpoints ORDER BY id DESC")
    for text, signature, public in rows:
        if public != signer_b64 or not _signature_ok(public, signature, text):
            continue
        try:
            statement = json.loads(text)
            seq, head = int(statement["ledger"]["seq"]), str(statement["ledger"]["hash"])
            tree, frontier = signed_tree(statement), signed_frontier(statement)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # reported by verify_checkpoints
        if tree is None or frontier is None:
            return None  # made by a version before frontiers
        size, root = tree
        try:
            resumed = merkle.TreeBuilder.resume(size, frontier)
        except ValueError:
            continue  # reported by verify_checkpoints
        if size == seq and resumed.root().hex() == root and _in_ledger(conn, seq, head):
            return resumed
    return None


def _in_ledger(conn: sqlite3.Connection, seq: int, head: str) -> bool:
    found = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
    return found is not None and found[0] == head


def tree_roots(conn: sqlite3.Connection, sizes: set[int]) -> dict[int, str]:
    """The ledger tree's root (hex) at each of `sizes`, in one pass; a size beyond the ledger is left out."""
    roots: dict[int, str] = {}
    builder = merkle.TreeBuilder()
    leaves = ledger_digests(conn)
    for size in sorted(sizes):
        builder.extend(itertools.islice(leaves, size - builder.size))
        if builder.size < size:
            break
        roots[size] = builder.root().hex()
    return roots


def signed_tree(statement: Any) -> tuple[int, str] | None:
    """(size, root) of the ledger tree a statement signs; None for statements made before it had one."""
    tree = statement.get("ledger_tree") if isinstance(statement, dict) else None
    if tree is None:
        return None
    return int(tree["size"]), str(tree["root"])


def signed_frontier(statement: Any) -> list[bytes] | None:
    """The frontier of the ledger tree a statement signs, largest subtree first; None for statements made before
    they carried one. TypeError or ValueError when it is not a list of hex hashes."""
    tree = statement.get("ledger_tree") if isinstance(statement, dict) else None
    if not isinstance(tree, dict) or "frontier" not in tree:
        return None
    hashes = tree["frontier"]
    if not isinstance(hashes, list):
        raise TypeError("ledger_tree.frontier is not a list")
    return [bytes.fromhex(value) for value in hashes]


def _frontier_problem(where: str, statement: Any, tree: tuple[int, str] | None) -> Problem | None:
    """A statement's frontier must fold to the root it signs. Verify never resumes from one: it checks each
    signed root against the whole ledger, and a frontier folding to a right root is the right frontier."""
    try:
        frontier = signed_frontier(statement)
    except (TypeError, ValueError):
        return Problem(where, "ledger_tree.frontier is not a list of hex hashes")
    if tree is None or frontier is None:
        return None
    size, root = tree
    try:
        found = merkle.frontier_root(size, frontier).hex()
    except ValueError:
        wanted = len(merkle.frontier_heights(size))
        return Problem(where, f"ledger_tree.frontier holds {len(frontier)} hashes, not the {wanted} of {size} entries")
    if found != root:
        return Problem(where, f"ledger tree frontier folds to {found}, not to the root {root} it signs")
    return None


def _tree_or_none(statement: Any) -> tuple[int, str] | None:
    try:
        return signed_tree(statement)
    except (KeyError, TypeError, ValueError):
        return None  # reported by verify_checkpoints


def _tree_problem(where: str, signed: tuple[int, str], roots: dict[int, str]) -> Problem | None:
    size, root = signed
    found = roots.get(size)
    if found is None:
        return Problem(where, f"signs a ledger tree of {size} entries; the ledger holds fewer (ledger truncated)")
    if found != root:
        return Problem(where, f"ledger tree of {size} entries: root expected {root} as signed, found {found}")
    return None


def sign_checkpoint(
    conn: sqlite3.Connection, key: Ed25519PrivateKey, warc_dir: Path, access_log: tuple[int, str] | None = None
) -> Checkpoint:
    """Sign the current ledger head (and the access log's, when given) and stage its JSON copy (NAME.json.tmp,
    fsynced). The caller appends the row in the same transaction and, once it is committed, moves the copy
    into place (`publish_copy`): a copy beside the WARCs is always of a committed checkpoint."""
    statement_obj = make_statement(conn, iso(utcnow()), access_log, key.public_key())
    statement = canonical_json(statement_obj).decode("utf-8")
    signature = base64.b64encode(key.sign(statement.encode("utf-8"))).decode("ascii")
    public = public_b64(key.public_key())
    seq = statement_obj["ledger"]["seq"]
    name = f"checkpoint-{seq:010d}.json"
    _stage_copy(warc_dir, name, {"statement": statement, "signature": signature, "public_key": public})
    return Checkpoint(statement, signature, public, name, seq, statement_obj["ledger"]["hash"])


def _staged(warc_dir: Path, file_name: str) -> Path:
    return (warc_dir / CHECKPOINT_DIR / file_name).with_suffix(".json.tmp")


def _stage_copy(warc_dir: Path, file_name: str, document: dict[str, str]) -> None:
    tmp = _staged(warc_dir, file_name)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.write_text(json.dumps(document, indent=2) + "\n", "utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except OSError as exc:  # a write's error names no file: this one names the copy, and so its volume
        raise OSError(exc.errno, exc.strerror or str(exc), str(tmp)) from exc


def publish_copy(warc_dir: Path, file_name: str) -> None:
    """Move a committed checkpoint's staged copy into place beside the WARCs."""
    folder = warc_dir / CHECKPOINT_DIR
    os.replace(_staged(warc_dir, file_name), folder / file_name)
    try:
        fsync_path(folder)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(folder)) from exc


def restore_copies(conn: sqlite3.Connection, warc_dir: Path) -> list[str]:
    """Write again the copies of committed checkpoints that are missing beside the WARCs (a run stopped between
    its commit and the move). The row holds all a copy contains, so the copy is exactly the one it would
    have been. A staged copy left by a run stopped before its commit signs a ledger head that was rolled back:
    it was never part of the archive and is removed. Returns one notice per copy restored or removed."""
    notices = []
    folder = warc_dir / CHECKPOINT_DIR
    committed = set()
    # names first: a statement lists every WARC file, so all of them are megabytes a night after a few years
    missing = []
    for checkpoint_id, file_name in conn.execute("SELECT id, file_name FROM checkpoints ORDER BY id").fetchall():
        committed.add(file_name)
        if not (folder / file_name).exists():
            missing.append(checkpoint_id)
    for checkpoint_id in missing:
        row = conn.execute(
            "SELECT file_name, statement, signature, public_key FROM checkpoints WHERE id = ?", (checkpoint_id,)
        ).fetchone()
        _stage_copy(warc_dir, row[0], {"statement": row[1], "signature": row[2], "public_key": row[3]})
        publish_copy(warc_dir, row[0])
        notices.append(f"checkpoint copy {row[0]} was missing (a run stopped before moving it into place): restored")
    stale = [p for p in sorted(folder.glob("*.json.tmp")) if p.name.removesuffix(".tmp") not in committed]
    for staged in stale:
        staged.unlink()
        notices.append(f"removed {staged.name}: a checkpoint a stopped run staged but never committed")
    if stale:
        fsync_path(folder)
    return notices


def _signature_ok(public_b64: str, signature_b64: str, statement: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
        key.verify(base64.b64decode(signature_b64), statement.encode("utf-8"))
    except (InvalidSignature, ValueError):
        return False
    return True


NO_KEY = "public key"


def missing_key_problem() -> Problem:
    """Checkpoints are there but no key to check them by: said the same by verify and by rebuild."""
    return Problem(
        NO_KEY,
        f"none to check the checkpoints' signatures against: keys/{PUBLIC_KEY} is missing; pass "
        "--public-key with the copy kept elsewhere",
    )


@dataclass(frozen=True)
class CheckpointCopy:
    """A checkpoint's JSON copy (beside the WARCs or kept elsewhere), read: what it signs and by which key."""

    document: dict[str, str]
    seq: int
    head: str
    warc_files: tuple[tuple[str, str], ...]  # (name, sha256) of each WARC file it lists
    listing: Listing | None  # a type 2 statement's count and digest of every file; None: it lists every file
    tree: tuple[int, str] | None  # (size, root) of the ledger tree it signs, when it signs one
    valid: bool  # the signature holds under the key the copy names (whether that key is trusted is apart)
    known: bool  # of a statement type this archiver reads (a later one's lists nothing it can read)

    @property
    def public_key(self) -> str:
        return self.document["public_key"]


def read_copy(path: Path) -> CheckpointCopy | None:
    """The copy at `path`, or None when it is not a checkpoint document (not JSON, a field missing)."""
    try:
        document = json.loads(path.read_text("utf-8"))
        statement = json.loads(document["statement"])
        seq, head = int(statement["ledger"]["seq"]), str(statement["ledger"]["hash"])
        known = statement.get("type") in STATEMENT_TYPES
        files = tuple((str(f["name"]), str(f["sha256"])) for f in listed_files(statement)) if known else ()
        listing = signed_listing(statement) if known else None
        tree = signed_tree(statement)
        valid = _signature_ok(document["public_key"], document["signature"], document["statement"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return CheckpointCopy(document, seq, head, files, listing, tree, valid, known)


def copies_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*.json")) if folder.is_dir() else []


def _missing_copy(warc_dir: Path, name: str, expected: dict[str, str], *, newest: bool) -> Problem:
    """A checkpoint's copy not in place. Only the newest can be legitimately staged (stopped between its
    commit and the move): every checkpoint restores the staged copies first. Its staged file must hold it."""
    staged = _staged(warc_dir, name)
    try:
        held = json.loads(staged.read_text("utf-8")) == expected if newest and staged.exists() else False
    except (OSError, ValueError):
        held = False
    if held:
        message = "not moved into place (stopped after its commit); the next run or checkpoint restores it"
        return Problem(f"checkpoint file {name}", message, "note")
    if staged.exists():
        why = "staged beside it holding something else" if newest else "staged, though later checkpoints were made"
        return Problem(f"checkpoint file {name}", f"missing beside the WARCs ({staged.name} {why})")
    return Problem(f"checkpoint file {name}", "missing beside the WARCs")


def _unknown_type(where: str, statement: Any) -> Problem | None:
    """A statement of a type this software does not know (a later archiver's) cannot be checked by it."""
    kind = statement.get("type") if isinstance(statement, dict) else None
    if kind in STATEMENT_TYPES:
        return None
    return Problem(where, f"statement of type {kind!r}, which this archiver does not know: check it with a newer one")


def verify_checkpoints(
    conn: sqlite3.Connection,
    warc_dir: Path,
    trusted: Ed25519PublicKey | None,
    in_ledger_now: Callable[[int, str], bool] | None = None,
) -> Iterator[Problem]:
    """Each checkpoint: signed by the archive's key, its ledger head still in the ledger, its JSON copy equal.

    `conn` may read a snapshot while runs go on: `in_ledger_now(seq, hash)` tells whether the ledger as it is
    now (read outside the snapshot) holds that entry, i.e. a copy beyond the snapshot is a later run's."""
    trusted_b64 = public_b64(trusted) if trusted else None
    folder = warc_dir / CHECKPOINT_DIR
    seen_files = set()
    rows = conn.execute("SELECT * FROM checkpoints ORDER BY id").fetchall()
    trees: list[tuple[str, tuple[int, str]]] = []
    statements: list[tuple[str, Any]] = []
    for row in rows:
        where = f"checkpoints id={row['id']}"
        seen_files.add(row["file_name"])
        if trusted_b64 and row["public_key"] != trusted_b64:
            yield Problem(where, f"signed with another key {row['public_key']}, not the archive's {trusted_b64}")
        if not _signature_ok(row["public_key"], row["signature"], row["statement"]):
            yield Problem(where, "signature does not match the statement")
        try:
            statement = json.loads(row["statement"])
            seq, head = statement["ledger"]["seq"], statement["ledger"]["hash"]
            tree = signed_tree(statement)
        except (ValueError, KeyError, TypeError):
            yield Problem(where, "statement is not a checkpoint statement")
            continue
        if (unknown := _unknown_type(where, statement)) is not None:
            yield unknown
            continue
        statements.append((where, statement))
        if tree is not None:
            trees.append((where, tree))
        if (problem := _frontier_problem(where, statement, tree)) is not None:
            yield problem
        if (seq, head) != (row["ledger_seq"], row["ledger_hash"]):
            yield Problem(where, f"row says ledger seq {row['ledger_seq']}, statement says {seq}")
        found = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
        if seq and found is None:
            yield Problem(where, f"signed ledger seq {seq} is no longer in the ledger (ledger truncated)")
        elif seq and found[0] != head:
            yield Problem(where, f"ledger seq {seq} hash expected {head} as signed, found {found[0]}")
        copy = folder / row["file_name"]
        expected = {"statement": row["statement"], "signature": row["signature"], "public_key": row["public_key"]}
        try:
            document = json.loads(copy.read_text("utf-8"))
        except FileNotFoundError:
            yield _missing_copy(warc_dir, copy.name, expected, newest=row is rows[-1])
            continue
        except ValueError:
            yield Problem(f"checkpoint file {copy.name}", "not valid JSON")
            continue
        if document != expected:
            yield Problem(f"checkpoint file {copy.name}", f"differs from {where}")
    roots = tree_roots(conn, {tree[0] for _, tree in trees})
    for where, tree in trees:
        if (problem := _tree_problem(where, tree, roots)) is not None:
            yield problem
    yield from listing_problems(conn, statements)
    # Copies whose rows are gone: the database lost checkpoints (or the ledger was cut back before them).
    max_seq = ledger.head(conn)[0]
    for path in copies_in(folder):
        if path.name in seen_files:
            continue
        where = f"checkpoint file {path.name}"
        if (copy := read_copy(path)) is None:
            yield Problem(where, "not a checkpoint document")
            continue
        detail = f"signed ledger seq {copy.seq}" + ("" if copy.valid else " (signature invalid)")
        if copy.valid and copy.seq > max_seq and in_ledger_now is not None and in_ledger_now(copy.seq, copy.head):
            message = f"written by a run after verify began (ledger seq {copy.seq}); verify again to check it"
            yield Problem(where, message, "note")
            continue
        if copy.seq > max_seq:
            detail += f", beyond the ledger's last entry {max_seq} (ledger truncated)"
        yield Problem(where, f"not recorded in the database: {detail}")


def fingerprint(public_b64: str) -> str:
    """A short name for a public key (its raw bytes' sha256), to say which key was trusted."""
    try:
        raw = base64.b64decode(public_b64, validate=True)
    except ValueError:
        raw = public_b64.encode("utf-8")
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def key_fingerprint(key: Ed25519PublicKey) -> str:
    return fingerprint(public_b64(key))


@dataclass(frozen=True)
class SignedWarc:
    sha256: str
    size: int
    checkpoint_id: int


def signed_warc_files(conn: sqlite3.Connection, trusted: Ed25519PublicKey | None) -> dict[str, SignedWarc]:
    """Each WARC file as the first checkpoint that lists it signed it (a closed file never changes, so every
    later statement must say the same; verify_checkpoints reports the signatures that do not hold). Only
    statements whose signature holds, by the trusted key when one is given, count."""
    signed: dict[str, SignedWarc] = {}
    for checkpoint_id, statement in _signed_statements(conn, trusted):
        try:
            for entry in listed_files(statement):
                signed.setdefault(entry["name"], SignedWarc(entry["sha256"], entry["size"], checkpoint_id))
        except (KeyError, TypeError, ValueError):
            continue  # reported by verify_checkpoints
    return signed


def _signed_statements(conn: sqlite3.Connection, trusted: Ed25519PublicKey | None) -> Iterator[tuple[int, Any]]:
    """(id, parsed statement) of each checkpoint whose signature holds, by the trusted key when one is given."""
    trusted_b64 = public_b64(trusted) if trusted else None
    for row in conn.execute("SELECT id, statement, signature, public_key FROM checkpoints ORDER BY id"):
        if trusted_b64 and row["public_key"] != trusted_b64:
            continue
        if not _signature_ok(row["public_key"], row["signature"], row["statement"]):
            continue
        try:
            yield row["id"], json.loads(row["statement"])
        except ValueError:
            continue  # reported by verify_checkpoints


def verify_kept_copies(conn: sqlite3.Connection, folder: Path, trusted: Ed25519PublicKey | None) -> Iterator[Problem]:
    """Checkpoint copies kept away from the archive (a WORM bucket, an email, a backup): each must be signed
    by the archive's key and name a ledger entry the archive still holds with the hash it signed. This is
    what catches a cut made after the archive's own last checkpoint, or an archive re-signed with its own
    stolen key: the copies kept elsewhere are out of reach."""
    trusted_b64 = public_b64(trusted) if trusted else None
    paths = copies_in(folder)
    if not paths:
        yield Problem(f"--checkpoints {folder}", "holds no checkpoint-*.json copies to check against")
        return
    # a tree a checkpoint row signs too is recomputed by verify_checkpoints: one pass over the ledger, not two
    in_database = {tree for _, statement in _signed_statements(conn, None) if (tree := _tree_or_none(statement))}
    own_statements = {_digest(text) for (text,) in conn.execute("SELECT statement FROM checkpoints")}
    trees: list[tuple[str, tuple[int, str]]] = []
    listed: list[tuple[str, Any]] = []
    for path in paths:
        where = f"kept checkpoint {path}"
        if (copy := read_copy(path)) is None:
            yield Problem(where, "not a checkpoint document")
            continue
        if not copy.valid:
            yield Problem(where, "signature does not match the statement")
            continue
        if trusted_b64 and copy.public_key != trusted_b64:
            yield Problem(where, f"signed with another key ({fingerprint(copy.public_key)})")
            continue
        statement = json.loads(copy.document["statement"])
        if (unknown := _unknown_type(where, statement)) is not None:
            yield unknown
            continue
        if (problem := _frontier_problem(where, statement, copy.tree)) is not None:
            yield problem
        if _digest(copy.document["statement"]) not in own_statements:  # verify_checkpoints checks those
            listed.append((where, statement))
        found = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (copy.seq,)).fetchone()
        if found is None:
            yield Problem(where, f"signed ledger seq {copy.seq}, which the archive no longer holds (ledger cut back)")
        elif found[0] != copy.head:
            rewritten = f"ledger seq {copy.seq} hash expected {copy.head} as signed, found {found[0]} (rewritten)"
            yield Problem(where, rewritten)
        elif copy.tree is not None and copy.tree not in in_database:
            trees.append((where, copy.tree))
    roots = tree_roots(conn, {tree[0] for _, tree in trees}) if trees else {}
    for where, tree in trees:
        if (problem := _tree_problem(where, tree, roots)) is not None:
            yield problem
    yield from listing_problems(conn, listed)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def signed_warc_listings(
    warc_dir: Path, trusted: Ed25519PublicKey | None
) -> tuple[dict[str, dict[str, str]], list[Problem]]:
    """What the checkpoint copies beside the WARCs list, without a database: {name: {sha256: "signed in
    COPY"}}, taken only from copies whose signature holds (under `trusted`, the archive's key, when given);
    any other copy is a problem and lists nothing. Rebuild trusts a WARC file by this."""
    trusted_b64 = public_b64(trusted) if trusted else None
    listings: dict[str, dict[str, str]] = {}
    problems = []
    trusted_copies: dict[int, tuple[Path, CheckpointCopy]] = {}
    for path in copies_in(warc_dir / CHECKPOINT_DIR):
        where = f"checkpoint file {path.name}"
        if (copy := read_copy(path)) is None:
            problems.append(Problem(where, "not a checkpoint document: the WARC files it lists are not trusted"))
        elif trusted and copy.public_key != trusted_b64:
            problems.append(
                Problem(
                    where,
                    f"signed with another key ({fingerprint(copy.public_key)}), not the archive's "
                    f"({key_fingerprint(trusted)}): the WARC files it lists are not trusted",
                )
            )
        elif not copy.valid:
            message = "signature does not match the statement: the WARC files it lists are not trusted"
            problems.append(Problem(where, message))
        elif not copy.known:
            kind = json.loads(copy.document["statement"]).get("type")
            message = f"statement of type {kind!r}, which this archiver does not know: the WARC files it lists are "
            problems.append(Problem(where, message + "not trusted; rebuild with a newer archiver"))
        else:
            trusted_copies[copy.seq] = (path, copy)
            for name, sha in copy.warc_files:
                listings.setdefault(name, {}).setdefault(sha, f"signed in {path.name}")
    return listings, problems + list(_incomplete_copies(trusted_copies))


def _incomplete_copies(copies: dict[int, tuple[Path, CheckpointCopy]]) -> Iterator[Problem]:
    """A type 2 statement lists only the files recorded since the previous checkpoint: the copy of that one must
    be there and trusted (else the files it added are trusted by nothing), and together the copies up to the
    latest must list the files that latest one counts and digests."""
    for path, copy in copies.values():
        since = copy.listing.since if copy.listing is not None else 0
        if since and since not in copies:
            yield Problem(
                f"checkpoint file {path.name}",
                f"lists the WARC files recorded after ledger seq {since}: checkpoint-{since:010d}.json, which lists "
                "those before, is missing or not trusted",
            )
    if not copies:
        return
    path, latest = copies[max(copies)]
    if latest.listing is None:
        return
    held: dict[str, str] = {}
    for _, copy in sorted(copies.values(), key=lambda pair: pair[1].seq):
        for name, sha in copy.warc_files:
            held.setdefault(name, sha)
    digest = listing_digest(held.items())
    if (len(held), digest) != (latest.listing.count, latest.listing.sha256):
        yield Problem(
            f"checkpoint file {path.name}",
            f"signs {latest.listing.count} WARC files of digest {latest.listing.sha256}; the trusted copies beside "
            f"it list {len(held)}, of digest {digest}",
        )


def signed_access_log_heads(conn: sqlite3.Connection) -> list[tuple[str, int, str]]:
    """(checkpoint, seq, hash) of the access log's head as each checkpoint whose signature holds signed it."""
    heads = []
    for checkpoint_id, statement in _signed_statements(conn, None):
        try:
            signed = statement.get("access_log")
            if signed is not None:
                heads.append((f"checkpoints id={checkpoint_id}", int(signed["seq"]), str(signed["hash"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # reported by verify_checkpoints
    return heads
