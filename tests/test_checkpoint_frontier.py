"""A checkpoint resumes the ledger tree from the frontier the last trustworthy checkpoint signed: it reads only
the entries after it, signs the root a whole recomputation gives, and never resumes from a row it cannot trust."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from archiver import checkpoints
from archiver.checkpoints import CHECKPOINT_DIR, PUBLIC_KEY, load_private_key, public_b64
from archiver.cli import app
from archiver.items import canonical_json
from archiver.merkle import frontier_heights, frontier_root
from archiver.verify import verify_archive

from .test_config import DISABLED
from .test_ledger import behind_the_back
from .test_merkle import mth


@pytest.fixture
def archive(tmp_path):
    """An empty-account run (its checkpoint signs a frontier), keys generated on the way."""
    config = tmp_path / "archiver.toml"
    config.write_text(f'[archive]\ndir = "arch"\n{DISABLED}')
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp_path / "arch", config


@pytest.fixture
def leaves_read(monkeypatch) -> list[int]:
    """How many ledger digests each tree computation reads (the checkpoint's own, through ledger_digests)."""
    counts: list[int] = []
    real = checkpoints.ledger_digests

    def counting(conn: sqlite3.Connection, after: int = 0) -> Iterator[bytes]:
        counts.append(0)
        for digest in real(conn, after):
            counts[-1] += 1
            yield digest

    monkeypatch.setattr(checkpoints, "ledger_digests", counting)
    return counts


def checkpoint(config) -> None:
    result = CliRunner().invoke(app, ["checkpoint", "--config", str(config)])
    assert result.exit_code == 0, result.output


def statements(arch) -> list[dict[str, Any]]:
    conn = sqlite3.connect(arch / "archive.db")
    rows = conn.execute("SELECT statement FROM checkpoints ORDER BY id").fetchall()
    conn.close()
    return [json.loads(row[0]) for row in rows]


def ledger_leaves(arch, size: int) -> list[bytes]:
    conn = sqlite3.connect(arch / "archive.db")
    rows = conn.execute("SELECT row_sha256 FROM ledger WHERE seq <= ? ORDER BY seq", (size,)).fetchall()
    conn.close()
    return [bytes.fromhex(row[0]) for row in rows]


def assert_the_whole_ledgers_tree(arch, statement: dict[str, Any]) -> None:
    """The signed tree is RFC 9162's over every entry, and its frontier the documented one, from definitions."""
    tree = statement["ledger_tree"]
    leaves = ledger_leaves(arch, tree["size"])
    assert tree["size"] == statement["ledger"]["seq"] == len(leaves)
    assert tree["root"] == mth(leaves).hex()
    expected, start = [], 0
    for height in frontier_heights(tree["size"]):
        expected.append(mth(leaves[start : start + (1 << height)]).hex())
        start += 1 << height
    assert tree["frontier"] == expected


def problems(arch, kept=None) -> list[str]:
    found = verify_archive(arch / "archive.db", arch / "warcs", arch / "keys" / PUBLIC_KEY, kept_checkpoints=kept)
    return [str(p) for p in found]


def test_checkpoint_after_checkpoint_reads_only_the_entries_after_the_last(archive, leaves_read):
    arch, config = archive
    for _ in range(3):
        checkpoint(config)
    signed = statements(arch)
    assert [s["ledger_tree"]["size"] for s in signed[1:]] == [s["ledger"]["seq"] for s in signed[1:]]
    # Each reads what entered the ledger since the one before: the earlier checkpoint's own row, and no more.
    sizes = [s["ledger_tree"]["size"] for s in signed]
    assert leaves_read == [later - earlier for earlier, later in zip(sizes, sizes[1:], strict=False)]
    assert leaves_read == [1, 1, 1]
    for statement in signed:
        assert_the_whole_ledgers_tree(arch, statement)
    assert problems(arch) == []


def test_statements_without_a_frontier_verify_and_the_next_checkpoint_builds_the_whole_tree(
    archive, leaves_read, monkeypatch
):
    """Checkpoints made before statements carried a frontier: they verify as they are, and the first checkpoint
    after them reads the whole ledger; the one after that resumes from its frontier."""
    arch, config = archive
    made = checkpoints.make_statement

    def as_before(*args: Any) -> dict[str, Any]:
        statement = made(*args)
        del statement["ledger_tree"]["frontier"]
        return statement

    monkeypatch.setattr(checkpoints, "make_statement", as_before)
    checkpoint(config)
    monkeypatch.setattr(checkpoints, "make_statement", made)
    assert "frontier" not in statements(arch)[-1]["ledger_tree"]
    assert problems(arch) == []
    leaves_read.clear()
    checkpoint(config)
    checkpoint(config)
    signed = statements(arch)
    assert leaves_read == [signed[2]["ledger_tree"]["size"], 1]
    for statement in signed[2:]:
        assert_the_whole_ledgers_tree(arch, statement)
    assert problems(arch) == []


def poisoned_frontier(statement: dict[str, Any]) -> list[str]:
    return ["ab" * 32 for _ in statement["ledger_tree"]["frontier"]]


Edited = tuple[dict[str, Any], Ed25519PrivateKey | None]  # the statement, and the key that signs it again if any


def unsigned_poison(statement: dict[str, Any], key: Ed25519PrivateKey | None) -> Edited:
    """Someone with write access and no key: a frontier and the root it folds to, under the old signature."""
    tree = statement["ledger_tree"]
    tree["frontier"] = poisoned_frontier(statement)
    tree["root"] = frontier_root(tree["size"], [bytes.fromhex(h) for h in tree["frontier"]]).hex()
    return statement, None


def poison_of_another_key(statement: dict[str, Any], key: Ed25519PrivateKey) -> Edited:
    statement, _ = unsigned_poison(statement, key)
    return statement, Ed25519PrivateKey.generate()


def head_not_in_the_ledger(statement: dict[str, Any], key: Ed25519PrivateKey) -> Edited:
    statement["ledger"]["hash"] = "cd" * 32
    return statement, key


def frontier_not_of_its_root(statement: dict[str, Any], key: Ed25519PrivateKey) -> Edited:
    statement["ledger_tree"]["frontier"] = poisoned_frontier(statement)
    return statement, key


def frontier_cut_short(statement: dict[str, Any], key: Ed25519PrivateKey) -> Edited:
    statement["ledger_tree"]["frontier"] = statement["ledger_tree"]["frontier"][1:]
    return statement, key


Edit = Callable[[dict[str, Any], Ed25519PrivateKey], Edited]


@pytest.mark.parametrize(
    ("edit", "reported"),
    [
        (unsigned_poison, "checkpoints id=2: signature does not match the statement"),
        (poison_of_another_key, "checkpoints id=2: signed with another key"),
        (head_not_in_the_ledger, f"hash expected {'cd' * 32} as signed"),
        (frontier_not_of_its_root, "checkpoints id=2: ledger tree frontier folds to "),
        (frontier_cut_short, "checkpoints id=2: ledger_tree.frontier holds "),
    ],
)
def test_a_checkpoint_row_edited_behind_the_back_is_never_resumed_from(archive, leaves_read, edit: Edit, reported: str):
    """The latest checkpoint row rewritten with its triggers dropped (some re-signed with the archive's own key,
    which only its holder could do): the next checkpoint skips it and resumes from the one before, and signs the
    root of the whole ledger; verify names the row."""
    arch, config = archive
    checkpoint(config)
    first, second = statements(arch)
    key = load_private_key(arch / "keys")
    statement, signer = edit(second, key)
    text = canonical_json(statement).decode()
    conn = sqlite3.connect(arch / "archive.db")
    signature, public = conn.execute("SELECT signature, public_key FROM checkpoints WHERE id = 2").fetchone()
    conn.close()
    if signer is not None:
        signature = base64.b64encode(signer.sign(text.encode())).decode()
        public = public_b64(signer.public_key())
    behind_the_back(
        arch / "archive.db",
        f"UPDATE checkpoints SET statement = '{text}', signature = '{signature}', public_key = '{public}' WHERE id = 2",
    )
    leaves_read.clear()
    checkpoint(config)
    third = statements(arch)[-1]
    assert leaves_read == [third["ledger_tree"]["size"] - first["ledger_tree"]["size"]]
    assert_the_whole_ledgers_tree(arch, third)
    found = problems(arch)
    assert any(reported in p for p in found), found


def test_every_row_edited_leaves_the_whole_tree_to_build(archive, leaves_read):
    arch, config = archive
    checkpoint(config)
    for checkpoint_id, statement in enumerate(statements(arch), start=1):
        text = canonical_json(unsigned_poison(statement, None)[0]).decode()
        behind_the_back(arch / "archive.db", f"UPDATE checkpoints SET statement = '{text}' WHERE id = {checkpoint_id}")
    leaves_read.clear()
    checkpoint(config)
    third = statements(arch)[-1]
    assert leaves_read == [third["ledger_tree"]["size"]]
    assert_the_whole_ledgers_tree(arch, third)


def test_verify_reports_a_signed_frontier_that_does_not_fold_to_its_root(archive, monkeypatch, tmp_path):
    """A statement the archive's key signed, row and copy as made (a signer's bug, or the key's thief): only the
    fold check can see it, in the row and in a copy kept elsewhere. The next checkpoint does not resume from it."""
    arch, config = archive
    made = checkpoints.make_statement

    def disagreeing(*args: Any) -> dict[str, Any]:
        statement = made(*args)
        statement["ledger_tree"]["frontier"] = poisoned_frontier(statement)
        return statement

    monkeypatch.setattr(checkpoints, "make_statement", disagreeing)
    checkpoint(config)
    monkeypatch.setattr(checkpoints, "make_statement", made)
    statement = statements(arch)[-1]
    tree = statement["ledger_tree"]
    folds_to = frontier_root(tree["size"], [bytes.fromhex(h) for h in tree["frontier"]]).hex()
    kept = tmp_path / "kept"
    shutil.copytree(arch / "warcs" / CHECKPOINT_DIR, kept)
    message = f"ledger tree frontier folds to {folds_to}, not to the root {tree['root']} it signs"
    copy = kept / f"checkpoint-{statement['ledger']['seq']:010d}.json"
    assert problems(arch, kept) == [f"checkpoints id=2: {message}", f"kept checkpoint {copy}: {message}"]
    checkpoint(config)
    assert_the_whole_ledgers_tree(arch, statements(arch)[-1])
