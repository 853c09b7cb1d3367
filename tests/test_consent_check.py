"""The consent check end to end: a clinic on a loopback Mastodon server, archived by real runs on chosen days.

Patient stories, a testimonial and a patient photo (alt text) among ordinary posts; consents imported from a
CSV file and linked; one consent expires between two runs and one is revoked; a post is taken down. Exact
flags asserted after each step, and what the review queue shows.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config
from archiver.consent.check import (
    OwnPost,
    append_consent_check,
    build_signal_detector,
    find_consent_flags,
    patient_content,
)
from archiver.consent.state import local_today
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.demo.png import make_png
from archiver.pipeline import run_archive
from archiver.scan.archive import build_detector
from archiver.store import Store

from .test_consent_register import judge_on

TOKEN = "consent-test-token-Zq81"
NOW = datetime.now(UTC).replace(microsecond=0)
DAY0 = NOW.date()
SHA = "c" * 64
# Before every night of the tests, early enough in its day that the posts made 5 minutes apart share it.
PUBLISHED = datetime.combine(DAY0 - timedelta(days=10), time(9, 0), UTC)

STORY = "Meet our patient Ann, who is walking again after her knee replacement."
TESTIMONIAL = "In her own words: the nurses here saved my life. Thank you, Riverside!"
LIVE_STORY = "Patient spotlight: Omar shares his story of recovery after heart surgery."
PHOTO_TEXT = "A good day on the children's ward."
PHOTO_ALT = "A boy in a hospital bed smiling with his nurse"
UNCONSENTED = "Meet our patient Maria, cancer-free after chemotherapy at Riverside."
ORDINARY = [
    "Flu shots are available this week, no appointment needed.",
    "Staff spotlight: meet Dr. Helen Arbogast, who has served our community for 12 years.",
    "Thank you to the volunteers who packed 400 wellness kits for the food bank!",
    "Diabetes support group meets Tuesday evenings at 6pm in Room B. All welcome.",
]


class ConsentClinic:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp_path = tmp_path
        self.state = MastodonState()
        clinic = self.state.add_account("riverside", "Riverside Clinic")
        self.clinic_id = clinic["id"]
        public = self.state.add_account("pat", "Pat Public")
        at = PUBLISHED
        self.ids: dict[str, str] = {}

        def post(name: str, text: str, media: list | None = None, account: str = clinic["id"], **kw) -> None:
            nonlocal at
            at += timedelta(minutes=5)
            self.ids[name] = self.state.add_status(account, text, created_at=at, media=media, **kw)["id"]

        post("story", STORY)
        post("testimonial", TESTIMONIAL)
        post("live", LIVE_STORY)
        post("photo", PHOTO_TEXT, media=[(make_png(8, 8, 1), PHOTO_ALT)])
        post("unconsented", UNCONSENTED)
        for i, text in enumerate(ORDINARY):
            post(
                f"ordinary{i}", text, media=[(make_png(8, 8, 2 + i), "The clinic's front entrance")] if i == 0 else None
            )
        # The public's words are not the organisation's: a grateful reply is never a consent matter.
        post(
            "reply",
            "The doctors here saved my life, thank you!",
            account=public["id"],
            in_reply_to_id=self.ids["story"],
        )
        monkeypatch.setenv("CONSENT_TOKEN", TOKEN)
        self.server = SampleMastodonServer(self.state, TOKEN)
        self.server.start()
        self.config = tmp_path / "archiver.toml"
        self.config.write_text(
            f'[archive]\ndir = "arch"\nrecheck_days = 14\n\n[[accounts]]\nname = "clinic"\nplatform = "mastodon"\n'
            f'api_base = "{self.server.base_url}"\naccount = "@riverside"\ntoken_env = "CONSENT_TOKEN"\n\n'
            '[scan]\nown_handles = ["riverside"]\nstaff = ["Helen Arbogast"]\n'
        )

    def key(self, name: str) -> str:
        return f"mastodon:{self.server.base_url.split('://')[1]}:{self.ids[name]}"

    def run_on(self, day: date) -> None:
        moment = datetime.combine(day, NOW.time(), tzinfo=UTC)
        result = run_archive(load_config(self.config), now=lambda: moment)
        assert result.ok, result.summary()

    def cli(self, *args: str):
        return CliRunner().invoke(app, [*args, "--config", str(self.config)], env={"COLUMNS": "200"})

    def import_csv(self, name: str, body: str) -> None:
        path = self.tmp_path / name
        path.write_text(
            "consent_id,patient_ref,account,scope,granted_on,expires_on,revoked_on,document_sha256\n" + body
        )
        result = self.cli("consent", "import", str(path))
        assert result.exit_code == 0, result.output

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.tmp_path / "arch" / "archive.db")
        conn.row_factory = sqlite3.Row
        return conn

    def check_on(self, day: date) -> list[dict]:
        """`archiver consent check` as it runs on `day`; the flags it appended."""
        store = Store.open(self.tmp_path / "arch" / "archive.db")
        try:
            return append_consent_check(store, build_signal_detector(load_config(self.config)), day).flags
        finally:
            store.close()

    def consent_flags(self) -> list[tuple]:
        conn = self.db()
        rows = conn.execute(
            "SELECT item_key, rule_id, severity, matched, span_start, span_end, reason FROM flags "
            "WHERE category = 'consent' ORDER BY id"
        ).fetchall()
        conn.close()
        return [tuple(r) for r in rows]

    def queue(self, day: date | None = None) -> list[tuple[str, str]]:
        """The consent flags in the review queue as Datasette shows it on `day` (default: today)."""
        conn = self.db()
        if day is not None:
            judge_on(conn, day.isoformat())
        rows = conn.execute(
            "SELECT item_key, rule_id FROM flag_queue WHERE category = 'consent' ORDER BY flag_id"
        ).fetchall()
        conn.close()
        return [tuple(r) for r in rows]


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    c = ConsentClinic(tmp_path, monkeypatch)
    yield c
    c.server.stop()


def missing(c: ConsentClinic, name: str, matched: str, span: tuple | None, reasons: str, extra: str = "") -> tuple:
    text = {"story": STORY, "testimonial": TESTIMONIAL, "live": LIVE_STORY, "unconsented": UNCONSENTED}.get(name)
    if span is None and text is not None:
        start = text.index(matched)
        span = (start, start + len(matched))
    span = span or (None, None)
    return (
        c.key(name),
        "consent.missing",
        "high",
        matched,
        *span,
        f"patient content without consent on file: {reasons}{extra}",
    )


def test_consent_flags_across_runs_expiry_revocation_and_takedown(clinic):
    """Nights on chosen days, the last one today (the Datasette views judge consents on the real today)."""
    c = clinic
    d = DAY0
    granted = d - timedelta(days=40)
    # The register before the posts are archived: three consents, no post to link yet.
    c.import_csv(
        "register.csv",
        f"C-EXP,PT-1001,clinic,story and photo,{granted},{d - timedelta(days=4)},,{SHA}\n"
        f"C-REV,PT-1002,clinic,testimonial,{granted},,,{SHA}\n"
        f"C-LIVE,PT-1003,clinic,story,{granted},{d + timedelta(days=365)},,{SHA}\n",
    )

    # Night 1 (eight days ago): every patient post is flagged, no ordinary one, nor the public's reply.
    night1 = d - timedelta(days=8)
    c.run_on(night1)
    story = missing(
        c,
        "story",
        "Meet our patient",
        None,
        'introduces a patient ("meet our patient"); a named person and a condition or treatment (procedures)',
    )
    testimonial = missing(
        c,
        "testimonial",
        "In her own words",
        None,
        "presented as a testimonial; testimonial phrasing (a patient's thanks or praise)",
    )
    live = missing(
        c,
        "live",
        "Patient spotlight",
        None,
        "tells a patient's story; a named person and a condition or treatment (procedures)",
    )
    photo = missing(
        c,
        "photo",
        "boy in a hospital bed",
        (None, None),
        "shows a person in a care setting (alt text of attachment 1); pictures someone with their doctor, nurse or "
        "care team (alt text of attachment 1)",
    )
    unconsented = missing(
        c,
        "unconsented",
        "Meet our patient",
        None,
        'introduces a patient ("meet our patient"); a named person and a condition or treatment '
        "(conditions, procedures)",
    )
    assert sorted(c.consent_flags()) == sorted([story, testimonial, live, photo, unconsented])
    assert sorted(c.queue(night1)) == sorted((f[0], "consent.missing") for f in c.consent_flags())

    # The privacy office links the forms to the posts: those flags leave the queue, the last one stays.
    for consent, name in (("C-EXP", "story"), ("C-EXP", "photo"), ("C-REV", "testimonial"), ("C-LIVE", "live")):
        assert c.cli("consent", "link", consent, c.key(name)).exit_code == 0
    assert c.check_on(night1) == []
    assert c.queue(night1) == [(c.key("unconsented"), "consent.missing")]

    # The patient behind C-REV revokes it: the records system's next export carries the date, a new row.
    revoked_on = d - timedelta(days=6)
    c.import_csv("revocation.csv", f"C-REV,PT-1002,clinic,testimonial,{granted},,{revoked_on},{SHA}\n")
    # Night 2 (six days ago): revoked that day; C-EXP still covers (its last day is four days ago).
    c.run_on(revoked_on)
    published = PUBLISHED.date()
    revoked = (
        c.key("testimonial"),
        "consent.lapsed",
        "high",
        "C-REV",
        None,
        None,
        f"consent lapsed, content still published: consent C-REV revoked on {revoked_on} (granted {granted}); "
        f"post published {published}, still published on {revoked_on}",
    )
    assert c.consent_flags()[5:] == [revoked]

    # Night 3 (three days ago): C-EXP expired after its last day; both posts it covered are flagged.
    night3 = d - timedelta(days=3)
    c.run_on(night3)
    expired = [
        (
            c.key(name),
            "consent.lapsed",
            "high",
            "C-EXP",
            None,
            None,
            f"consent lapsed, content still published: consent C-EXP expired on {d - timedelta(days=4)} (granted "
            f"{granted}); post published {published}, still published on {night3}",
        )
        for name in ("story", "photo")
    ]
    assert sorted(c.consent_flags()[6:]) == sorted(expired)
    # Night 4: nothing is flagged twice.
    c.run_on(d - timedelta(days=2))
    assert len(c.consent_flags()) == 8

    # The clinic takes the testimonial down; tonight proves the deletion and its flag leaves the queue.
    c.state.delete_status(c.ids["testimonial"])
    c.run_on(d)
    assert len(c.consent_flags()) == 8
    expected_queue = [
        (c.key("unconsented"), "consent.missing"),
        (c.key("story"), "consent.lapsed"),
        (c.key("photo"), "consent.lapsed"),
    ]
    assert sorted(c.queue()) == sorted(expected_queue)
    before = local_today()
    result = c.cli("consent", "check")
    ran_on = {before, local_today()}  # the check's own day: a test running over midnight sees either
    assert result.exit_code == 1  # consent flags are open: a person must act
    assert result.output == (
        "consent check: 8 own posts and replies, 4 look like patient content; 0 new flags (0 without consent, "
        "0 consent lapsed); 3 consent flags open in the review queue\n"
    )
    conn = c.db()
    lapsed = conn.execute("SELECT consent_id, consent_status, lapsed_on, item_key FROM lapsed_consents").fetchall()
    assert sorted(tuple(r) for r in lapsed) == sorted(
        ("C-EXP", "expired", str(d - timedelta(days=3)), c.key(name)) for name in ("story", "photo")
    )
    conn.close()

    # The expired consent is renewed: its posts are covered again and leave the queue; the flags stay.
    c.import_csv("renewal.csv", f"C-EXP,PT-1001,clinic,story and photo,{granted},{d + timedelta(days=400)},,{SHA}\n")
    assert c.queue() == [(c.key("unconsented"), "consent.missing")]
    assert len(c.consent_flags()) == 8

    conn = c.db()
    checks = conn.execute(
        "SELECT run_id IS NULL, checked_on, posts_checked, patient_posts, flags_added FROM consent_checks ORDER BY id"
    ).fetchall()
    assert [tuple(r) for r in checks[:-1]] == [
        (0, str(night1), 9, 5, 5),
        (1, str(night1), 9, 5, 0),
        (0, str(revoked_on), 9, 5, 1),
        (0, str(night3), 9, 5, 2),
        (0, str(d - timedelta(days=2)), 9, 5, 0),
        (0, str(d), 8, 4, 0),
    ]
    assert tuple(checks[-1]) in [(1, str(day), 8, 4, 0) for day in ran_on]
    assert conn.execute("SELECT count(*) FROM lapsed_consents").fetchone()[0] == 0
    # The PHI scan leaves the patient-content signals to the consent check.
    assert conn.execute("SELECT count(*) FROM flags WHERE category LIKE 'patient-%'").fetchone()[0] == 0
    conn.close()
    assert verify_clean(c)


def verify_clean(c: ConsentClinic) -> bool:
    result = c.cli("verify")
    assert result.exit_code == 0, result.output
    return True


def post_of(text: str, media: tuple = ()) -> OwnPost:
    return OwnPost("mastodon:h:1", 1, "mastodon", "clinic", "2026-11-01T00:00:00Z", text, media, "riverside")


@pytest.mark.parametrize(
    "text",
    [
        STORY,
        TESTIMONIAL,
        UNCONSENTED,
        "Say hello to our NICU graduates, home for the holidays!",
        "I can't thank the care team at Riverside enough. - a grateful mom",
        '"The doctors here saved my life." — Omar',
        "What our patients are saying about the new urgent care.",
        "Thanks to the amazing nurses at our ICU, Maria is home after her surgery.",
    ],
)
def test_patient_stories_are_recognised(text):
    assert patient_content(build_signal_detector(None), post_of(text)) is not None


@pytest.mark.parametrize(
    "text",
    [
        *ORDINARY,
        "Meet our new pharmacist, who joins us from St. Mary's.",
        "Our new pediatric wing opens on Monday. Thank you to everyone who made it possible!",
        "Heat advisory today: drink water and know the signs of heat exhaustion.",
        "Free blood pressure checks at the farmers market this Saturday.",
        "COVID-19 and RSV vaccines are both available for adults 60+.",
    ],
)
def test_ordinary_posts_are_not_patient_stories(text):
    assert patient_content(build_signal_detector(None), post_of(text)) is None


def test_an_edit_that_removes_the_story_takes_the_flag_out_of_the_queue(clinic):
    c = clinic
    c.run_on(DAY0)
    assert (c.key("unconsented"), "consent.missing") in c.queue()
    c.state.edit_status(c.ids["unconsented"], "Cancer screening days are back in December.", at=NOW)
    c.run_on(DAY0 + timedelta(days=1))
    assert (c.key("unconsented"), "consent.missing") not in c.queue()
    conn = c.db()
    flagged = conn.execute(
        "SELECT count(*) FROM flags WHERE item_key = ? AND category = 'consent'", (c.key("unconsented"),)
    ).fetchone()[0]
    conn.close()
    assert flagged == 1  # the flag on the old version stays in the archive


def test_a_review_decides_one_consent_flag_only(clinic):
    c = clinic
    c.run_on(DAY0)
    conn = c.db()
    first, second = [r[0] for r in conn.execute("SELECT id FROM flags WHERE category = 'consent' ORDER BY id LIMIT 2")]
    conn.close()
    result = c.cli("review", str(first), "--decision", "violation", "--reviewer", "privacy officer")
    assert result.exit_code == 0, result.output
    open_ids = [r[0] for r in c.db().execute("SELECT flag_id FROM flag_queue WHERE category = 'consent'")]
    assert first not in open_ids and second in open_ids


def test_the_check_reads_without_the_archive_changing_when_nothing_is_new(clinic):
    c = clinic
    c.run_on(DAY0)
    store = Store.open(c.tmp_path / "arch" / "archive.db")
    try:
        outcome, rows, _ = find_consent_flags(store.conn, build_signal_detector(load_config(c.config)), DAY0)
        assert rows == [] and outcome.patient_posts == 5
        again = append_consent_check(store, build_signal_detector(load_config(c.config)), DAY0)
        assert again.flags == [] and again.open_flags == 5
    finally:
        store.close()
    assert build_detector(load_config(c.config)).rules.patterns  # the PHI rules are still there


OURS = """
version: "ours-consent-1"
patterns:
  - id: ours.hero-of-the-month
    category: patient-story
    severity: high
    reason: our "hero of the month" series features a patient
    regex: '(?i)\\bhero\\s+of\\s+the\\s+month\\b'
"""


def use_rule_file(c: ConsentClinic, text: str) -> None:
    (c.tmp_path / "ours.yml").write_text(text, "utf-8")
    c.config.write_text(c.config.read_text().replace("[scan]\n", '[scan]\nrule_files = ["ours.yml"]\n'), "utf-8")


def test_the_organisations_rule_file_adds_signals_that_stay_out_of_the_phi_scan(clinic):
    c = clinic
    hero = c.state.add_status(c.clinic_id, "Our hero of the month is back home!", created_at=PUBLISHED)["id"]
    use_rule_file(c, OURS)
    c.run_on(DAY0)
    conn = c.db()
    found = conn.execute(
        "SELECT rule_id, reason, rules_version FROM flags WHERE item_key = ?",
        (f"{c.key('story').rsplit(':', 1)[0]}:{hero}",),
    ).fetchall()
    conn.close()
    assert [tuple(r)[:2] for r in found] == [
        (
            "consent.missing",
            'patient content without consent on file: our "hero of the month" series features a patient',
        )
    ]
    assert "+ours-consent-1+" in found[0]["rules_version"]
    result = c.cli("consent", "check", "--json")
    assert result.exit_code == 1
    outcome = json.loads(result.output)
    assert (outcome["posts_checked"], outcome["patient_posts"], outcome["new_flags"], outcome["open_flags"]) == (
        10,
        6,
        [],
        6,
    )


def test_a_bad_rule_file_is_a_notice_of_the_run_and_a_one_line_error_of_the_check(clinic):
    c = clinic
    use_rule_file(c, OURS.replace("(?i)", "(?i"))
    result = run_archive(load_config(c.config))
    assert result.ok  # the captures are kept
    failed = [n for n in result.notices if n.startswith("consent check failed")]
    assert len(failed) == 1 and "ours.yml: patterns[0] (ours.hero-of-the-month).regex" in failed[0]
    check = c.cli("consent", "check")
    assert check.exit_code == 2
    assert check.stderr.startswith("archiver: error: ") and str(c.tmp_path / "ours.yml") in check.stderr
    assert len(check.stderr.splitlines()) == 1


def test_a_pending_consent_is_named_and_a_second_live_consent_covers_a_lapse(clinic):
    c = clinic
    d = DAY0
    c.import_csv(
        "register.csv",
        f"C-SOON,PT-2001,clinic,story,{d + timedelta(days=10)},,,{SHA}\n"
        f"C-OLD,PT-2002,clinic,testimonial,{d - timedelta(days=400)},{d - timedelta(days=30)},,{SHA}\n"
        f"C-NEW,PT-2002,clinic,testimonial,{d - timedelta(days=29)},,,{SHA}\n",
    )
    c.run_on(d)  # nothing linked yet: both posts flagged as without consent
    for consent, name in (("C-SOON", "unconsented"), ("C-OLD", "testimonial"), ("C-NEW", "testimonial")):
        assert c.cli("consent", "link", consent, c.key(name)).exit_code == 0
    # C-SOON is not granted yet: the story's flag stays open, and a new version would name the consent.
    c.state.edit_status(c.ids["unconsented"], UNCONSENTED + " Welcome back, Maria!", at=NOW)
    c.run_on(d + timedelta(days=1))
    flags = [f for f in c.consent_flags() if f[0] in (c.key("unconsented"), c.key("testimonial"))]
    assert [f[1] for f in flags] == ["consent.missing", "consent.missing", "consent.missing"]
    assert flags[-1][6].endswith(f"; consent C-SOON is granted only from {d + timedelta(days=10)}")
    assert flags[-1][0] == c.key("unconsented")
    # C-OLD expired long ago, but C-NEW covers the testimonial today: no lapse, and its flag left the queue.
    assert (c.key("testimonial"), "consent.lapsed") not in c.queue()
    assert (c.key("testimonial"), "consent.missing") not in c.queue()
    assert (c.key("unconsented"), "consent.missing") in c.queue()


def test_one_patients_consent_never_covers_another_patients_lapse(clinic):
    """A post with two patients' photos, each with its own consent for its photo, and a story post both
    patients consented to: a revocation is flagged whatever the other patient's consent says, and only the
    same patient's live consent for the same thing (or for the whole post) covers it again."""
    c = clinic
    d = DAY0
    two = c.state.add_status(
        c.clinic_id,
        "Graduation day on the rehab ward.",
        created_at=PUBLISHED + timedelta(hours=2),
        media=[
            (make_png(8, 8, 40), "A woman in a hospital bed with her nurse"),
            (make_png(8, 8, 41), "A man in a wheelchair with his physiotherapist"),
        ],
    )
    c.ids["two"] = two["id"]
    granted = d - timedelta(days=60)
    c.import_csv(
        "register.csv",
        f"C-ANA,PT-3001,clinic,her photo,{granted},,,{SHA}\n"
        f"C-BEN,PT-3002,clinic,his photo,{granted},,,{SHA}\n"
        f"C-ANA-STORY,PT-3001,clinic,story,{granted},,,{SHA}\n"
        f"C-BEN-STORY,PT-3002,clinic,story,{granted},,,{SHA}\n",
    )
    c.run_on(d - timedelta(days=2))
    conn = c.db()
    media = json.loads(
        conn.execute(
            "SELECT media FROM item_versions WHERE item_key = ? ORDER BY id DESC LIMIT 1", (c.key("two"),)
        ).fetchone()[0]
    )
    conn.close()
    ana_photo, ben_photo = (m["url"] for m in media)
    for args in (
        ("C-ANA", c.key("two"), "--media", ana_photo),
        ("C-BEN", c.key("two"), "--media", ben_photo),
        ("C-ANA-STORY", c.key("story")),
        ("C-BEN-STORY", c.key("story")),
    ):
        assert c.cli("consent", "link", *args).exit_code == 0
    assert c.check_on(d - timedelta(days=2)) == []

    # Ben revokes both his consents; Ana's stay live.
    revoked_on = d - timedelta(days=1)
    c.import_csv(
        "revocation.csv",
        f"C-BEN,PT-3002,clinic,his photo,{granted},,{revoked_on},{SHA}\n"
        f"C-BEN-STORY,PT-3002,clinic,story,{granted},,{revoked_on},{SHA}\n",
    )
    flags = c.check_on(d)
    assert sorted((f["item_key"], f["matched"]) for f in flags) == sorted(
        [(c.key("two"), "C-BEN"), (c.key("story"), "C-BEN-STORY")]
    )
    assert all(f["rule_id"] == "consent.lapsed" for f in flags)
    conn = c.db()
    lapsed = conn.execute("SELECT consent_id, patient_ref, item_key, media_url FROM lapsed_consents").fetchall()
    conn.close()
    assert sorted(tuple(r) for r in lapsed) == sorted(
        [("C-BEN", "PT-3002", c.key("two"), ben_photo), ("C-BEN-STORY", "PT-3002", c.key("story"), None)]
    )
    assert sorted(q for q in c.queue() if q[1] == "consent.lapsed") == sorted(
        [(c.key("two"), "consent.lapsed"), (c.key("story"), "consent.lapsed")]
    )

    # Ana's consent for the whole photo post is no cover for Ben's photo; Ben's new consent for the other
    # photo is none either; his new consent for his photo is.
    c.import_csv(
        "more.csv",
        f"C-ANA-ALL,PT-3001,clinic,whole post,{granted},,,{SHA}\nC-BEN-2,PT-3002,clinic,his photo again,{d},,,{SHA}\n",
    )
    assert c.cli("consent", "link", "C-ANA-ALL", c.key("two")).exit_code == 0
    assert c.cli("consent", "link", "C-BEN-2", c.key("two"), "--media", ana_photo).exit_code == 0
    assert (c.key("two"), "consent.lapsed") in c.queue()
    assert c.check_on(d) == []  # the lapse is flagged once
    assert c.cli("consent", "link", "C-BEN-2", c.key("two"), "--media", ben_photo).exit_code == 0
    assert (c.key("two"), "consent.lapsed") not in c.queue()
    # A consent of Ben's for the whole story post covers his lapse there.
    c.import_csv("story.csv", f"C-BEN-STORY-2,PT-3002,clinic,story again,{d},,,{SHA}\n")
    assert c.cli("consent", "link", "C-BEN-STORY-2", c.key("story")).exit_code == 0
    assert [q for q in c.queue() if q[1] == "consent.lapsed"] == []
    conn = c.db()
    assert conn.execute("SELECT count(*) FROM lapsed_consents").fetchone()[0] == 0
    conn.close()
    assert verify_clean(c)


def test_the_organisations_own_replies_are_checked_and_the_publics_are_not(clinic):
    """A clinic that goes on with a patient's story in a reply to its own post published it as surely as a post:
    the reply is flagged without consent, and flagged again when its linked consent is revoked. A member of the
    public's reply with the same words is theirs, never a consent matter."""
    c = clinic
    d = DAY0
    sam = c.state.add_account("sam", "Sam Public")
    at = PUBLISHED + timedelta(hours=2)
    for name, author in (("own-reply", c.clinic_id), ("sam-reply", sam["id"])):
        at += timedelta(minutes=1)
        c.ids[name] = c.state.add_status(author, UNCONSENTED, created_at=at, in_reply_to_id=c.ids["ordinary1"])["id"]
    c.run_on(d - timedelta(days=1))
    conn = c.db()
    kinds = dict(
        conn.execute(
            "SELECT item_key, kind FROM items WHERE item_key IN (?, ?)", (c.key("own-reply"), c.key("sam-reply"))
        ).fetchall()
    )
    conn.close()
    assert kinds == {c.key("own-reply"): "comment", c.key("sam-reply"): "comment"}
    reasons = (
        'introduces a patient ("meet our patient"); a named person and a condition or treatment '
        "(conditions, procedures)"
    )
    own_reply = (
        c.key("own-reply"),
        "consent.missing",
        "high",
        "Meet our patient",
        0,
        len("Meet our patient"),
        f"patient content without consent on file: {reasons}",
    )
    assert [f for f in c.consent_flags() if f[0] in (c.key("own-reply"), c.key("sam-reply"))] == [own_reply]
    assert (c.key("own-reply"), "consent.missing") in c.queue()

    # The consent is found and linked to the reply; then the patient revokes it: the reply's lapse is flagged.
    granted = d - timedelta(days=30)
    c.import_csv("reply.csv", f"C-REPLY,PT-5005,clinic,story,{granted},,,{SHA}\n")
    assert c.cli("consent", "link", "C-REPLY", c.key("own-reply")).exit_code == 0
    assert (c.key("own-reply"), "consent.missing") not in c.queue()
    c.import_csv("revoked.csv", f"C-REPLY,PT-5005,clinic,story,{granted},,{d},{SHA}\n")
    flags = c.check_on(d)
    assert [(f["item_key"], f["rule_id"], f["matched"]) for f in flags] == [
        (c.key("own-reply"), "consent.lapsed", "C-REPLY")
    ]
    assert flags[0]["reason"].startswith(f"consent lapsed, content still published: consent C-REPLY revoked on {d} ")
    assert (c.key("own-reply"), "consent.lapsed") in c.queue()
    assert verify_clean(c)


def test_a_lapse_flag_stays_in_the_queue_for_its_own_lapse_only(clinic):
    """A consent expires (flag 1), is renewed (flag 1 leaves the queue) and expires again (flag 2): only flag 2,
    which names the second expiry, is in the queue; flag 1 stays in the archive, out of the queue."""
    c = clinic
    d = DAY0
    granted = d - timedelta(days=60)
    first_expiry = d - timedelta(days=30)
    c.import_csv("a.csv", f"C-EXP,PT-1001,clinic,story,{granted},{first_expiry},,{SHA}\n")
    c.run_on(d - timedelta(days=40))
    assert c.cli("consent", "link", "C-EXP", c.key("story")).exit_code == 0
    first = c.check_on(first_expiry + timedelta(days=1))
    assert [f["reason"].split(" (")[0] for f in first] == [
        f"consent lapsed, content still published: consent C-EXP expired on {first_expiry}"
    ]
    second_expiry = d - timedelta(days=5)
    c.import_csv("b.csv", f"C-EXP,PT-1001,clinic,story,{granted},{second_expiry},,{SHA}\n")  # renewed
    assert (c.key("story"), "consent.lapsed") not in c.queue(first_expiry + timedelta(days=2))
    second = c.check_on(second_expiry + timedelta(days=1))
    assert [f["reason"].split(" (")[0] for f in second] == [
        f"consent lapsed, content still published: consent C-EXP expired on {second_expiry}"
    ]
    conn = judge_on(c.db(), d.isoformat())
    queued = conn.execute(
        "SELECT flag_id FROM flag_queue WHERE item_key = ? AND rule_id = 'consent.lapsed'", (c.key("story"),)
    ).fetchall()
    conn.close()
    assert [r[0] for r in queued] == [second[0]["id"]]


def flag_ids(c: ConsentClinic, rule: str) -> list[int]:
    conn = c.db()
    ids = [r[0] for r in conn.execute("SELECT id FROM flags WHERE rule_id = ? ORDER BY id", (rule,))]
    conn.close()
    return ids


def test_a_post_published_before_its_consent_was_granted_stays_in_the_queue_until_reviewed(clinic):
    """The story was public for days with no consent: linking a form signed later must not make that vanish."""
    c = clinic
    published = PUBLISHED.date()
    granted = published + timedelta(days=3)
    c.import_csv("late.csv", f"C-LATE,PT-1003,clinic,story,{granted},,,{SHA}\n")
    c.run_on(DAY0 - 1 * timedelta(days=1))
    assert c.cli("consent", "link", "C-LATE", c.key("live")).exit_code == 0
    # A renewal that moves granted_on later does not move the first grant: the gap is still three days.
    c.import_csv("renewal.csv", f"C-LATE,PT-1003,clinic,story,{granted + timedelta(days=2)},,,{SHA}\n")
    flags = c.check_on(DAY0)
    assert [(f["item_key"], f["rule_id"], f["severity"], f["matched"], f["reason"]) for f in flags] == [
        (
            c.key("live"),
            "consent.late",
            "high",
            "C-LATE",
            f"patient content published before its consent was granted: post published {published}; consent "
            f"C-LATE, the earliest of its patient linked to it, granted {granted} (3 days later); public without "
            "that patient's consent in between",
        )
    ]
    assert c.check_on(DAY0) == []  # once per item
    late = (c.key("live"), "consent.late")
    assert late in c.queue() and (c.key("live"), "consent.missing") not in c.queue()

    # Taken down since: the disclosure happened all the same, so the flag stays until a person decides.
    c.state.delete_status(c.ids["live"])
    c.run_on(DAY0)
    assert late in c.queue()
    result = c.cli("review", str(flag_ids(c, "consent.late")[0]), "--decision", "violation", "--reviewer", "po")
    assert result.exit_code == 0, result.output
    assert late not in c.queue()
    assert verify_clean(c)


def test_a_consent_granted_by_the_day_of_publication_is_not_late_and_one_linked_later_clears_it(clinic):
    c = clinic
    published = PUBLISHED.date()
    c.import_csv(
        "register.csv",
        f"C-SAME,PT-1001,clinic,story,{published},,,{SHA}\n"
        f"C-LATE,PT-1003,clinic,story,{published + timedelta(days=1)},,,{SHA}\n",
    )
    c.run_on(DAY0)
    assert c.cli("consent", "link", "C-SAME", c.key("story")).exit_code == 0  # granted the day it went up
    assert c.cli("consent", "link", "C-LATE", c.key("live")).exit_code == 0
    assert [f["item_key"] for f in c.check_on(DAY0) if f["rule_id"] == "consent.late"] == [c.key("live")]
    # The form found in the records system was signed the week before: linked, the flag's condition is gone.
    c.import_csv("found.csv", f"C-EARLY,PT-1003,clinic,story,{published - timedelta(days=7)},,,{SHA}\n")
    assert c.cli("consent", "link", "C-EARLY", c.key("live")).exit_code == 0
    assert (c.key("live"), "consent.late") not in c.queue()
    assert c.check_on(DAY0) == []


def test_an_edit_after_the_consent_was_linked_is_flagged_until_a_consent_is_linked_to_it(clinic):
    """The consent was given for the story as it was; an edit that adds a second patient is not covered."""
    c = clinic
    c.import_csv("register.csv", f"C-LIVE,PT-1003,clinic,story,{DAY0 - timedelta(days=40)},,,{SHA}\n")
    c.run_on(DAY0 - timedelta(days=2))
    assert c.cli("consent", "link", "C-LIVE", c.key("live")).exit_code == 0
    assert c.check_on(DAY0 - timedelta(days=2)) == []
    # The runs below are dated after the link (made now, on the real clock), as they would be.
    c.state.edit_status(c.ids["live"], LIVE_STORY + " And meet our patient Maria, cancer-free after chemotherapy.")
    after = DAY0 + timedelta(days=1)
    c.run_on(after)
    conn = c.db()
    edited_version, linked_at, captured_at = conn.execute(
        "SELECT v.id, l.linked_at, v.captured_at FROM item_versions v JOIN consent_links l ON l.item_key = v.item_key "
        "WHERE v.item_key = ? ORDER BY v.id DESC LIMIT 1",
        (c.key("live"),),
    ).fetchone()
    flags = conn.execute(
        "SELECT version_id, severity, matched, reason FROM flags WHERE rule_id = 'consent.edited'"
    ).fetchall()
    conn.close()
    assert [tuple(f) for f in flags] == [
        (
            edited_version,
            "medium",
            "C-LIVE",
            f"edited after its consent was linked: consent C-LIVE linked {linked_at[:16].replace('T', ' ')} UTC; "
            f"this version, captured {captured_at[:16].replace('T', ' ')} UTC, changes what was published then; "
            "check that consent covers it",
        )
    ]
    edited = (c.key("live"), "consent.edited")
    assert edited in c.queue(after)
    c.run_on(after + timedelta(days=1))
    assert len(flag_ids(c, "consent.edited")) == 1  # once per version

    # Maria's own consent is linked to the edited post: it covers Maria, not whether Omar agreed to the edit.
    c.import_csv("maria.csv", f"C-MARIA,PT-2001,clinic,story,{DAY0 - timedelta(days=5)},,,{SHA}\n")
    assert c.cli("consent", "link", "C-MARIA", c.key("live")).exit_code == 0
    assert edited in c.queue(after)
    # Omar signs a form for the post as it now is: linked to the whole post, the flag leaves the queue.
    c.import_csv("omar.csv", f"C-LIVE-2,PT-1003,clinic,story,{DAY0 - timedelta(days=1)},,,{SHA}\n")
    assert c.cli("consent", "link", "C-LIVE-2", c.key("live")).exit_code == 0
    assert edited not in c.queue(after)
    # Maria's consent postdates the post's first publication: the check cannot tell she joined the story with
    # the edit, so it asks a person (consent.late names her consent, and no edit flag is raised again).
    assert [(f["rule_id"], f["matched"]) for f in c.check_on(after)] == [("consent.late", "C-MARIA")]
    assert verify_clean(c)


def test_a_second_edit_is_a_new_flag_and_the_first_leaves_the_queue(clinic):
    c = clinic
    c.import_csv("register.csv", f"C-LIVE,PT-1003,clinic,story,{DAY0 - timedelta(days=40)},,,{SHA}\n")
    c.run_on(DAY0 - timedelta(days=2))
    assert c.cli("consent", "link", "C-LIVE", c.key("live")).exit_code == 0
    after = DAY0 + timedelta(days=1)
    for n, day in enumerate((after, after + timedelta(days=1))):
        c.state.edit_status(c.ids["live"], f"{LIVE_STORY} (update {n})")
        c.run_on(day)
    first, second = flag_ids(c, "consent.edited")
    open_ids = [r[0] for r in c.db().execute("SELECT flag_id FROM flag_queue WHERE rule_id = 'consent.edited'")]
    assert open_ids == [second]
    # Taken down: nothing published to compare with the consent any more.
    c.state.delete_status(c.ids["live"])
    c.run_on(after + timedelta(days=2))
    assert (c.key("live"), "consent.edited") not in c.queue(after)
    assert first < second


def test_another_patients_earlier_consent_does_not_make_a_late_one_in_time(clinic):
    """Two patients in one story: Ann consented before it went up, Omar three days after. Omar's story was public
    without his consent: the flag names his consent, and only a consent of his granted in time clears it."""
    c = clinic
    published = PUBLISHED.date()
    c.import_csv(
        "register.csv",
        f"C-ANN,PT-1001,clinic,story,{published - timedelta(days=30)},,,{SHA}\n"
        f"C-OMAR,PT-1003,clinic,story,{published + timedelta(days=3)},,,{SHA}\n",
    )
    c.run_on(DAY0)
    for consent in ("C-OMAR", "C-ANN"):
        assert c.cli("consent", "link", consent, c.key("live")).exit_code == 0
    assert [(f["rule_id"], f["matched"]) for f in c.check_on(DAY0)] == [("consent.late", "C-OMAR")]
    assert (c.key("live"), "consent.late") in c.queue()
    c.import_csv("found.csv", f"C-ANN-2,PT-1001,clinic,story,{published - timedelta(days=60)},,,{SHA}\n")
    assert c.cli("consent", "link", "C-ANN-2", c.key("live")).exit_code == 0
    assert (c.key("live"), "consent.late") in c.queue()  # still Ann's, not Omar's
    c.import_csv("omar.csv", f"C-OMAR-0,PT-1003,clinic,story,{published},,,{SHA}\n")
    assert c.cli("consent", "link", "C-OMAR-0", c.key("live")).exit_code == 0
    assert (c.key("live"), "consent.late") not in c.queue()
    assert c.check_on(DAY0) == []
