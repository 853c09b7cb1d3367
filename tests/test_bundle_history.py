"""A bundle's checkpoint history: every earlier checkpoint with its RFC 9162 consistency proof to the bundle's own,
held by `verify-bundle --checkpoints` to checkpoint copies kept away from the archive. The forger here holds the
archive's key: they rewrite a row in the archive, recompute the ledger after it and sign every checkpoint again.
The bundle they export then passes on its own; the kept copies catch it."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from archiver.bundle.gather import ROW_TABLES
from archiver.bundle.report import render_report
from archiver.checkpoints import load_private_key
from archiver.demo.run import run_demo
from archiver.items import canonical_json
from archiver.ledger import _row_by_key, canonical_row_bytes, chain_hash
from archiver.merkle import TreeBuilder, prove
from tests.test_bundle import export, regenerate_manifests, resign, verify
from tests.test_merkle import mth, subproof


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The demo archive, with a copy of its checkpoint copies as they were made (`kept`, beside it)."""
    directory = tmp_path_factory.mktemp("history")
    assert run_demo(directory / "demo", echo=lambda line: None).exit_code == 0
    shutil.copytree(directory / "demo" / "archive" / "warcs" / "checkpoints", directory / "kept")
    return directory


def flagged_item(demo: Path) -> tuple[int, str]:
    conn = sqlite3.connect(demo / "archive" / "archive.db")
    found = conn.execute("SELECT id, item_key FROM flags WHERE severity = 'high' ORDER BY id LIMIT 1").fetchone()
    conn.close()
    return found


@pytest.fixture(scope="module")
def bundle(made, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "case"
    code, output = export(made / "demo", out, "--item", flagged_item(made / "demo")[1])
    assert code == 0, output
    return out


def custody(bundle: Path) -> dict:
    return json.loads((bundle / "data" / "custody.json").read_text())


def write_custody(bundle: Path, value: dict) -> None:
    (bundle / "data" / "custody.json").write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def key_file(demo: Path) -> str:
    return str(demo / "archive" / "keys" / "archive-ed25519.pub")


def test_the_bundle_carries_every_earlier_checkpoint_with_rfc_9162s_consistency_proof(made, bundle):
    conn = sqlite3.connect(made / "demo" / "archive" / "archive.db")
    own = custody(bundle)["checkpoint"]
    rows = conn.execute(
        "SELECT id, file_name, statement, signature, public_key FROM checkpoints WHERE id < ? ORDER BY id", (own["id"],)
    ).fetchall()
    size = json.loads(own["statement"])["ledger_tree"]["size"]
    leaves = [
        bytes.fromhex(r[0]) for r in conn.execute("SELECT row_sha256 FROM ledger WHERE seq <= ? ORDER BY seq", (size,))
    ]
    conn.close()
    earlier = custody(bundle)["earlier_checkpoints"]
    assert (
        len(rows) >= 2
        and [tuple(e[k] for k in ("id", "file_name", "statement", "signature", "public_key")) for e in earlier] == rows
    )
    for entry in earlier:
        old = json.loads(entry["statement"])["ledger_tree"]["size"]
        assert mth(leaves[:old]).hex() == json.loads(entry["statement"])["ledger_tree"]["root"]
        assert entry["consistency"] == [h.hex() for h in subproof(old, leaves, True)]
    assert custody(bundle)["type"] == "archiver-custody/3"


def test_kept_copies_vouch_for_the_rows_they_signed(made, bundle):
    code, lines = verify(bundle, "--public-key", key_file(made / "demo"), "--checkpoints", str(made / "kept"))
    assert code == 0, lines
    entries = len(custody(bundle)["ledger_entries"])
    earlier = custody(bundle)["earlier_checkpoints"]
    assert lines[1].startswith(f"checkpoint history: {len(earlier)} earlier checkpoint(s), ")
    assert lines[1].endswith(
        f"the ledger tree of each of the {len(earlier)} that sign one is proven (RFC 9162) the first entries of the "
        "export's"
    )
    # the kept folder was copied before the export made its own checkpoint: every copy in it is an earlier one
    assert lines[2] == f"kept checkpoint copies ({made / 'kept'}): {len(earlier)} equal the bundle's"
    assert lines[3].startswith(f"{entries} of the bundle's {entries} rows are in a ledger tree a kept copy signs")
    assert lines[-1] == "bundle verifies"
    # without kept copies, the history's dates are the archive's word
    code, lines = verify(bundle, "--public-key", key_file(made / "demo"))
    assert code == 0 and lines[2].startswith(f"{entries} of the bundle's {entries} rows were first signed before ")
    assert lines[2].endswith(
        "as the archive's own checkpoints say (its key can sign them again: --checkpoints holds them to copies kept "
        "elsewhere)"
    )


def forge_archive(demo: Path, flag_id: int) -> None:
    """An insider with the archive's key: a PHI flag's severity lowered with the triggers dropped, the ledger
    recomputed from that row on, and every checkpoint after it signed again over the new ledger (its row, a
    ledgered one, recomputed in turn). `archiver export` then takes the forged checkpoints as the archive's."""
    key = load_private_key(demo / "archive" / "keys")
    conn = sqlite3.connect(demo / "archive" / "archive.db")
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        if name.startswith(("flags_append_only", "ledger_append_only", "checkpoints_append_only")):
            conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE flags SET severity = 'low' WHERE id = ?", (flag_id,))
    start = conn.execute(
        "SELECT seq FROM ledger WHERE table_name = 'flags' AND row_key = ?", (str(flag_id),)
    ).fetchone()
    leaves = [
        bytes.fromhex(r[0]) for r in conn.execute("SELECT row_sha256 FROM ledger WHERE seq < ? ORDER BY seq", start)
    ]
    hashes = {start[0] - 1: conn.execute("SELECT hash FROM ledger WHERE seq = ?", (start[0] - 1,)).fetchone()[0]}
    later = conn.execute("SELECT seq, table_name, row_key FROM ledger WHERE seq >= ? ORDER BY seq", start).fetchall()
    for seq, table, row_key in later:
        if table == "checkpoints":
            statement = json.loads(
                conn.execute("SELECT statement FROM checkpoints WHERE id = ?", (int(row_key),)).fetchone()[0]
            )
            signed_seq = statement["ledger"]["seq"]
            tree = TreeBuilder()
            tree.extend(leaves[: statement["ledger_tree"]["size"]])
            statement["ledger"]["hash"] = hashes[signed_seq]
            statement["ledger_tree"] |= {
                "root": tree.root().hex(),
                "frontier": [h.hex() for h in tree.frontier_hashes()],
            }
            text = canonical_json(statement).decode()
            signature = base64.b64encode(key.sign(text.encode())).decode()
            conn.execute(
                "UPDATE checkpoints SET statement = ?, signature = ?, ledger_hash = ? WHERE id = ?",
                (text, signature, hashes[signed_seq], int(row_key)),
            )
        canonical = canonical_row_bytes(table, _row_by_key(conn, table, row_key))
        hashes[seq] = chain_hash(hashes[seq - 1], canonical)
        leaves.append(hashlib.sha256(canonical).digest())
        conn.execute(
            "UPDATE ledger SET row_sha256 = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (leaves[-1].hex(), hashes[seq - 1], hashes[seq], seq),
        )
    conn.commit()
    conn.close()


def test_an_archive_rewritten_and_re_signed_with_its_own_key_is_caught_by_the_kept_copies(made, tmp_path):
    forged = tmp_path / "forged"
    shutil.copytree(made / "demo", forged)
    flag_id, item_key = flagged_item(forged)
    forge_archive(forged, flag_id)
    out = tmp_path / "case"
    code, output = export(forged, out, "--item", item_key)
    assert code == 0, output
    flag = next(
        json.loads(line)
        for line in (out / "data" / "flags.jsonl").read_text().splitlines()
        if json.loads(line)["id"] == flag_id
    )
    assert flag["severity"] == "low"
    # On its own, and against the archive's own key, the forged bundle verifies: the key signed it all.
    code, lines = verify(out, "--public-key", key_file(forged))
    assert code == 0 and lines[-1] == "bundle verifies", lines
    code, lines = verify(out, "--public-key", key_file(forged), "--checkpoints", str(made / "kept"))
    assert code == 1
    assert lines[:-1] and all(
        line.startswith(f"kept checkpoint {made / 'kept'}/checkpoint-")
        and line.endswith(": the bundle's history is not what was signed then")
        for line in lines[:-1]
    ), lines
    assert lines[-1] == f"{len(lines) - 1} problem(s) found"


def sign_statement(demo: Path, statement: dict) -> tuple[str, str]:
    text = canonical_json(statement).decode()
    return text, base64.b64encode(load_private_key(demo / "archive" / "keys").sign(text.encode())).decode()


def drop_one(demo: Path, value: dict) -> None:
    del value["earlier_checkpoints"][0]


def drop_all_and_re_sign_the_own(demo: Path, value: dict) -> None:
    """The whole history left out and the bundle's own checkpoint signed again as if it were the first."""
    value["earlier_checkpoints"] = []
    statement = json.loads(value["checkpoint"]["statement"])
    statement["warc_files"]["since"] = 0
    value["checkpoint"]["statement"], value["checkpoint"]["signature"] = sign_statement(demo, statement)


def flip_a_proof_hash(demo: Path, value: dict) -> None:
    proof = value["earlier_checkpoints"][-1]["consistency"]
    proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]


def another_key(demo: Path, value: dict) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from archiver.checkpoints import public_b64

    other = Ed25519PrivateKey.generate()
    entry = value["earlier_checkpoints"][0]
    entry["signature"] = base64.b64encode(other.sign(entry["statement"].encode())).decode()
    entry["public_key"] = public_b64(other.public_key())


def no_history(demo: Path, value: dict) -> None:
    del value["earlier_checkpoints"]


@pytest.mark.parametrize(
    ("tamper", "alone", "kept"),
    [
        (drop_one, "a checkpoint was left out of it", "a checkpoint the bundle's history leaves out"),
        (drop_all_and_re_sign_the_own, None, "a checkpoint the bundle's history leaves out"),
        (flip_a_proof_hash, "is not proven the first entries of the bundle's", None),
        (another_key, "than the bundle's checkpoint", "a checkpoint the bundle's history leaves out"),
        (no_history, "data/custody.json earlier_checkpoints: missing", None),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_a_history_changed_and_re_signed_with_the_archive_key_is_caught(made, bundle, tmp_path, tamper, alone, kept):
    """Alone where the bundle contradicts itself; by the kept copies where the key holder made it agree."""
    forged = tmp_path / "forged"
    shutil.copytree(bundle, forged)
    value = custody(forged)
    tamper(made / "demo", value)
    write_custody(forged, value)
    regenerate_manifests(forged)
    resign(forged, load_private_key(made / "demo" / "archive" / "keys"))
    code, lines = verify(forged, "--public-key", key_file(made / "demo"))
    if alone is None:
        assert code == 0 and lines[-1] == "bundle verifies", lines
    else:
        assert code == 1 and any(alone in line for line in lines), lines
    code, lines = verify(forged, "--public-key", key_file(made / "demo"), "--checkpoints", str(made / "kept"))
    assert code == 1 and any((kept or alone) in line for line in lines), lines


def test_a_bundle_of_before_the_history_verifies_but_cannot_be_held_to_kept_copies(made, bundle, tmp_path):
    """Review w finding 2: a forged bundle relabelled as of the older format would otherwise pass with the kept
    copies merely "not compared"."""
    older = tmp_path / "older"
    shutil.copytree(bundle, older)
    value = custody(older)
    del value["earlier_checkpoints"]
    value["type"] = "archiver-custody/2"
    write_custody(older, value)
    regenerate_manifests(older)
    resign(older, load_private_key(made / "demo" / "archive" / "keys"))
    code, lines = verify(older, "--public-key", key_file(made / "demo"))
    assert code == 0, lines
    assert lines[1].startswith("checkpoint history: none carried (a bundle of before archiver 0.6.0)")
    code, lines = verify(older, "--public-key", key_file(made / "demo"), "--checkpoints", str(made / "kept"))
    assert code == 1
    assert lines[:-1] == [
        f"kept checkpoint {path}: the bundle carries no checkpoint history (made before archiver 0.6.0), so it cannot "
        "be held to this copy: export it again with archiver 0.6.0 or later"
        for path in sorted((made / "kept").glob("checkpoint-*.json"))
    ]


def test_each_kept_copy_must_be_a_checkpoint_signed_by_the_trusted_key(made, bundle, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from archiver.checkpoints import public_b64

    kept = tmp_path / "kept"
    shutil.copytree(made / "kept", kept)
    first, second = sorted(kept.glob("checkpoint-*.json"))
    document = json.loads(second.read_text())
    other = Ed25519PrivateKey.generate()
    document["signature"] = base64.b64encode(other.sign(document["statement"].encode())).decode()
    document["public_key"] = public_b64(other.public_key())
    second.write_text(json.dumps(document))
    edited = json.loads(first.read_text())
    edited["statement"] = edited["statement"].replace('"seq":', '"seq": ', 1)
    first.write_text(json.dumps(edited))
    (kept / "checkpoint-0000000001.json").write_text("not json")
    # a copy of a checkpoint made after the export, naming the bundle's as the one before it
    later = json.loads((made / "demo" / "archive" / "warcs" / "checkpoints" / second.name).read_text())
    statement = json.loads(later["statement"])
    statement["warc_files"]["since"] = json.loads(custody(bundle)["checkpoint"]["statement"])["ledger"]["seq"]
    statement["ledger"]["seq"] += 10**6
    later["statement"], later["signature"] = sign_statement(made / "demo", statement)
    (kept / f"checkpoint-{statement['ledger']['seq']:010d}.json").write_text(json.dumps(later))
    code, lines = verify(bundle, "--checkpoints", str(kept))
    assert code == 1
    assert lines[:-1] == [
        f"kept checkpoint {kept / 'checkpoint-0000000001.json'}: not a checkpoint document",
        f"kept checkpoint {first}: signature does not match the statement",
        f"kept checkpoint {second}: signed with another key ({lines[2].split('(')[1].split(')')[0]}) than the "
        "bundle's checkpoint",
    ], lines
    shutil.rmtree(kept)
    kept.mkdir()
    (kept / f"checkpoint-{statement['ledger']['seq']:010d}.json").write_text(json.dumps(later))
    code, lines = verify(bundle, "--checkpoints", str(kept))
    assert (
        code == 0
        and f"kept checkpoint copies ({kept}): 0 equal the bundle's, 1 later than the bundle's checkpoint (each names "
        "a checkpoint at or after its seq)"
        in lines
    )
    alone = next(
        line for line in lines if " row(s) are in no ledger tree of a kept copy the bundle is held to " in line
    )
    assert alone.startswith(f"{len(custody(bundle)['ledger_entries'])} row(s)") and "flags " in alone, alone
    code, lines = verify(bundle, "--checkpoints", str(tmp_path / "nowhere"))
    assert code == 2 and lines == [
        f"archiver: error: --checkpoints {tmp_path / 'nowhere'}: no such folder; name the folder of kept checkpoint "
        "copies"
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, lines = verify(bundle, "--checkpoints", str(empty))
    assert code == 1 and lines[0] == f"--checkpoints {empty}: holds no checkpoint-*.json copies to check against"


def test_an_archive_whose_earlier_checkpoint_signed_another_tree_exports_nothing(made, tmp_path):
    """A bundle would carry a proof that cannot hold: export stops, says which checkpoint, and writes nothing."""
    broken = tmp_path / "broken"
    shutil.copytree(made / "demo", broken)
    conn = sqlite3.connect(broken / "archive" / "archive.db")
    conn.execute("DROP TRIGGER checkpoints_append_only_update")
    file_name, text = conn.execute("SELECT file_name, statement FROM checkpoints ORDER BY id LIMIT 1").fetchone()
    statement = json.loads(text)
    statement["ledger_tree"]["root"] = "00" * 32
    conn.execute(
        "UPDATE checkpoints SET statement = ? WHERE file_name = ?", (canonical_json(statement).decode(), file_name)
    )
    conn.commit()
    conn.close()
    code, output = export(broken, tmp_path / "case", "--item", flagged_item(broken)[1])
    assert code == 1, output
    assert output.strip().splitlines()[-1] == (
        f"archiver: error: checkpoint {file_name} signed a ledger tree the ledger no longer begins with: run "
        "`archiver verify`"
    )
    assert not (tmp_path / "case").exists() or not any((tmp_path / "case").iterdir())


def test_a_bundle_checkpoint_the_archive_never_signed_is_caught_by_a_later_kept_copy(made, tmp_path):
    """Review w finding 1: the forged archive's bundle given a checkpoint of its own, signed with the archive's key
    at the seq just below the first kept copy, and no history: every kept copy is later than it. The first names
    the checkpoint before it (none), so the archive signed none at that seq."""
    forged = tmp_path / "forged"
    shutil.copytree(made / "demo", forged)
    flag_id, item_key = flagged_item(forged)
    forge_archive(forged, flag_id)
    out = tmp_path / "case"
    assert export(forged, out, "--item", item_key)[0] == 0
    value = custody(out)
    first_kept = min(int(path.stem.split("-")[1]) for path in (made / "kept").glob("checkpoint-*.json"))
    size = first_kept - 1
    conn = sqlite3.connect(forged / "archive" / "archive.db")
    leaves = [bytes.fromhex(r[0]) for r in conn.execute("SELECT row_sha256 FROM ledger ORDER BY seq")]
    head = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (size,)).fetchone()[0]
    conn.close()
    assert max(e["seq"] for e in value["ledger_entries"]) <= size
    proofs = prove(iter(leaves), size, [e["seq"] - 1 for e in value["ledger_entries"]])
    tree = TreeBuilder()
    tree.extend(leaves[:size])
    statement = json.loads(value["checkpoint"]["statement"])
    statement["ledger"] = {"seq": size, "hash": head}
    frontier = [h.hex() for h in tree.frontier_hashes()]
    statement["ledger_tree"] = {"size": size, "root": proofs.root.hex(), "frontier": frontier}
    statement["warc_files"]["since"] = 0
    value["checkpoint"]["statement"], value["checkpoint"]["signature"] = sign_statement(forged, statement)
    value["earlier_checkpoints"] = []
    for entry in value["ledger_entries"]:
        entry["inclusion"] = [h.hex() for h in proofs.inclusion[entry["seq"] - 1]]
    seal(forged, out, value)
    code, lines = verify(out, "--public-key", key_file(forged))
    assert code == 0 and lines[-1] == "bundle verifies", lines
    code, lines = verify(out, "--public-key", key_file(forged), "--checkpoints", str(made / "kept"))
    assert code == 1
    assert (
        f"kept checkpoint {made / 'kept' / f'checkpoint-{first_kept:010d}.json'}: names the checkpoint before it as "
        f"of ledger seq 0: the archive signed none at ledger seq {size}, which the bundle's checkpoint says it signed"
    ) in lines, lines


def seal(demo: Path, bundle: Path, value: dict) -> None:
    """custody.json written, report.html made again from it and the rows, the bag signed again with the archive's
    key: what its holder does after changing custody.json."""
    write_custody(bundle, value)
    data = bundle / "data"
    tables = {
        t: [json.loads(line) for line in (data / f"{t}.jsonl").read_text("utf-8").splitlines()]
        for t in ROW_TABLES
        if (data / f"{t}.jsonl").exists()
    }
    (data / "report.html").write_text(render_report(tables, json.loads((data / "custody.json").read_text())), "utf-8")
    regenerate_manifests(bundle)
    resign(bundle, load_private_key(demo / "archive" / "keys"))


def own_tree_not_the_whole_ledger(value: dict) -> dict:
    statement = json.loads(value["checkpoint"]["statement"])
    statement["ledger"]["seq"] += 1
    return statement


def own_frontier_junk(value: dict) -> dict:
    statement = json.loads(value["checkpoint"]["statement"])
    statement["ledger_tree"]["frontier"] = ["00" * 32 for _ in statement["ledger_tree"]["frontier"]]
    return statement


def own_since_gone(value: dict) -> dict:
    statement = json.loads(value["checkpoint"]["statement"])
    del statement["warc_files"]["since"]
    return statement


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (own_tree_not_the_whole_ledger, "entries for ledger seq "),
        (own_frontier_junk, "ledger tree frontier folds to "),
        (own_since_gone, "a type 2 statement without the seq of the checkpoint before it (since)"),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_the_bundles_checkpoint_must_say_what_a_checkpoint_says_of_itself(made, bundle, tmp_path, change, expected):
    """Review w finding 5: its tree of the whole ledger it signs, its frontier folding to its root, its since."""
    forged = tmp_path / "forged"
    shutil.copytree(bundle, forged)
    value = custody(forged)
    value["checkpoint"]["statement"], value["checkpoint"]["signature"] = sign_statement(made / "demo", change(value))
    seal(made / "demo", forged, value)
    code, lines = verify(forged, "--public-key", key_file(made / "demo"))
    assert code == 1 and any(line.startswith("data/custody.json checkpoint: ") and expected in line for line in lines)


def test_a_checkpoint_twice_in_the_history_is_said_so(made, bundle, tmp_path):
    """Review w finding 7."""
    forged = tmp_path / "forged"
    shutil.copytree(bundle, forged)
    value = custody(forged)
    value["earlier_checkpoints"].insert(0, value["earlier_checkpoints"][0])
    seal(made / "demo", forged, value)
    code, lines = verify(forged, "--public-key", key_file(made / "demo"))
    seq = json.loads(value["earlier_checkpoints"][0]["statement"])["ledger"]["seq"]
    assert code == 1 and lines[:-1] == [
        f"data/custody.json earlier_checkpoints (ledger seq {seq}): the same ledger seq {seq} as the checkpoint before "
        "it (twice)"
    ], lines
