"""The PHI scan against hostile and awkward input (review 2026-11-24k): texts built to make a regex or a loop
work quadratically, labels written with odd punctuation, invisible characters and emoji digits, an
organisation cue in a member of the public's comment, ordinary hospital posts that looked like PHI, a
lexicon expression that compiles alone but not in its lexicon, one comment repeating a disclosure hundreds
of times, and the engine revision in the version every flag records."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.errors import ConfigError
from archiver.scan import engine
from archiver.scan.archive import append_scan
from archiver.scan.engine import ENGINE_REVISION, MAX_HITS_PER_RULE, AllowList, Detector, normalise_for_matching
from archiver.scan.rules import RuleSet, load_rules
from archiver.store import Store

from .test_store import make_item

ALLOW = AllowList.build(phones=["(555) 010-0100"], domains=["riverside.example"], handles=["riverside"])
EVAL = Path(__file__).resolve().parent / "data" / "phi_eval.jsonl"


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(load_rules(), ALLOW)


def categories(detector: Detector, text: str, kind: str | None = "comment", **how) -> set[str]:
    return {h.category for h in detector.detect(text, kind, **how)}


# -- finding 10: no input makes the scan work quadratically ---------------------------------------------------

# SENTENCE_END as it was: the new one must split ordinary text exactly as it did
OLD_SENTENCE_END = re.compile(r"(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bSt)(?<!\bNo)[.!?]+[\"')\]]*\s+|\n+")


def test_sentences_end_where_they_did_on_ordinary_text():
    texts = [json.loads(line)["text"] for line in EVAL.read_text("utf-8").splitlines() if line.strip()]
    texts += [
        "No!! I have the flu.",  # "No" then two marks: the old pattern ended a sentence at the second
        "Dr.. Smith said so. Mrs.. Jones too!",
        'Wow!!!  Great news?! "Really." (Yes.) [ok.] Fine',
        "Call Dr. Raman. St. Mary's is closed. No. 5 is open...  Next",
        "line one\n\n\nline two\r\nline three...\n",
        "Mr. Ms. Mrs. Dr. St. No. end. ! ? . !? ",
    ]
    for text in texts:
        assert [m.span() for m in engine.SENTENCE_END.finditer(text)] == [
            m.span() for m in OLD_SENTENCE_END.finditer(text)
        ], text


HOSTILE = {
    "marks without a space (SENTENCE_END)": "Thank you" + "!" * 100_000,
    "a sentence start every two characters (\\W* at each)": "! " * 50_000 + "hubby just got out of surgery",
    "apostrophes after a term (community words)": "flu" + "'" * 100_000,
    "a hyphenated chain of terms (community words)": "flu-" * 25_000,
    "percent signs (e-mail local part)": "%" * 100_000,
    "spaces after a room label (located person)": "room" + " " * 100_000 + "4 patient",
    "thousands of anchors and terms (nearest anchor)": "I have flu. " * 8_000,
    "self inside thousands of relatives (my mom)": "my mom " * 14_000 + "has flu",
    "thousands of numbers (nested spans)": "555-867-5309 " * 7_500,
}


def test_long_hostile_texts_are_scanned_without_hanging():
    # A hang guard, not a speed test (speed is measured in BENCHMARKS.md): each text is about 100,000
    # characters; before the fixes the first alone took minutes (its cost grew with the square of its length).
    script = textwrap.dedent(
        """
        import json, sys
        from archiver.scan.archive import build_detector
        detector = build_detector(None)
        for text in json.loads(sys.stdin.read()):
            detector.detect(text, "comment")
            detector.detect(text, "message", "riverside")
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(list(HOSTILE.values())), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr


def test_tying_terms_to_anchors_grows_linearly_with_the_text(detector, monkeypatch):
    # counted, not timed: every anchor a term is compared with asks which sentence it is in
    calls = 0
    sentence = engine._Text.sentence

    def counting(self, pos: int) -> int:
        nonlocal calls
        calls += 1
        return sentence(self, pos)

    monkeypatch.setattr(engine._Text, "sentence", counting)
    counts = []
    for repeat in (500, 2000):
        calls = 0
        detector.detect("I have flu, my mom has flu and Maria has flu. " * repeat, "comment")
        counts.append(calls)
    assert counts[1] <= 5 * counts[0], counts  # 4x the text; every term against every anchor was 16x


# -- finding 06: label punctuation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category", "matched"),
    [
        ("MRN#: 12345678", "mrn", "12345678"),
        ("MRN #: 12345678", "mrn", "12345678"),
        ("MRN no: 12345678", "mrn", "12345678"),
        ("MRN number 12345678", "mrn", "12345678"),
        ("MRN \u2014 12345678", "mrn", "12345678"),
        ("MRN -- 12345678", "mrn", "12345678"),
        ("DOB \u2014 4/12/1971", "dob", "4/12/1971"),
        ("DOB -- 4/12/1971", "dob", "4/12/1971"),
        ("DOB is: 4/12/1971", "dob", "4/12/1971"),
        ("Member ID \u2014 W123456789", "member-id", "W123456789"),
        ("Member ID #: W123456789", "member-id", "W123456789"),
        ("account number \u2014 44102938", "account-number", "44102938"),
        ("SSN is: 123 45 6789", "ssn", "123 45 6789"),
        ("SSN was - 123-45-6789", "ssn", "123-45-6789"),
    ],
)
def test_a_label_with_a_run_of_separators_still_labels(detector, text, category, matched):
    hits = [h for h in detector.detect("my son's " + text, "comment") if h.category == category]
    assert [h.matched for h in hits] == [matched]


@pytest.mark.parametrize(
    "text",
    [
        "MRN not on file, please call",
        "Billing \u2014 2025 rates are on the website.",
        "Our birthday party is on 2026/04/12 \u2014 everyone welcome.",
    ],
)
def test_separators_do_not_make_a_label_of_other_words(detector, text):
    assert detector.detect(text, "post") == []


# -- finding 07: invisible characters, keycap digits, a number over two lines ----------------------------------

KEYCAP = "".join(c + "\ufe0f\u20e3" if c.isdigit() else c for c in "555-867-5309")


@pytest.mark.parametrize(
    ("text", "category", "matched"),
    [
        ("text me 555\ufe0f-867-5309", "phone", "555\ufe0f-867-5309"),  # emoji variation selector
        ("my ssn 123\u3164-45-6789", "ssn", "123\u3164-45-6789"),  # Hangul filler
        ("my ssn 123-45\u115f-6789", "ssn", "123-45\u115f-6789"),
        ("my ssn 123-45\uffa0-6789", "ssn", "123-45\uffa0-6789"),  # half-width Hangul filler
        ("my ssn 12\u034f3-45-6789", "ssn", "12\u034f3-45-6789"),  # combining grapheme joiner
        ("my ssn 123-4\U000e01005-6789", "ssn", "123-4\U000e01005-6789"),  # variation selector supplement
        ("text me " + KEYCAP, "phone", KEYCAP),
        ("call me 555-867-\n5309 tonight", "phone", "555-867-\n5309"),
        ("call me 555-867-  \r\n  5309 tonight", "phone", "555-867-  \r\n  5309"),
        ("my ssn is 123\u2013\n45-6789", "ssn", "123\u2013\n45-6789"),
    ],
)
def test_invisible_characters_keycaps_and_a_wrapped_line_hide_nothing(detector, text, category, matched):
    [hit] = [h for h in detector.detect(text, "comment") if h.category == category]
    assert hit.matched == matched and text[hit.start : hit.end] == matched  # the span indexes the original


def test_the_map_covers_dropped_characters_and_wrapped_lines():
    original = "x 5\ufe0f\u20e31-\n2 \u3164y"
    text, offsets = normalise_for_matching(original)
    assert text == "x 51-2 y" and offsets is not None
    assert [original[slice(*offsets.char(i))] for i in range(len(text))] == [
        "x", " ", "5\ufe0f\u20e3", "1", "-", "2", " ", "y",
    ]  # fmt: skip
    assert original[slice(*offsets.span(2, 6))] == "5\ufe0f\u20e31-\n2"
    # a line break anywhere else is kept (it ends a sentence), and plain one-line ASCII is returned as it is
    assert normalise_for_matching("a-\nb\n1\n2") == ("a-\nb\n1\n2", None)
    assert normalise_for_matching("call 555-867-5309") == ("call 555-867-5309", None)


# -- finding 08: an organisation cue clears only in the organisation's own words --------------------------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Please call us at 555-867-5309 about my mom's biopsy results", "phone"),
        ("My husband and I are worried, reach us at jane.doe1971@gmail.com", "email"),
        ("Text us at 555-867-5309, our daughter is in your NICU", "phone"),
    ],
)
def test_a_members_of_the_publics_own_contact_after_call_us_is_flagged(detector, text, category):
    assert category in categories(detector, text, author="jane_doe_1971", own=False)
    assert category in categories(detector, text)  # nobody known: not the organisation's
    # the organisation's own words (its handle, or its platform id: own=True) offer its number
    assert category not in categories(detector, text, author="riverside")
    assert category not in categories(detector, text, author="someone", own=True)


# -- finding 09: ordinary hospital posts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Celebrate our hospital's 50th birthday on 5/12 with cake in the lobby!",
        "Our clinic's birthday is 5/12: join us!",
        "Congratulations to Karen, our Volunteer of the Month! October is Breast Cancer Awareness Month: "
        "schedule your mammogram today.",
        "Our 2025 Blood Drive is Friday in the lobby. Every donor gets a T-shirt!",
        "Tickets for the 2026 Toy Drive are on sale now.",
        "The 1999 Class Reunion Dr. Lee organised was lovely.",
    ],
)
def test_ordinary_posts_are_not_flagged(detector, text):
    assert detector.detect(text, "post", "riverside", own=True) == []
    assert detector.detect(text, "comment") == []


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("my birthday is 5/12, can I book that day?", "dob"),
        ("Maria's birthday: 5/12", "dob"),
        ("our daughter's birthday is March 3", "dob"),
        ("my 40th birthday is on 5/12", "dob"),
        ("birthday 4/12/1971 on the form is wrong", "dob"),
        ("the hospital's birthday 4/12/1971", "dob"),  # a year: a date of birth whoever's
        ("Get well soon Jonah! Hope the surgery went well.", "health-named"),  # the name just before
        ("Maria had her surgery today.", "health-named"),
        ("I live at 2025 Oak Drive", "address"),
        ("Send it to 2025 Maple Drive please", "address"),
        ("2019 Lakeview Drive, Springfield, IL", "address"),
        ("2019 Lakeview Drive, Apt 4", "address"),
        ("42 Blood Drive", "address"),  # not a year: a street as before
    ],
)
def test_what_is_phi_in_those_shapes_is_still_flagged(detector, text, category):
    assert category in categories(detector, text)


def test_a_name_far_from_the_health_word_in_another_sentence_is_not_tied(detector):
    text = "Thank you Maria for the flowers. " + "Our lobby is open again. " * 2 + "Book your mammogram."
    assert detector.detect(text, "post", own=True) == []
    assert "health-named" in categories(detector, "Thank you Maria for the flowers. Good luck with the surgery!")


# -- finding 11: lexicon expressions are checked as they are compiled ---------------------------------------------


@pytest.mark.parametrize(
    ("entries", "where", "entry"),
    [
        (["re:(?i)long\\s+covid"], "lexicons.conditions[0]", "(?i)long"),  # valid alone, not inside a group
        (["re:(?P<x>pots)", "zepbound", "re:(?P<x>mcas)"], "lexicons.conditions[2]", "(?P<x>mcas)"),
    ],
)
def test_a_lexicon_expression_that_fails_in_its_lexicon_is_a_config_error(tmp_path, entries, where, entry):
    rules = tmp_path / "ours.yml"
    rules.write_text(f"version: ours-1\nlexicons:\n  conditions: [{', '.join(json.dumps(e) for e in entries)}]\n")
    with pytest.raises(ConfigError) as caught:
        load_rules([rules])
    message = str(caught.value)
    assert message.startswith(f"{rules}: {where}: ") and entry in message and "\n" not in message


def test_an_expression_clashing_with_one_from_another_file_names_the_later(tmp_path):
    first, second = tmp_path / "a.yml", tmp_path / "b.yml"
    first.write_text("lexicons:\n  conditions: ['re:(?P<x>pots)']\n")
    second.write_text("lexicons:\n  conditions: [mcas, 're:(?P<x>mcas)']\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(second))}: lexicons\.conditions\[1\]: "):
        load_rules([first, second])


def test_a_detector_from_a_rule_set_that_does_not_compile_raises_a_config_error():
    good = load_rules()
    bad = RuleSet(good.version, good.files, good.patterns, good.context, {**good.lexicons, "conditions": ["re:(?i)x"]})
    with pytest.raises(ConfigError, match="a lexicon does not compile"):
        Detector(bad)


def test_archiver_scan_reports_it_in_one_line(tmp_path):
    (tmp_path / "ours.yml").write_text('lexicons:\n  conditions: ["re:(?i)long\\\\s+covid"]\n')
    config = tmp_path / "archiver.toml"
    config.write_text(
        'accounts = [{name = "off", platform = "mastodon", api_base = "http://127.0.0.1:9", token_env = "T", '
        'enabled = false}]\n\n[archive]\ndir = "arch"\n\n[scan]\nrule_files = ["ours.yml"]\n'
    )
    result = CliRunner().invoke(app, ["scan", "--text", "-", "--config", str(config)], input='{"id": 1, "text": "x"}\n')
    assert result.exit_code == 2 and "lexicons.conditions[0]" in result.output and "Traceback" not in result.output


# -- finding 13: one comment, a handful of flags -------------------------------------------------------------------


def test_a_rules_hits_past_the_cap_are_merged_into_one(detector):
    text = "I have flu. " * 700
    hits = detector.detect(text, "comment", "troll")
    assert len(hits) == MAX_HITS_PER_RULE and {h.rule_id for h in hits} == {"health.self"}
    *single, merged = hits
    assert all(h.end - h.start < 12 for h in single)
    assert merged.start == (MAX_HITS_PER_RULE - 1) * 12 and merged.end == len(text) - 2  # to the last "flu"
    assert merged.matched == text[merged.start : merged.end]
    assert f"{700 - (MAX_HITS_PER_RULE - 1)} hits of this rule in this stretch" in merged.reason
    assert "flu" not in merged.reason


def test_a_few_hits_of_a_rule_stay_one_flag_each(detector):
    text = " ".join(f"555-867-53{n:02d}" for n in range(MAX_HITS_PER_RULE))
    assert len(detector.detect(text, "comment")) == MAX_HITS_PER_RULE


# -- the engine's revision in the rules version ---------------------------------------------------------------------


def test_the_version_flags_record_names_the_engine_revision(monkeypatch):
    rules = load_rules()
    assert Detector(rules).version == f"{rules.version}+engine-{ENGINE_REVISION}"
    monkeypatch.setattr(engine, "ENGINE_REVISION", ENGINE_REVISION + 1)
    assert Detector(rules).version.endswith(f"+engine-{ENGINE_REVISION + 1}")


def test_a_rescan_after_an_engine_upgrade_rejudges_every_version(demo_template, tmp_path, monkeypatch):
    directory = demo_template.copy_to(tmp_path / "demo")
    config = str(directory / "archiver.toml")
    conn = sqlite3.connect(directory / "archive" / "archive.db")
    old = {r[0] for r in conn.execute("SELECT DISTINCT rules_version FROM flags WHERE category != 'consent'")}
    # the demo's config lists the clinic's own numbers and handles: "+allow-..." follows the engine's revision
    assert len(old) == 1 and re.search(rf"\+engine-{ENGINE_REVISION}(\+allow-[0-9a-f]{{12}})?$", next(iter(old)))
    before = conn.execute("SELECT count(*) FROM flags WHERE category != 'consent'").fetchone()[0]

    monkeypatch.setattr(engine, "ENGINE_REVISION", ENGINE_REVISION + 1)
    result = CliRunner().invoke(app, ["scan", "--all", "--config", config])
    assert result.exit_code == 0, result.output
    new = next(iter(old)).replace(f"+engine-{ENGINE_REVISION}", f"+engine-{ENGINE_REVISION + 1}")
    counts = dict(conn.execute("SELECT rules_version, count(*) FROM flags WHERE category != 'consent' GROUP BY 1"))
    assert counts == {next(iter(old)): before, new: before}  # every hit judged again, the old flags kept
    queued = {r[0] for r in conn.execute("SELECT DISTINCT rules_version FROM flag_queue WHERE category != 'consent'")}
    assert queued == {new}


def test_a_number_added_to_the_allow_list_leaves_the_queue_after_scan_all(tmp_path: Path):
    """Allow-lists live in the config, not the rule files: they are part of the version too, so a rescan with
    the clinic's new number listed re-judges its old flags instead of finding the version unchanged."""
    store = Store.open(tmp_path / "a.db")
    store.append_run("run1", "host", "0" * 64, ["a"])
    with store.transaction():
        store.append_item("a", make_item("New line for appointments: 617-555-0148", author_handle="pat"), "run1")
    rules = load_rules()
    try:
        append_scan(store, Detector(rules), mode="new")
        queue = "SELECT count(*) FROM flag_queue WHERE category = 'phone'"
        assert store.conn.execute(queue).fetchone()[0] == 1
        listed = Detector(rules, AllowList.build(phones=["617-555-0148"]))
        assert listed.version != Detector(rules).version and "+allow-" in listed.version
        assert listed.version == Detector(rules, AllowList.build(phones=["(617) 555-0148"])).version  # as listed
        append_scan(store, listed, mode="all")
        assert store.conn.execute(queue).fetchone()[0] == 0
    finally:
        store.close()
