"""The consent register's days are the organisation's calendar days, judged in the local time zone (TZ).

In the evening in the Americas the UTC day is already tomorrow, and in the morning in Australia it is still
yesterday: a consent must not lapse a day early, a post put up the evening before its consent was granted is
late, and one put up the morning it was granted is not. The Python check and the views (SQLite's 'localtime')
must agree.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from archiver.consent.state import consent_status, local_day, local_today
from archiver.doctor import check_time_zone

from .test_consent_check import DAY0, PUBLISHED, SHA, ConsentClinic, flag_ids
from .test_consent_register import archive, db, invoke, write  # noqa: F401  (archive: a fixture)

STORY = "Patient spotlight: Rosa shares her story of recovery after hip surgery."


@pytest.fixture
def zone():
    """Set the process's time zone (TZ and tzset: Python's local times and SQLite's 'localtime' follow it);
    the one before is put back after the test."""
    before = os.environ.get("TZ")

    def set_zone(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_zone
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_local_day_and_today_follow_the_zone(zone):
    zone("America/Chicago")
    assert local_day("2026-11-24T02:00:00.123456Z") == "2026-11-23"  # 8 pm the evening before
    assert local_day("2026-11-24T02:00:00") == "2026-11-23"  # no offset: archived times are UTC
    assert local_day("2026-11-24T07:00:00+00:00") == "2026-11-24"
    assert local_day("2026-11-24") == "2026-11-24"  # a day stays that day
    assert local_day("24/11/2026 08:00") == "24/11/2026"  # not ISO: as the views' substr() reads it
    assert local_day(None) is None and local_day("") is None
    assert local_today(datetime(2026, 11, 24, 2, 0, tzinfo=UTC)) == date(2026, 11, 23)
    zone("Australia/Sydney")
    assert local_day("2026-11-23T20:00:00.5Z") == "2026-11-24"  # 7 am the next morning
    assert local_today(datetime(2026, 11, 23, 20, 0, tzinfo=UTC)) == date(2026, 11, 24)


def a_zone_on_another_day(zone) -> tuple[date, date]:
    """Set a zone whose day is not the UTC day right now, and stays its day for the test: of UTC-12 to UTC+14 (26
    hours: some are always on another day), the one farthest from its midnights, at least an hour at any time. The
    zone's day and the UTC day, from one reading of the clock: read apart, midnight could fall between them."""
    now = datetime.now(UTC)

    def from_midnight(hours: int) -> timedelta:
        local = now + timedelta(hours=hours)
        since = local - datetime.combine(local.date(), datetime.min.time(), UTC)
        return min(since, timedelta(days=1) - since)

    hours = max((h for h in range(-12, 15) if (now + timedelta(hours=h)).date() != now.date()), key=from_midnight)
    assert from_midnight(hours) >= timedelta(hours=1), hours
    zone(f"Etc/GMT{-hours:+d}")  # POSIX signs: Etc/GMT+12 is UTC-12
    return local_today(now), now.date()


def test_the_consents_view_and_consent_list_judge_today_in_the_local_zone(archive, tmp_path, zone):  # noqa: F811
    today, utc_today = a_zone_on_another_day(zone)
    # Granted and expiring today, local: live all day, though on the UTC day it is pending or expired.
    assert consent_status(today.isoformat(), today.isoformat(), None, today) == "live"
    assert consent_status(today.isoformat(), today.isoformat(), None, utc_today) != "live"
    body = f"C-1,PT-0001,mastodon,clinic,,story,{today},{today},,{'a' * 64}\n"
    result = invoke("consent", "import", str(write(tmp_path, "a.csv", body)), "--config", str(archive))
    assert result.exit_code == 0, result.output
    conn = db(archive)
    assert conn.execute("SELECT status FROM consents").fetchone()[0] == "live"
    conn.close()
    listed = invoke("consent", "list", "--json", "--config", str(archive))
    assert listed.exit_code == 0, listed.output
    assert [c["status"] for c in json.loads(listed.output)] == ["live"]


@pytest.fixture
def clinic(tmp_path, monkeypatch, zone):
    zone("UTC")  # the clinic's posts go up while the test's zone is not set yet
    c = ConsentClinic(tmp_path, monkeypatch)
    yield c
    c.server.stop()


def post_at(c: ConsentClinic, moment: datetime) -> str:
    c.ids["rosa"] = c.state.add_status(c.clinic_id, STORY, created_at=moment)["id"]
    return c.key("rosa")


def late_flags(c: ConsentClinic) -> list[tuple[str, str]]:
    return [(f["item_key"], f["reason"]) for f in c.check_on(DAY0) if f["rule_id"] == "consent.late"]


def test_a_post_put_up_the_evening_before_its_consent_was_granted_is_late(clinic, zone):
    c = clinic
    granted = PUBLISHED.date()  # the UTC day of the post, the local day after it
    key = post_at(c, datetime.combine(granted, datetime.min.time(), UTC) + timedelta(hours=2))
    c.import_csv("register.csv", f"C-ROSA,PT-2001,clinic,story,{granted},,,{SHA}\n")
    c.run_on(DAY0)
    assert c.cli("consent", "link", "C-ROSA", key).exit_code == 0
    zone("America/Chicago")  # 2 am UTC is 8 pm the evening before in Chicago
    evening = granted - timedelta(days=1)
    assert late_flags(c) == [
        (
            key,
            f"patient content published before its consent was granted: post published {evening}; consent C-ROSA, "
            f"the earliest of its patient linked to it, granted {granted} (1 day later); public without that "
            "patient's consent in between",
        )
    ]
    assert (key, "consent.late") in c.queue()  # and the view keeps it there, judged on the same local day
    review = c.cli("review", str(flag_ids(c, "consent.late")[0]), "--decision", "violation", "--reviewer", "po")
    assert review.exit_code == 0, review.output
    assert (key, "consent.late") not in c.queue()


def test_a_post_put_up_the_morning_its_consent_was_granted_is_not_late(clinic, zone):
    c = clinic
    granted = PUBLISHED.date()  # the local day of the post, the UTC day after it
    key = post_at(c, datetime.combine(granted, datetime.min.time(), UTC) - timedelta(hours=4))
    c.import_csv("register.csv", f"C-ROSA,PT-2001,clinic,story,{granted},,,{SHA}\n")
    c.run_on(DAY0)
    assert c.cli("consent", "link", "C-ROSA", key).exit_code == 0
    zone("Australia/Sydney")  # 8 pm UTC is 7 am the next morning in Sydney
    assert late_flags(c) == []
    zone("UTC")  # the same archive judged in UTC: published the day before the grant
    assert [k for k, _ in late_flags(c)] == [key]
    assert (key, "consent.late") in c.queue()
    zone("Australia/Sydney")
    # flag_status, which computes it as it is read, and the next check in this zone agree with this zone; the queue
    # holds the state the check recorded in UTC until a command records again (or the local day is no longer the
    # one that check recorded on, when it judges consent flags as flag_status does)
    with c.db() as conn:
        assert (
            conn.execute(
                "SELECT current FROM flag_status WHERE item_key = ? AND rule_id = 'consent.late'", (key,)
            ).fetchone()[0]
            == 0
        )
    assert late_flags(c) == []
    assert (key, "consent.late") not in c.queue()


def test_doctor_names_the_zone_and_warns_of_one_the_machine_cannot_read(zone):
    moment = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    zone("America/Chicago")
    assert str(check_time_zone(moment)) == "OK   time zone: consent days are judged in America/Chicago (UTC-0600 now)"
    # The C library takes a zone it has no data for as UTC, silently: the days would be a day off all evening.
    zone("America/Chicag")
    found = check_time_zone(moment)
    assert found.status == "warn" and "TZ='America/Chicag' is not a zone this machine knows" in found.message
    assert "judged in UTC+0000" in found.message
    os.environ.pop("TZ")
    time.tzset()
    assert check_time_zone(moment).message.startswith("consent days are judged in the machine's zone")
