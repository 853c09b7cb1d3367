"""Identifiers written the way people and their devices write them: EHR-style and ISO-like dates of birth,
member numbers under a payer's name, and Unicode that looks like ASCII (en dashes, non-breaking hyphens,
minus signs, zero-width spaces, soft hyphens, full-width letters and '@'). Every span is an offset into the
text as archived, covering the original characters of the match (a dropped zero-width space inside it too)."""

from __future__ import annotations

import pytest

from archiver.scan.engine import AllowList, Detector, normalise_for_matching
from archiver.scan.rules import load_rules

ALLOW = AllowList.build(
    phones=["(555) 010-0100"],
    domains=["riverside.example"],
    handles=["riverside"],
    addresses=["100 River Road"],
    staff=["Helen Arbogast"],
)
WIDE_MRN = "\uff10\uff10\uff14\uff18\uff12\uff19\uff11\uff13"  # 00482913 in full-width digits


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(load_rules(), ALLOW)


def only(detector: Detector, text: str, category: str):
    hits = [h for h in detector.detect(text) if h.category == category]
    assert len(hits) == 1, (text, detector.detect(text))
    hit = hits[0]
    assert text[hit.start : hit.end] == hit.matched  # the workspace highlights exactly this
    return hit


@pytest.mark.parametrize(
    ("text", "category", "matched"),
    [
        # dates of birth in EHR and ISO-like styles
        ("my DOB: 12-Apr-1971", "dob", "12-Apr-1971"),
        ("my DOB: 12/Apr/1971", "dob", "12/Apr/1971"),
        ("my date of birth is 1971/04/12", "dob", "1971/04/12"),
        ("DOB 12APR1971 for the lab order", "dob", "12APR1971"),
        ("DOB 12-APR-71, please check", "dob", "12-APR-71"),
        ("birthdate: Apr-12-1971", "dob", "Apr-12-1971"),
        ("D.O.B. 1971.4.12", "dob", "1971.4.12"),
        ("DOB 04121971", "dob", "04121971"),
        # member numbers under a payer's name
        ("my BCBS ID: XJH123456789", "member-id", "XJH123456789"),
        ("my Aetna ID is W123456789", "member-id", "W123456789"),
        ("my Medicaid # is 123456789", "member-id", "123456789"),
        ("Subscriber #: 123456789", "member-id", "123456789"),
        ("Blue Cross Blue Shield ID# YLX8823019", "member-id", "YLX8823019"),
        ("UHC member ID 987654321, can you check?", "member-id", "987654321"),
        ("Humana ID H12345678 and it says inactive", "member-id", "H12345678"),
        ("Tricare number 1234567890", "member-id", "1234567890"),
        ("Medi-Cal ID 91234567A", "member-id", "91234567A"),
        ("MBI: 1EG4-TE5-MK73", "member-id", "1EG4-TE5-MK73"),
        ("beneficiary ID 4471-0098-22", "member-id", "4471-0098-22"),
        # look-alike Unicode
        ("my SSN is 123\u201345\u20136789", "ssn", "123\u201345\u20136789"),
        ("my SSN is 123\u201145\u20116789", "ssn", "123\u201145\u20116789"),
        ("SSN 123\u221245\u22126789", "ssn", "123\u221245\u22126789"),
        ("my SSN is 123-45-67\u200b89", "ssn", "123-45-67\u200b89"),
        ("SSN 123\u201445\u20146789", "ssn", "123\u201445\u20146789"),  # em dashes between digits
        ("So\u00adcial Security number: 536224389", "ssn", "536224389"),
        ("call me at 312\u2013555\u20130148", "phone", "312\u2013555\u20130148"),
        ("call me at 312-555\u200b-0148", "phone", "312-555\u200b-0148"),
        ("email me at ann.lee\u200b@gmail.com", "email", "ann.lee\u200b@gmail.com"),
        ("email me at ann.lee\uff20gmail.com", "email", "ann.lee\uff20gmail.com"),
        ("\uff2d\uff32\uff2e: 00482913", "mrn", "00482913"),
        (f"MRN {WIDE_MRN}", "mrn", WIDE_MRN),
        ("\ufeffMRN: 00482913", "mrn", "00482913"),
        ("DOB:\u00a012\u00a0Apr\u00a01971", "dob", "12\u00a0Apr\u00a01971"),
        ("my mom has can\u00adcer", "health-relative", "my mom has can\u00adcer"),
        ("my mom has can\u200bcer", "health-relative", "my mom has can\u200bcer"),
    ],
)
def test_a_variant_is_flagged_with_its_category_and_original_span(detector, text, category, matched):
    hit = only(detector, text, category)
    assert hit.matched == matched


def test_a_zero_width_space_inside_an_ssn_is_inside_the_span(detector):
    text = "my SSN is 123-45-67\u200b89 thanks"
    hit = only(detector, text, "ssn")
    assert (hit.start, hit.end) == (10, 22) and text[hit.start : hit.end] == "123-45-67\u200b89"


def test_a_full_width_mrn_label_maps_back_to_the_original_digits(detector):
    text = "\uff2d\uff32\uff2e\uff1a 00482913 please"
    hit = only(detector, text, "mrn")
    assert (hit.start, hit.end, hit.matched) == (5, 13, "00482913")


def test_an_en_dash_phone_keeps_its_dashes_in_the_span(detector):
    text = "\U0001f468\u200d\U0001f469\u200d\U0001f467 call me at 312\u2013555\u20130148 tonight"
    hit = only(detector, text, "phone")
    assert text[hit.start : hit.end] == "312\u2013555\u20130148" and hit.start == text.index("312")


def test_an_em_dash_after_a_number_is_punctuation_not_part_of_it(detector):
    text = "call me at 555-201-7734\u2014thanks!"
    assert only(detector, text, "phone").matched == "555-201-7734"


def test_an_expanded_character_is_covered_whole(detector):
    text = "my mom has a \ufb01bromyalgia flare and the MRN is 00482913"  # "ﬁ" is two letters after NFKC
    hit = only(detector, text, "mrn")
    assert hit.matched == "00482913" and hit.start == text.index("00482913")


@pytest.mark.parametrize(
    "text",
    [
        "Open Mon\u2013Fri 8am\u20135pm; call (555) 010\u20110100 to book.",  # own number, NB hyphen
        "Questions? Call (555)\u00a0010\u20130100.",
        "Join us on 12-Apr-2026 for the health fair!",
        "Flu clinic 12\u2013Apr\u20132026, 9:00\u201312:00 in the lobby.",
        "Our 50th birthday party is on 2026/04/12 \u2014 everyone welcome.",
        "We accept Aetna, BCBS, Cigna, Humana, Medicaid and Medicare.",
        "Bring your BCBS ID card and a photo ID to every visit.",
        "Medicaid ID cards for 2026 arrive in January.",
        "Our Medicare provider number is 123456 and our NPI is on the website.",
        "Call 988 \u2014 the crisis line \u2014 any time, day or night.",
        "Version 2.1\u00a0of the app, released 2026\u201311\u201302.",
        "Walk\u2011ins welcome \u200bMonday\u200b through Friday.",
    ],
)
def test_ordinary_hospital_posts_with_these_forms_are_not_flagged(detector, text):
    assert detector.detect(text, "post", "riverside") == []


def test_plain_ascii_text_is_returned_unchanged_without_a_map():
    text = "my DOB is 04/12/1971"
    assert normalise_for_matching(text) == (text, None)
    assert normalise_for_matching("SSN 123\u201345\u20136789") == ("SSN 123-45-6789", None)  # same offsets


def test_the_map_points_every_normalised_character_at_its_original():
    original = "a\u200bb\u2013\uff43\ufb01e\u0301\u00ad!\u200d\u200d"
    text, offsets = normalise_for_matching(original)
    assert text == "ab-cfi\u00e9!"
    assert offsets is not None
    assert [original[slice(*offsets.char(i))] for i in range(len(text))] == [
        "a", "b", "\u2013", "\uff43", "\ufb01", "\ufb01", "e\u0301", "!",
    ]  # fmt: skip
    assert original[slice(*offsets.span(0, 2))] == "a\u200bb"  # a dropped character inside a span is in it
    assert original[slice(*offsets.span(1, 2))] == "b"  # ... and not when it is just before or after
    assert original[slice(*offsets.span(5, 8))] == "\ufb01e\u0301\u00ad!"
    assert offsets.span(8, 8) == (len(original), len(original))
    text, offsets = normalise_for_matching("x\ufb01\u0301")  # two for two, but not one for one
    assert text == "xf\u00ed" and offsets is not None and offsets.char(2) == (1, 3)


def test_curly_apostrophes_keep_the_old_mapping(detector):
    text = "My son\u2019s asthma medication ran out"
    assert normalise_for_matching(text)[0] == "My son's asthma medication ran out"
    assert {h.category for h in detector.detect(text)} == {"health-relative"}
