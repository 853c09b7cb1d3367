"""A bundle's checkpoint history: every checkpoint the archive signed before the bundle's own, each with the RFC
9162 consistency proof that the ledger tree it signed is the first entries of the bundle's, unchanged.

The bundle's own checkpoint is signed at export, by the archive's key; on its own it shows only what the archive
held then. The checkpoints before it were copied away as they were made (a WORM bucket, an email): a copy kept
there that equals one the bundle carries, whose tree is proven a prefix of the bundle's, vouches for every row of
the bundle in that tree, as it stood on that date, out of reach of whoever holds the archive's key now. Each type 2
statement names the ledger seq of the checkpoint before it (`warc_files.since`), so a checkpoint left out of the
history breaks the chain.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import merkle
from ..checkpoints import (
    STATEMENT_TYPE,
    _frontier_problem,
    _signature_ok,
    copies_in,
    fingerprint,
    read_copy,
    signed_tree,
)
from ..errors import ArchiverError
from ..problems import Problem

WHERE = "data/custody.json earlier_checkpoints"
LISTED_ROWS = 10  # rows only the archive's key vouches for, named in the summary; the rest are counted
FIELDS = ("id", "file_name", "statement", "signature", "public_key")


def earlier_checkpoints(conn: sqlite3.Connection, checkpoint_id: int) -> list[dict[str, Any]]:
    """Every checkpoint before the bundle's own, oldest first, as its row holds it (consistency proofs apart)."""
    cur = conn.execute(f"SELECT {', '.join(FIELDS)} FROM checkpoints WHERE id < ? ORDER BY id", (checkpoint_id,))
    return [dict(zip(FIELDS, tuple(row), strict=True)) for row in cur]


def old_sizes(earlier: list[dict[str, Any]]) -> list[int]:
    return sorted({tree[0] for c in earlier if (tree := signed_tree(json.loads(c["statement"]))) is not None})


def add_consistency(earlier: list[dict[str, Any]], proofs: merkle.Proofs, size: int) -> None:
    """Give each earlier checkpoint its proof (`consistency`, hex; null when it signs no tree), checked here: an
    archive whose earlier checkpoint signed another tree than its ledger holds now exports nothing."""
    for checkpoint in earlier:
        tree = signed_tree(json.loads(checkpoint["statement"]))
        if tree is None:
            checkpoint["consistency"] = None
            continue
        proof = proofs.consistency[tree[0]]
        if not merkle.verify_consistency(tree[0], size, bytes.fromhex(tree[1]), proofs.root, proof):
            raise ArchiverError(
                f"checkpoint {checkpoint['file_name']} signed a ledger tree the ledger no longer begins with: "
                "run `archiver verify`"
            )
        checkpoint["consistency"] = [h.hex() for h in proof]


@dataclass(frozen=True)
class Signed:
    """A checkpoint the bundle carries, checked: its ledger seq, time and tree (None before trees)."""

    seq: int
    created_at: str
    tree: tuple[int, str] | None
    statement: str
    own: bool  # the bundle's own checkpoint


@dataclass
class History:
    checkpoints: list[Signed]  # oldest first, the bundle's own last
    problems: list[Problem]
    carried: bool  # the bundle is of a format that carries its history
    public_key: str  # of the bundle's own checkpoint

    def first_signed(self, seq: int) -> Signed | None:
        """The earliest checkpoint whose tree holds ledger entry `seq`."""
        return next((c for c in self.checkpoints if c.tree is not None and c.tree[0] >= seq), None)


def read_history(custody: dict[str, Any], required: bool) -> History:
    """The bundle's checkpoints, each checked: signed by the key of the bundle's own checkpoint, in ledger order
    before it, each naming the one before it, and each tree proven a prefix of the bundle's. `required`: the
    bundle is of a format that carries them. (custody.json's shape and the bundle's own checkpoint, its
    signature and tree included, are checked apart.)"""
    own = custody["checkpoint"]
    own_statement = json.loads(own["statement"])
    try:
        own_tree = _tree(own_statement)
    except (KeyError, TypeError, ValueError):
        own_tree = None  # reported with the inclusion proofs
    own_signed = Signed(
        own_statement["ledger"]["seq"], str(own_statement.get("created_at")), own_tree, own["statement"], True
    )
    own_problems = statement_problems("data/custody.json checkpoint", own_statement, own_tree)
    values = custody.get("earlier_checkpoints")
    if not isinstance(values, list):
        missing = [Problem(WHERE, "missing" if values is None else "not a list")] if required else []
        return History([own_signed], own_problems + missing, False, own["public_key"])
    problems: list[Problem] = own_problems
    checkpoints: list[Signed] = []
    for n, value in enumerate(values):
        where = f"{WHERE}[{n}]"
        if not (isinstance(value, dict) and all(isinstance(value.get(k), str) for k in FIELDS[1:])):
            problems.append(Problem(where, "not an object with file_name, statement, signature and public_key"))
            continue
        where = f"{where} ({value['file_name']})"
        try:
            statement = json.loads(value["statement"])
            signed = Signed(
                int(statement["ledger"]["seq"]),
                str(statement["created_at"]),
                _tree(statement),
                value["statement"],
                False,
            )
        except (ValueError, KeyError, TypeError):
            problems.append(Problem(where, "statement is not JSON naming the ledger's seq, the time and any tree"))
            continue
        if not _signature_ok(value["public_key"], value["signature"], value["statement"]):
            problems.append(Problem(where, "signature does not match the statement"))
            continue
        if value["public_key"] != own["public_key"]:
            problems.append(
                Problem(
                    where, f"signed with another key ({fingerprint(value['public_key'])}) than the bundle's checkpoint"
                )
            )
            continue
        problems.extend(statement_problems(where, statement, signed.tree))
        problems.extend(_consistency_problems(where, signed, value.get("consistency"), own_signed))
        checkpoints.append(signed)
    problems.extend(_order_problems([*checkpoints, own_signed]))
    return History([*checkpoints, own_signed], problems, True, own["public_key"])


def _tree(statement: dict[str, Any]) -> tuple[int, str] | None:
    tree = signed_tree(statement)
    if tree is not None and not (tree[0] > 0 and len(bytes.fromhex(tree[1])) == merkle.HASH_SIZE):
        raise ValueError("ledger_tree is not a size and a sha256 root")
    return tree


def _consistency_problems(where: str, signed: Signed, proof: Any, own: Signed) -> list[Problem]:
    if signed.tree is None:
        return [] if proof is None else [Problem(where, "signs no ledger tree, yet carries a consistency proof")]
    if own.tree is None:
        return [Problem(where, "signs a ledger tree, the bundle's later checkpoint none")]
    size, root = signed.tree
    try:
        hashes = [bytes.fromhex(h) for h in proof]
        if any(len(h) != merkle.HASH_SIZE for h in hashes):
            raise ValueError
    except (TypeError, ValueError):
        return [Problem(where, "has no consistency proof (`consistency`, hex hashes)")]
    if size > own.tree[0]:
        return [
            Problem(where, f"signs a ledger tree of {size} entries, more than the bundle's checkpoint's {own.tree[0]}")
        ]
    if not merkle.verify_consistency(size, own.tree[0], bytes.fromhex(root), bytes.fromhex(own.tree[1]), hashes):
        return [
            Problem(
                where,
                f"its ledger tree ({size} entries, root {root}) is not proven the first entries of the bundle's "
                f"({own.tree[0]} entries, root {own.tree[1]}): the ledger was changed between them, or the proof",
            )
        ]
    return []


def statement_problems(where: str, statement: dict[str, Any], tree: tuple[int, str] | None) -> list[Problem]:
    """What a statement must say of itself: its tree is of all the ledger it signs (`size` = `seq`) and its
    frontier folds to its root; a type 2 statement names the seq of the checkpoint before it (`since`)."""
    problems = []
    if tree is not None and tree[0] != statement["ledger"]["seq"]:
        message = f"signs a ledger tree of {tree[0]} entries for ledger seq {statement['ledger']['seq']}: not all of it"
        problems.append(Problem(where, message))
    if (frontier := _frontier_problem(where, statement, tree)) is not None:
        problems.append(frontier)
    if statement.get("type") == STATEMENT_TYPE and not isinstance(_since(statement), int):
        problems.append(Problem(where, "a type 2 statement without the seq of the checkpoint before it (since)"))
    return problems


def _since(statement: dict[str, Any]) -> Any:
    files = statement.get("warc_files")
    return files.get("since") if isinstance(files, dict) else None


def _order_problems(checkpoints: list[Signed]) -> list[Problem]:
    """Oldest first, the bundle's own last, each type 2 statement naming the seq of the one before it."""
    problems = []
    before = 0
    for signed in checkpoints:
        where = "data/custody.json checkpoint" if signed.own else f"{WHERE} (ledger seq {signed.seq})"
        if signed.seq == before:
            problems.append(Problem(where, f"the same ledger seq {before} as the checkpoint before it (twice)"))
            continue
        if signed.seq < before:
            problems.append(Problem(where, f"ledger seq {signed.seq} is not after the checkpoint before it ({before})"))
        since = _since(json.loads(signed.statement))
        if isinstance(since, int) and since != before:
            problems.append(
                Problem(
                    where,
                    f"its statement names the checkpoint before it as of ledger seq {since}; the bundle's history has "
                    f"{before or 'none'} there: a checkpoint was left out of it",
                )
            )
        before = signed.seq
    return problems


@dataclass
class KeptCopies:
    """Checkpoint copies kept away from the archive, held to the bundle's history."""

    problems: list[Problem]
    matched: list[Signed]  # the bundle's checkpoints a kept copy equals, each once
    later: int  # copies of checkpoints after the bundle's own: nothing to compare them with


def check_kept(history: History, folder: Path, trusted_b64: str | None) -> KeptCopies:
    """Each copy signed by the trusted key (the given one, else the key of the bundle's checkpoint) and, up to the
    bundle's checkpoint, equal to the bundle's checkpoint of its ledger seq, which a bundle must carry. A later
    copy names the seq of the checkpoint before it: the archive signed none between that seq and the copy's own."""
    kept = KeptCopies([], [], 0)
    paths = copies_in(folder)
    if not paths:
        kept.problems.append(Problem(f"--checkpoints {folder}", "holds no checkpoint-*.json copies to check against"))
        return kept
    if unread := sorted(p.name for p in folder.iterdir() if p.is_file() and p not in paths):
        shown = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
        message = f"{len(unread)} file(s) not named checkpoint-*.json, not read: {shown}"
        kept.problems.append(Problem(f"--checkpoints {folder}", message, "note"))
    key = trusted_b64 or history.public_key
    whose = "the given public key" if trusted_b64 else "the bundle's checkpoint"
    by_seq = {c.seq: c for c in history.checkpoints}
    own = history.checkpoints[-1]
    for path in paths:
        where = f"kept checkpoint {path}"
        copy = read_copy(path)
        if copy is None:
            kept.problems.append(Problem(where, "not a checkpoint document"))
        elif not copy.valid:
            kept.problems.append(Problem(where, "signature does not match the statement"))
        elif copy.public_key != key:
            other = fingerprint(copy.public_key)
            kept.problems.append(Problem(where, f"signed with another key ({other}) than {whose}"))
        elif copy.seq > own.seq:
            kept.later += 1
            since = _since(json.loads(copy.document["statement"]))
            if isinstance(since, int) and since < own.seq:
                message = (
                    f"names the checkpoint before it as of ledger seq {since}: the archive signed none at ledger seq "
                    f"{own.seq}, which the bundle's checkpoint says it signed"
                )
                kept.problems.append(Problem(where, message))
        elif not history.carried:
            message = (
                "the bundle carries no checkpoint history (made before archiver 0.6.0), so it cannot be held to this "
                "copy: export it again with archiver 0.6.0 or later"
            )
            kept.problems.append(Problem(where, message))
        elif (carried := by_seq.get(copy.seq)) is None:
            message = f"signs ledger seq {copy.seq}, a checkpoint the bundle's history leaves out"
            kept.problems.append(Problem(where, message))
        elif carried.statement != copy.document["statement"]:
            message = (
                f"differs from the bundle's checkpoint of ledger seq {copy.seq}: the bundle's "
                f"{'own checkpoint' if carried.own else 'history'} is not what was signed then"
            )
            kept.problems.append(Problem(where, message))
        elif carried not in kept.matched:
            kept.matched.append(carried)
    return kept


def _span(times: list[str]) -> str:
    return f"on {times[0]}" if times[0] == times[-1] else f"from {times[0]} to {times[-1]}"


def history_lines(
    history: History, entries: list[dict[str, Any]], kept: KeptCopies | None, folder: Path | None
) -> list[str]:
    """What the history and the kept copies show of the bundle's rows (their ledger entries), in words."""
    earlier = history.checkpoints[:-1]
    seqs = [int(e["seq"]) for e in entries]
    lines = []
    if not history.carried:
        lines.append(
            "checkpoint history: none carried (a bundle of before archiver 0.6.0): its rows are proven only in the "
            "ledger tree its own checkpoint signed, at export"
        )
    elif earlier:
        with_tree = sum(1 for c in earlier if c.tree is not None)
        lines.append(
            f"checkpoint history: {len(earlier)} earlier checkpoint(s), {earlier[0].created_at} to "
            f"{earlier[-1].created_at}, each signed by the archive's key and naming the ledger seq of the one before "
            f"it; the ledger tree of each of the {with_tree} that sign one is proven (RFC 9162) the first entries of "
            "the export's"
        )
    firsts = [history.first_signed(seq) for seq in seqs]
    before = sorted(c.created_at for c in firsts if c is not None and not c.own)
    if before and kept is None:
        lines.append(
            f"{len(before)} of the bundle's {len(seqs)} rows were first signed before the export, {_span(before)}, "
            "as the archive's own checkpoints say (its key can sign them again: --checkpoints holds them to copies "
            "kept elsewhere)"
        )
    if kept is None or folder is None:
        return lines
    matched = sorted(kept.matched, key=lambda c: c.seq)
    vouched = [next((c for c in matched if c.tree is not None and c.tree[0] >= seq), None) for seq in seqs]
    found = sorted(c.created_at for c in vouched if c is not None)
    line = f"kept checkpoint copies ({folder}): {len(matched)} equal the bundle's"
    if kept.later:
        line += f", {kept.later} later than the bundle's checkpoint (each names a checkpoint at or after its seq)"
    lines.append(line)
    if found:
        lines.append(
            f"{len(found)} of the bundle's {len(seqs)} rows are in a ledger tree a kept copy signs: each unchanged "
            f"since the earliest such copy was signed ({_span(found)})"
        )
    alone = [e for e, by in zip(entries, vouched, strict=True) if by is None]
    if alone:
        named = ", ".join(f"{e['table_name']} {e['row_key']} (seq {e['seq']})" for e in alone[:LISTED_ROWS])
        more = f" and {len(alone) - LISTED_ROWS} more" if len(alone) > LISTED_ROWS else ""
        lines.append(
            f"{len(alone)} row(s) are in no ledger tree of a kept copy the bundle is held to (none of the kept copies "
            f"up to the bundle's checkpoint holds them): only the archive's key vouches for {named}{more}"
        )
    return lines
