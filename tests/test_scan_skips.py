"""A version the PHI scan left out stays on record (scan_skips, the unscanned_versions view, `archiver status`)
until a scan reads it: the next scan with other rules takes it up again by itself (scan_retries), and
`archiver scan --all` reads it by its range. Under the same rules it is not tried again every night."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.scan import archive as scan_archive
from archiver.scan.engine import Detector

from .test_run_wedges import (
    ENV,
    ODD,
    PHI,
    TOKEN,
    OddDetector,
    as_class,
    clinic,
    config,
    expected_flags,
    query,
    run,
    scan_flags,
    verifies,
)

ODD_WITH_PHI = f"{ODD} {PHI.format(777)}"  # the odd text holds PHI: once read, it is flagged


@pytest.fixture
def server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(clinic(marker=ODD_WITH_PHI), TOKEN, rate_limit=1_000_000) as s:
        yield s


@pytest.fixture
def detector_as(monkeypatch):  # noqa: ANN201 - a setter
    """Make runs and `archiver scan` use the real detector as class `cls`, under rules labelled `version`."""
    build = scan_archive.build_detector

    def use(cls: type[Detector], version: str | None = None) -> None:
        def built(config):  # noqa: ANN001, ANN202
            detector = as_class(build(config), cls)
            if version is not None:
                detector.version = version
            return detector

        monkeypatch.setattr(scan_archive, "build_detector", built)

    return use


def unscanned(cfg) -> list[tuple]:  # noqa: ANN001
    return query(cfg, "SELECT version_id, item_key, rules_version, error FROM unscanned_versions")


def add_reply(server: SampleMastodonServer, text: str) -> None:
    person = next(a for a in server.state.accounts.values() if a["username"] == "pat")
    post = next(s for s in server.state.statuses.values() if s["account"]["id"] != person["id"])
    server.state.add_status(person["id"], text, in_reply_to_id=post["id"])


def test_a_version_left_out_is_kept_listed_and_retried_once_the_rules_change(server, tmp_path, detector_as):
    cfg = config(tmp_path, server, "workers = 0")
    detector_as(OddDetector)
    assert run(cfg).exit_code == 1
    (odd_id, odd_key), *_ = query(cfg, "SELECT id, item_key FROM item_versions WHERE text LIKE ?", f"%{ODD}%")
    (rules,) = query(cfg, "SELECT rules_version FROM scan_runs")[0]
    (left_out,) = unscanned(cfg)
    assert left_out[:3] == (odd_id, odd_key, rules) and left_out[3].startswith("ValueError at test_run_wedges.py:")
    assert query(cfg, "SELECT scan_id, version_id FROM scan_skips") == [(1, odd_id)]
    status = CliRunner().invoke(app, ["status", "--config", str(cfg)], env=ENV)
    assert "PHI scan: 1 version(s) could not be scanned" in status.output, status.output
    assert verifies(cfg.parent / "arch") == []

    # The same rules would raise on the same text again: not retried, not named again, still listed.
    add_reply(server, "a new reply")
    second = run(cfg)
    assert second.exit_code == 0, second.output
    assert query(cfg, "SELECT count(*) FROM scan_retries")[0][0] == 0
    assert [row[0] for row in unscanned(cfg)] == [odd_id]

    # Other rules, still raising: retried, left out again under the new rules (one row listed), exit 1.
    detector_as(OddDetector, "rules-b")
    third = run(cfg)
    assert third.exit_code == 1, third.output
    assert query(cfg, "SELECT scan_id, version_id FROM scan_retries") == [(3, odd_id)]
    assert [(row[0], row[2]) for row in unscanned(cfg)] == [(odd_id, "rules-b")]

    # Fixed (other rules again): read, flagged, no longer listed; the next run does not touch it again.
    detector_as(Detector, "rules-c")
    fourth = run(cfg)
    assert fourth.exit_code == 0, fourth.output
    assert query(cfg, "SELECT scan_id, version_id FROM scan_retries WHERE scan_id = 4") == [(4, odd_id)]
    assert unscanned(cfg) == []
    assert odd_id in {version_id for version_id, *_ in scan_flags(cfg)}
    assert sorted(set(scan_flags(cfg))) == sorted(set(expected_flags(cfg)))
    fifth = run(cfg)
    assert fifth.exit_code == 0 and query(cfg, "SELECT count(*) FROM scan_retries")[0][0] == 2
    status = CliRunner().invoke(app, ["status", "--config", str(cfg)], env=ENV)
    assert "could not be scanned" not in status.output
    assert verifies(cfg.parent / "arch") == []


def test_flags_of_a_retried_version_come_before_the_new_ones(server, tmp_path, detector_as):
    """Flags are appended in version order within a scan: the retried (older) version's first."""
    cfg = config(tmp_path, server, "workers = 0")
    detector_as(OddDetector)
    assert run(cfg).exit_code == 1
    (odd_id,) = query(cfg, "SELECT id FROM item_versions WHERE text LIKE ?", f"%{ODD}%")[0]
    add_reply(server, "new reply " + PHI.format(999))
    detector_as(Detector, "rules-b")
    assert run(cfg).exit_code == 0
    versions = [row[0] for row in query(cfg, "SELECT version_id FROM flags WHERE scan_id = 2 ORDER BY id")]
    assert versions[0] == odd_id and versions == sorted(versions)


def test_scan_all_reads_a_version_left_out_under_the_same_rules(server, tmp_path, detector_as):
    cfg = config(tmp_path, server, "workers = 0")
    detector_as(OddDetector)
    assert run(cfg).exit_code == 1
    assert len(unscanned(cfg)) == 1
    detector_as(Detector)  # fixed without a change of rules label: only --all reads it
    assert CliRunner().invoke(app, ["scan", "--config", str(cfg)], env=ENV).exit_code == 0
    assert len(unscanned(cfg)) == 1
    result = CliRunner().invoke(app, ["scan", "--all", "--config", str(cfg)], env=ENV)
    assert result.exit_code == 0, result.output
    assert unscanned(cfg) == []
    assert query(cfg, "SELECT count(*) FROM scan_retries")[0][0] == 0


def test_a_skip_removed_behind_the_triggers_is_caught_by_verify(server, tmp_path, detector_as):
    cfg = config(tmp_path, server, "workers = 0")
    detector_as(OddDetector)
    assert run(cfg).exit_code == 1
    arch = cfg.parent / "arch"
    assert verifies(arch) == []
    conn = sqlite3.connect(arch / "archive.db")
    conn.execute("DROP TRIGGER scan_skips_append_only_delete")
    conn.execute("DELETE FROM scan_skips")
    conn.commit()
    conn.close()
    assert unscanned(cfg) == []  # the hole is hidden from the view ...
    problems = verifies(arch)
    assert any("scan_skips" in problem for problem in problems), problems  # ... and verify names it


def queued(cfg, version_id: int) -> list[tuple]:  # noqa: ANN001
    return query(cfg, "SELECT flag_id, rules_version FROM flag_queue WHERE version_id = ?", version_id)


def test_flags_found_by_a_retry_reach_the_review_queue_and_the_alert(server, tmp_path, detector_as):
    """The retry's scan lies after the version's range: its flags are judged by the scan that read the version
    (migration 0021), not by the nightly scan that left it out. Before, they were never current: never queued,
    so never alerted (alerts owe what the queue holds)."""
    cfg = config(tmp_path, server, "workers = 0")
    detector_as(OddDetector)
    assert run(cfg).exit_code == 1
    (odd_id,) = query(cfg, "SELECT id FROM item_versions WHERE text LIKE ?", f"%{ODD}%")[0]
    earlier = {flag_id for flag_id, _ in query(cfg, "SELECT flag_id, 1 FROM flag_queue")}
    assert earlier
    detector_as(Detector, "rules-b")
    assert run(cfg).exit_code == 0
    found = query(cfg, "SELECT id, rules_version FROM flags WHERE version_id = ? AND scan_id = 2", odd_id)
    assert found and {rules for _, rules in found} == {"rules-b"}
    assert sorted(queued(cfg, odd_id)) == sorted(found)
    # the flags of the first scan stay current: its nightly range still decides for its versions
    assert earlier <= {flag_id for flag_id, _ in query(cfg, "SELECT flag_id, 1 FROM flag_queue")}


def test_a_scan_that_left_a_version_out_does_not_take_its_flags_off_the_queue(server, tmp_path, detector_as):
    cfg = config(tmp_path, server, "workers = 0")
    detector_as(OddDetector)
    assert run(cfg).exit_code == 1
    (odd_id,) = query(cfg, "SELECT id FROM item_versions WHERE text LIKE ?", f"%{ODD}%")[0]
    detector_as(Detector, "rules-b")
    assert run(cfg).exit_code == 0
    before = queued(cfg, odd_id)
    assert before
    detector_as(OddDetector, "rules-c")  # a rules upgrade whose detector raises on that text again
    result = CliRunner().invoke(app, ["scan", "--all", "--config", str(cfg)], env=ENV)
    assert result.exit_code == 1, result.output
    assert [row[0] for row in unscanned(cfg)] == [odd_id]
    assert queued(cfg, odd_id) == before  # what the last reading found stays in the queue
    others = query(cfg, "SELECT DISTINCT rules_version FROM flag_queue WHERE version_id != ?", odd_id)
    assert others == [("rules-c",)]  # every version the upgrade read is judged by it
