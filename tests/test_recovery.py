"""A WARC left by an interrupted run: a torn tail is a note for verify, set aside and recorded by the next run."""

from __future__ import annotations

import subprocess
import sys

from archiver.pipeline import register_orphan_warcs
from archiver.rebuild import check_warc_files, read_live_archive
from archiver.recovery import TORN_DIR, file_sha256, scan_warc
from archiver.store import Store
from archiver.verify import verify_archive

from .test_warc import exchange, fixed_writer


def interrupted_archive(tmp_path, cut: int):
    """A run that wrote 3 exchanges and died `cut` bytes into its last record (0: died between records)."""
    store = Store.open(tmp_path / "archive.db")
    store.append_run("run1", "host", "0" * 64, [])
    writer = fixed_writer(tmp_path / "warcs")
    for i in range(3):
        writer.write_exchange(*exchange(i))
    name = writer.current_name
    writer._file.sync()  # the process dies here: the file is never closed nor recorded
    path = tmp_path / "warcs" / name
    whole = path.read_bytes()
    if cut:
        last = scan_warc(path)
        assert last.records == 7
        # Keep everything but part of the last record.
        path.write_bytes(whole[: len(whole) - cut])
    return store, path, whole


def test_torn_tail_is_a_note_then_set_aside_and_recorded(tmp_path):
    store, path, whole = interrupted_archive(tmp_path, cut=50)
    scan = scan_warc(path)
    assert scan.torn and scan.records == 6
    found = verify_archive(tmp_path / "archive.db", tmp_path / "warcs")
    assert [p.severity for p in found] == ["note"]
    assert "interrupted run run1: 6 complete records, torn tail after offset" in found[0].message

    notices = register_orphan_warcs(store, tmp_path / "warcs")
    assert any("torn tail after offset" in n for n in notices)
    aside = list((tmp_path / "warcs" / TORN_DIR).iterdir())
    assert len(aside) == 1
    # Nothing lost: the file's complete records plus the set-aside bytes are exactly what was on disk.
    assert path.read_bytes() + aside[0].read_bytes() == whole[: len(whole) - 50]
    row = store.known_warc_files()[path.name]
    assert row["records"] == 6 and row["run_id"] == "run1"
    check = subprocess.run([sys.executable, "-m", "warcio.cli", "check", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    store.close()
    assert verify_archive(tmp_path / "archive.db", tmp_path / "warcs") == []


def test_complete_file_of_an_interrupted_run_is_recorded_unchanged(tmp_path):
    store, path, whole = interrupted_archive(tmp_path, cut=0)
    register_orphan_warcs(store, tmp_path / "warcs")
    assert path.read_bytes() == whole
    assert store.known_warc_files()[path.name]["records"] == 7
    assert not (tmp_path / "warcs" / TORN_DIR).exists()
    store.close()


def test_unknown_warc_is_left_alone_and_reported(tmp_path):
    store, path, _ = interrupted_archive(tmp_path, cut=0)
    stranger = path.with_name("archiver-20260101000000-someone-else-00001.warc.gz")
    stranger.write_bytes(path.read_bytes())
    notices = register_orphan_warcs(store, tmp_path / "warcs")
    assert any("not from an interrupted run" in n for n in notices)
    store.close()
    found = verify_archive(tmp_path / "archive.db", tmp_path / "warcs")
    assert [str(p) for p in found] == [f"WARC {stranger.name}: on disk but not recorded in warc_files (unknown file)"]


def test_a_record_cut_short_that_still_parses_is_a_torn_tail(tmp_path):
    """A crash can leave a last gzip member that decompresses to a shorter record: its digest decides."""
    store, path, whole = interrupted_archive(tmp_path, cut=0)
    import gzip

    from archiver.warc import read_block_at

    last = scan_warc(path)
    # Rewrite the last record as a complete gzip member of its first bytes only (as a cut write can look).
    records = []
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh, no_record_parse=True)
        for record in iterator:
            record.raw_stream.read()
            iterator.read_to_end(record)
            records.append((iterator.get_record_offset(), iterator.get_record_length()))
    start, length = records[-1]
    member = gzip.decompress(whole[start : start + length])
    path.write_bytes(whole[:start] + gzip.compress(member[: len(member) - 30]))
    block = read_block_at(path, start, None)[1].data  # it still parses
    assert block
    scan = scan_warc(path)
    assert scan.torn and scan.records == last.records - 1 and scan.complete_bytes == start
    found = verify_archive(tmp_path / "archive.db", tmp_path / "warcs")
    assert [p.severity for p in found] == ["note"] and "torn tail after offset" in found[0].message
    register_orphan_warcs(store, tmp_path / "warcs")
    store.close()
    assert verify_archive(tmp_path / "archive.db", tmp_path / "warcs") == []


def test_a_stop_between_setting_the_tail_aside_and_cutting_it_does_not_block_the_next_run(tmp_path):
    """Stopped after the tail was written aside and before the file was cut: the next run finds the same
    tail, goes on, and loses nothing. Bytes already aside under that name but different are kept too."""
    store, path, whole = interrupted_archive(tmp_path, cut=50)
    scan = scan_warc(path)
    tail = path.read_bytes()[scan.complete_bytes :]
    folder = tmp_path / "warcs" / TORN_DIR
    folder.mkdir()
    (folder / f"{path.name}.tail-at-{scan.complete_bytes}").write_bytes(tail)  # the stopped run's copy
    register_orphan_warcs(store, tmp_path / "warcs")
    assert [p.name for p in folder.iterdir()] == [f"{path.name}.tail-at-{scan.complete_bytes}"]
    assert path.read_bytes() == whole[: scan.complete_bytes]
    store.close()
    assert verify_archive(tmp_path / "archive.db", tmp_path / "warcs") == []

    store, path, whole = interrupted_archive(tmp_path / "other", cut=50)
    scan = scan_warc(path)
    folder = tmp_path / "other" / "warcs" / TORN_DIR
    folder.mkdir()
    (folder / f"{path.name}.tail-at-{scan.complete_bytes}").write_bytes(b"other bytes")
    register_orphan_warcs(store, tmp_path / "other" / "warcs")
    kept = folder / f"{path.name}.tail-at-{scan.complete_bytes}"
    assert kept.read_bytes() == b"other bytes"
    assert (folder / f"{kept.name}.1").read_bytes() == whole[scan.complete_bytes : len(whole) - 50]
    store.close()


def test_a_file_naming_an_interrupted_run_after_a_later_run_recorded_its_files_is_planted(tmp_path):
    """Each run records what interrupted runs left when it starts: once a later run has finished, a file that
    still names the interrupted run was put there since (a forged capture, signed by the next checkpoint if it
    were taken for the killed run's). It is not recorded, and verify says so; one recorded anyway is named."""
    store, path, whole = interrupted_archive(tmp_path, cut=0)
    store.append_run("run2", "host", "0" * 64, [])
    assert any("recorded" in n for n in register_orphan_warcs(store, tmp_path / "warcs"))
    store.append_run_result("run2", "ok", {})
    planted = path.with_name(path.name.replace("-00001.", "-00002."))
    planted.write_bytes(whole)
    store.append_run("run3", "host", "0" * 64, [])
    notices = register_orphan_warcs(store, tmp_path / "warcs")
    assert notices == [
        f"WARC file {planted.name} names interrupted run run1, whose files run run2 recorded: it appeared since, "
        "so it is not recorded; `archiver verify` reports it"
    ]
    assert planted.name not in store.known_warc_files()
    store.append_run_result("run3", "ok", {})
    found = verify_archive(tmp_path / "archive.db", tmp_path / "warcs")
    assert [(p.severity, p.where) for p in found] == [("error", f"WARC {planted.name}")]
    live, _ = read_live_archive(tmp_path / "archive.db")  # rebuild, which replays every file on disk, says so too
    checks = check_warc_files(tmp_path / "warcs", None, live)
    assert [(p.severity, p.where) for p in checks.problems] == [("error", f"WARC {planted.name}")]
    # Recorded by software without this check (as the attack left it): verify names the late record.
    store.append_warc_file("run1", planted.name, file_sha256(planted), planted.stat().st_size, 7)
    store.close()
    found = verify_archive(tmp_path / "archive.db", tmp_path / "warcs")
    assert [(p.severity, p.where) for p in found] == [("error", f"warc_files {planted.name}")]
    assert "after run run2 had recorded interrupted run run1's files and finished" in found[0].message
