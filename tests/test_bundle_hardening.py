"""Evidence bundles hold what they say and nothing else, stay private, name who made them, and survive an export
that is killed: each test here is a finding of the 2026-11-24 review of the bundle code."""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.bundle.verify import verify_bundle
from archiver.checkpoints import load_private_key
from archiver.cli import app
from archiver.store import Store
from tests.test_bundle import (
    config_of,
    db,
    items_of,
    jsonl,
    readme_manual_steps,
    regenerate_manifests,
    resign,
    verifies,
    verify,
)


@pytest.fixture(scope="module")
def demo(demo_template, tmp_path_factory) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("hardening") / "demo")


@pytest.fixture
def demo_copy(demo_template, tmp_path) -> Path:
    """An archive of the test's own, for a test that appends to it or leaves something in its folder."""
    return demo_template.copy_to(tmp_path / "demo")


def run_export(demo: Path, out: Path, *args: str, case: str = "HR-2026-014"):
    return CliRunner().invoke(
        app, ["export", "--config", config_of(demo), "--case", case, "--out", str(out), "--quiet", *args]
    )


# -- 1: every captured attachment is in the bundle, whatever URL its file is stored under ---------------------
@pytest.mark.parametrize("platform", ["linkedin", "facebook", "instagram", "mastodon", "x", "bluesky", "youtube"])
def test_every_captured_attachment_is_in_the_bundle(demo, tmp_path, platform):
    """LinkedIn's media entry `url` is the stable /rest/images resource, its file stored under the signed
    download_url: the bundle carries the file and its row, and the report shows it, on every platform."""
    conn = db(demo)
    keys = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT v.item_key FROM item_versions v, json_each(v.media) j WHERE v.platform = ? "
            "AND json_extract(j.value, '$.sha256') IS NOT NULL ORDER BY v.id LIMIT 3",
            (platform,),
        )
    ]
    conn.close()
    assert keys, f"the demo captures {platform} media"
    out = tmp_path / "media"
    result = run_export(demo, out, *[a for k in keys for a in ("--item", k)])
    assert result.exit_code == 0, result.output
    rows = {r["sha256"] for r in jsonl(out / "data" / "media_files.jsonl")}
    files = {p.name.split(".")[0] for p in (out / "data" / "media").iterdir()}
    captured = {
        m["sha256"]
        for v in jsonl(out / "data" / "item_versions.jsonl")
        for m in json.loads(v["media"])
        if "sha256" in m
    }
    assert captured and captured <= rows and captured <= files
    report = (out / "data" / "report.html").read_text()
    assert all(f'<span class="digest">sha256 {sha}</span>' in report for sha in captured)
    assert verifies(out)


def test_verify_bundle_names_a_captured_attachment_the_bundle_lacks(demo, tmp_path):
    """A bundle without the media row of an attachment its version says was captured (as bundles of LinkedIn
    posts were made) is incomplete, even signed by the archive's key with every other check passing."""
    conn = db(demo)
    key = conn.execute(
        "SELECT v.item_key FROM item_versions v, json_each(v.media) j WHERE v.platform = 'linkedin' "
        "AND json_extract(j.value, '$.download_url') IS NOT NULL LIMIT 1"
    ).fetchone()[0]
    conn.close()
    out = tmp_path / "linkedin"
    assert run_export(demo, out, "--item", key).exit_code == 0
    data = out / "data"
    (row,) = jsonl(data / "media_files.jsonl")
    (data / "media_files.jsonl").write_text("")
    (data / "media_files.csv").write_text((data / "media_files.csv").read_text().splitlines()[0] + "\n")
    for file in (data / "media").iterdir():
        file.unlink()
    (data / "media").rmdir()
    custody = json.loads((data / "custody.json").read_text())
    custody["ledger_entries"] = [e for e in custody["ledger_entries"] if e["table_name"] != "media_files"]
    (data / "custody.json").write_text(json.dumps(custody))
    regenerate_manifests(out)
    resign(out, load_private_key(demo / "archive" / "keys"))  # the archive's own key: the signature holds
    code, lines = verify(out)
    assert code == 1 and lines[:-1] == [
        f"data/item_versions.jsonl id={v['id']}: attachment {m['url']} (sha256 {row['sha256']}) was captured, but "
        "the bundle has no media_files row for it (left out)"
        for v in jsonl(data / "item_versions.jsonl")
        for m in json.loads(v["media"])
        if m.get("sha256") == row["sha256"]
    ], lines


# -- 2: a symbolic link anywhere is refused ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def youtube_bundle(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "youtube"
    assert run_export(demo, out, "--platform", "youtube").exit_code == 0
    return out


@pytest.fixture(scope="module")
def archive_key(demo, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "archive-ed25519.pub"
    result = CliRunner().invoke(app, ["key", "export", "--config", config_of(demo)])
    path.write_text(result.output)
    return path


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("data/REGULATOR-FINDINGS", "../../notes"),  # a folder: no other check walks into it
        ("data/REGULATOR-FINDING.html", "../../notes/finding.html"),
        ("data/media/extra.png", "../../../notes/finding.html"),
        ("NOTES", "../notes"),
    ],
)
def test_a_symbolic_link_anywhere_in_the_bundle_is_refused(youtube_bundle, archive_key, tmp_path, link, target):
    delivery = tmp_path / "usb"
    bundle = delivery / "HR-2026-014"
    shutil.copytree(youtube_bundle, bundle)
    (delivery / "notes").mkdir()
    (delivery / "notes" / "finding.html").write_text("<h1>OCR finding: the clinic admitted the breach</h1>")
    os.symlink(target, bundle / link)
    code, lines = verify(bundle, "--public-key", str(archive_key))
    # one line for the link (bagit adds its own for a linked file, which it counts as a payload file)
    assert code == 1 and [ln for ln in lines if "link" in ln] == [
        f"{link}: a symbolic link (to {target}); a bundle holds none (added)"
    ], lines
    script = readme_manual_steps(bundle, archive_key, tmp_path / "bundle.sig")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    manual = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True, env=env)
    assert manual.returncode != 0, manual.stdout + manual.stderr


# -- 3: a bundle is private to the user who exported it -----------------------------------------------------------
def test_the_bundle_is_private_to_its_owner_whatever_the_umask(demo, tmp_path):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "case"
        result = run_export(demo, out, "--platform", "facebook", "--wacz")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in [out, *out.rglob("*")]}
    assert {"case/bag-info.txt", "case/signature.json", "case/data/evidence.wacz", "case/data/media"} <= set(modes)
    wrong = {
        name: f"{mode:o}" for name, mode in modes.items() if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)
    }
    assert not wrong


# -- 4: who exported is the account the system runs the export as -------------------------------------------------
def test_exported_by_is_the_effective_account_not_the_environment(demo, tmp_path, monkeypatch):
    account = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.setenv("LOGNAME", "dr.helen.arbogast")
    monkeypatch.setenv("USER", "dr.helen.arbogast")
    monkeypatch.setenv("SUDO_USER", "alice\nExternal-Identifier: HR-0000")  # a claim, and no new tag line
    out = tmp_path / "who"
    assert run_export(demo, out, "--platform", "x").exit_code == 0
    custody = json.loads((out / "data" / "custody.json").read_text())
    assert custody["exported_by"] == account
    assert custody["exported_by_account"] == {
        "name": account,
        "uid": os.geteuid(),
        "sudo_user_claimed": "alice\\u000aExternal-Identifier: HR-0000",
    }
    info = (out / "bag-info.txt").read_text().splitlines()
    assert f"Contact-Name: {account}" in info and [ln for ln in info if "External-Identifier" in ln] == [
        "External-Identifier: HR-2026-014"
    ]
    conn = db(demo)
    assert conn.execute("SELECT exported_by FROM exports ORDER BY id DESC LIMIT 1").fetchone()[0] == account
    conn.close()
    report = (out / "data" / "report.html").read_text()
    assert f"{account} (uid {os.geteuid()}), SUDO_USER alice" in report and "claimed by the environment" in report
    assert verifies(out)


def test_consent_links_name_the_same_operator(monkeypatch):
    from archiver.consent import register
    from archiver.operator import operator_name

    monkeypatch.setenv("LOGNAME", "someone.else")
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert register.operator_name is operator_name
    assert operator_name() == f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"


# -- 5: the report shows each flag's review ------------------------------------------------------------------------
def test_report_shows_each_flags_latest_decision(demo_copy, tmp_path):
    from archiver.scan.archive import append_review

    store = Store.open(demo_copy / "archive" / "archive.db")
    flag = store.conn.execute("SELECT id, item_key FROM flags ORDER BY id LIMIT 1").fetchone()
    append_review(store, flag[0], "escalated", "first.reader", "asked the privacy office")
    append_review(store, flag[0], "false-positive", "privacy.officer", "clinic's public fax number")
    created = store.conn.execute("SELECT max(created_at) FROM flag_reviews").fetchone()[0]
    store.close()
    out = tmp_path / "reviewed"
    assert run_export(demo_copy, out, "--item", flag[1]).exit_code == 0
    report = (out / "data" / "report.html").read_text()
    flags = report[report.index("<h3>Flags</h3>") :]
    row = next(r for r in flags[: flags.index("</table>")].split("<tr>") if "false-positive" in r)
    assert all(c in row for c in ("privacy.officer", created, "clinic&#x27;s public fax number")), row
    assert "escalated" not in row and "first.reader" not in row
    assert flags.count("open (not reviewed)") == len(jsonl(out / "data" / "flags.jsonl")) - 1  # the item's others


def flag(id: int, version: int, matched: str = "555-0100", category: str = "phone", **hit) -> dict:
    return {
        "id": id,
        "version_id": version,
        "item_key": "mastodon:1",
        "rule_id": hit.get("rule_id", "phone.us"),
        "span_start": hit.get("span_start", 4),
        "span_end": 12,
        "matched": matched,
        "category": category,
    }


def test_a_review_carries_over_to_a_later_flag_of_the_same_hit():
    """As the archive's flag_status view decides it, from the bundle's own rows: a later version's flag of the
    same item, rule, span and matched text takes the latest decision; another hit, an earlier version, or a
    consent flag's own decision does not."""
    from archiver.bundle.report import latest_reviews

    flags = [
        flag(1, 10),
        flag(2, 11),  # the same hit on the next version (a moderator's hide)
        flag(3, 11, matched="555-0199"),  # the same span, other text: another hit
        flag(4, 11, span_start=5),
        flag(5, 9),  # an earlier version: a review of a later one does not reach back
        flag(6, 10, matched="C-1", category="consent", rule_id="consent.lapsed"),
        flag(7, 11, matched="C-1", category="consent", rule_id="consent.lapsed"),
    ]
    reviews = [
        {"id": 1, "flag_id": 1, "decision": "violation"},
        {"id": 2, "flag_id": 1, "decision": "false-positive"},
        {"id": 3, "flag_id": 6, "decision": "false-positive"},
    ]
    found = {flag_id: review["id"] for flag_id, review in latest_reviews(flags, reviews).items()}
    assert found == {1: 2, 2: 2, 6: 3}


# -- 6: selector values that select nothing are named -------------------------------------------------------------
def test_selector_values_that_select_nothing_are_named(demo, tmp_path):
    conn = db(demo)
    post, author = conn.execute(
        "SELECT item_key, author_handle FROM items WHERE platform = 'x' AND kind = 'post' ORDER BY version_id LIMIT 1"
    ).fetchone()
    conn.close()
    typo = post[:-1] + ("0" if post[-1] != "0" else "1")
    out = tmp_path / "typo"
    result = run_export(demo, out, "--item", post, "--item", typo, "--author", author, "--author", "nobody.here")
    assert result.exit_code == 0, result.output
    assert [r["item_key"] for r in jsonl(out / "data" / "items.jsonl")] == [post]
    expected = [{"option": "--item", "value": typo}, {"option": "--author", "value": "nobody.here"}]
    assert json.loads((out / "data" / "custody.json").read_text())["unmatched_selectors"] == expected
    assert result.stderr.splitlines() == [
        f"note: {e['option']} {e['value']!r} selected no item (with the other selectors); the bundle holds nothing "
        "for it (custody.json: unmatched_selectors)"
        for e in expected
    ]
    assert verifies(out)


def test_thread_given_a_replys_key_selects_the_whole_thread(demo, tmp_path):
    """Any item of a thread names it, a reply to a reply included (not only its root, as it was)."""
    conn = db(demo)
    reply, root = conn.execute(
        "SELECT item_key, thread_key FROM item_versions WHERE kind = 'comment' AND parent_key != thread_key LIMIT 1"
    ).fetchone()
    thread = items_of(conn, "thread_key = ? OR item_key = ?", root, root)
    conn.close()
    assert len(thread) > 2
    out = tmp_path / "thread"
    result = run_export(demo, out, "--thread", reply)
    assert result.exit_code == 0 and not result.stderr, result.output
    assert {r["item_key"] for r in jsonl(out / "data" / "items.jsonl")} == thread
    assert json.loads((out / "data" / "custody.json").read_text())["unmatched_selectors"] == []


# -- 7: an export killed on the way leaves no signed bundle, and the next one clears what it left ------------------
def test_a_killed_export_leaves_no_signed_bundle_and_the_next_removes_its_folder(demo_copy, tmp_path):
    from archiver.config import load_config
    from archiver.doctor import check_files

    cases = tmp_path / "cases"
    child = textwrap.dedent(f"""
        import os, signal
        from typer.testing import CliRunner
        import archiver.bundle.write as write
        from archiver.cli import app

        def killed(*args, **kwargs):  # the process dies here, as under the OOM killer
            os.kill(os.getpid(), signal.SIGKILL)

        write._record_export = killed
        CliRunner().invoke(app, ["export", "--config", {config_of(demo_copy)!r}, "--case", "HR-9",
                                 "--out", {str(cases / "HR-9")!r}, "--quiet", "--platform", "instagram"])
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (staged,) = cases.iterdir()
    assert staged.name.startswith(".HR-9.partial-") and (staged / "tagmanifest-sha256.txt").exists()
    code, lines = verify(staged)
    assert code == 1 and "signature.json: missing" in lines, lines
    warned = [c for c in check_files(load_config(Path(config_of(demo_copy)))) if c.name == "export staging"]
    assert [c.status for c in warned] == ["warn"] and "export-in-progress.json" in warned[0].message
    assert "HR-9" not in warned[0].message  # a case's folder may bear a patient's name (test_doctor)
    result = run_export(demo_copy, tmp_path / "elsewhere" / "HR-10", "--platform", "x")
    assert result.exit_code == 0, result.output
    assert f"note: removed {staged}, the unfinished bundle of an export that was stopped" in result.output
    assert list(cases.iterdir()) == []
    assert not [c for c in check_files(load_config(Path(config_of(demo_copy)))) if c.name == "export staging"]


def test_the_exports_row_holds_the_signature_before_the_bundle_does(demo_copy, tmp_path, monkeypatch):
    seen = {}
    append = Store.append_export

    def recording(self, row):
        seen["signature.json"] = any(p.name == "signature.json" for p in tmp_path.glob(".case.partial-*/*"))
        return append(self, row)

    monkeypatch.setattr(Store, "append_export", recording)
    out = tmp_path / "case"
    assert run_export(demo_copy, out, "--platform", "x").exit_code == 0
    assert seen == {"signature.json": False}
    conn = db(demo_copy)
    row = conn.execute("SELECT signature FROM exports ORDER BY id DESC LIMIT 1").fetchone()[0]
    conn.close()
    assert row == json.loads((out / "signature.json").read_text())["signature"]


# -- 8: no invisible or line-breaking character in --case or --author ---------------------------------------------
@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e", "\n", "\x00"])
@pytest.mark.parametrize("option", ["--case", "--author"])
def test_invisible_characters_in_case_or_author_are_refused(demo, tmp_path, option, char):
    value = f"HR-2026-014{char}Smith v. Riverside"
    args = ["--author", value] if option == "--author" else ["--platform", "x"]
    case = value if option == "--case" else "HR-2026-014"
    before = [db(demo).execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("exports", "checkpoints")]
    result = run_export(demo, tmp_path / "out", *args, case=case)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"archiver: error: {option} {value!r}: character 12 is U+{ord(char):04X}")
    assert not (tmp_path / "out").exists()
    assert before == [db(demo).execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("exports", "checkpoints")]


# -- 9: neither export nor verify-bundle holds a media file whole in memory ---------------------------------------
BIG = 8 << 20


@pytest.fixture(scope="module")
def big_media_demo(tmp_path_factory) -> Path:
    """A demo whose first X post carries an 8 MB image (random bytes: it does not compress)."""
    from archiver.demo import social_sample
    from archiver.demo.run import run_demo

    small = social_sample.make_png

    def make_png(width: int, height: int, seed: int) -> bytes:
        return b"\x89PNG\r\n\x1a\n" + random.Random(seed).randbytes(BIG) if seed == 500 else small(width, height, seed)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(social_sample, "make_png", make_png)
        directory = tmp_path_factory.mktemp("big-media") / "demo"
        assert run_demo(directory, echo=lambda line: None).exit_code == 0
    return directory


def peak_of(action) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_and_verify_bundle_read_media_as_streams(big_media_demo, tmp_path):
    """Memory stays well under one media file's size: the media record is copied, checked and taken out of
    its WARC record a chunk at a time, never inflated or held whole (that held it three times over)."""
    assert run_export(big_media_demo, tmp_path / "warm-up", "--platform", "youtube").exit_code == 0  # imports done
    out = tmp_path / "big"
    result = []
    export_peak = peak_of(lambda: result.append(run_export(big_media_demo, out, "--platform", "x")))
    assert result[0].exit_code == 0, result[0].output
    assert max(p.stat().st_size for p in (out / "data" / "media").iterdir()) > BIG
    problems = []
    verify_peak = peak_of(lambda: problems.extend(verify_bundle(out)))
    assert problems == []
    assert export_peak < BIG // 2 and verify_peak < BIG // 2, (export_peak, verify_peak)
