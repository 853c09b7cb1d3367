"""The PHI rules one by one: what each finds and what it must leave alone, the allow-lists, and rule files
(loading, errors, an organisation's own file, the rules version)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.errors import ConfigError
from archiver.scan.engine import AllowList, Detector
from archiver.scan.rules import build_rules, load_rules

ALLOW = AllowList.build(
    phones=["(555) 010-0100"],
    domains=["riverside.example"],
    handles=["riverside"],
    addresses=["100 River Road"],
    staff=["Helen Arbogast", "Sam Okafor"],
)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(load_rules(), ALLOW)


def found(detector: Detector, text: str, kind: str | None = None, author: str | None = None) -> set[tuple[str, str]]:
    return {(h.category, h.matched) for h in detector.detect(text, kind, author)}


def categories(detector: Detector, text: str, kind: str | None = None, author: str | None = None) -> set[str]:
    return {h.category for h in detector.detect(text, kind, author)}


@pytest.mark.parametrize(
    ("text", "category", "matched"),
    [
        ("call me at 555-201-7734 please", "phone", "555-201-7734"),
        ("my cell is (312) 555-0148", "phone", "(312) 555-0148"),
        ("text +1 646 555 0123 tonight", "phone", "+1 646 555 0123"),
        ("new number 555-3321", "phone", "555-3321"),
        ("whatsapp +44 7700 900123", "phone", "+44 7700 900123"),
        ("call me 2125550173", "phone", "2125550173"),
        ("mail jane.doe1987@gmail.com", "email", "jane.doe1987@gmail.com"),
        ("SSN 123-45-6789", "ssn", "123-45-6789"),
        ("my social security number is 536224389", "ssn", "536224389"),
        ("My MRN is 00482913.", "mrn", "00482913"),
        ("medical record number: RCH-0049213", "mrn", "RCH-0049213"),
        ("patient ID 88213 not found", "mrn", "88213"),
        ("member ID is XKJ882910445", "member-id", "XKJ882910445"),
        ("policy number: PL-4471-0098", "member-id", "PL-4471-0098"),
        ("account number 44102938", "account-number", "44102938"),
        ("DOB 03/14/1985", "dob", "03/14/1985"),
        ("date of birth is June 2nd, 2019", "dob", "June 2nd, 2019"),
        ("D.O.B. 1988-11-04", "dob", "1988-11-04"),
        ("born on March 3, 1962", "dob", "March 3, 1962"),
        ("send it to 42 Elm Street, Apt 3", "address", "42 Elm Street, Apt 3"),
        ("P.O. Box 5512", "address", "P.O. Box 5512"),
        ("my IP 198.51.100.7 is banned", "ip", "198.51.100.7"),
        ("blocked on 2001:db8::8a2e:370:7334", "ip", "2001:db8::8a2e:370:7334"),
        ("https://portal.example.com/results?patient_id=4482913", "url-id", None),
        ("https://records.example.org/patients/7730021/summary", "url-id", None),
        ("the patient in room 4 is loud", "located-person", "patient in room 4"),
        ("call (555)2017734", "phone", "(555)2017734"),
        ("my number 555 2017", "phone", "555 2017"),
        ("mobile: 07912 345678", "phone", "07912 345678"),
        ("pt id 4471920", "mrn", "4471920"),
        ("ID# W123456789", "member-id", "W123456789"),
        ("insurance id number: ZGP123456789", "member-id", "ZGP123456789"),
        ("DOB 5 January 1980", "dob", "5 January 1980"),
        ("born 1/5/80", "dob", "1/5/80"),
        ("I live at 123 N. Main St.", "address", "123 N. Main St."),
        ("https://portal.example.org/appointments?user_id=99812", "url-id", None),
    ],
)
def test_structured_identifier_is_found_with_its_span(detector, text, category, matched):
    hits = [h for h in detector.detect(text) if h.category == category]
    assert hits, f"{category} not found in {text!r}"
    hit = hits[0]
    assert text[hit.start : hit.end] == hit.matched
    assert hit.matched == (matched or text)
    assert hit.reason and hit.matched not in hit.reason


@pytest.mark.parametrize(
    "text",
    [
        "Walk-ins Monday 9am-noon, 10am-2pm on Saturdays.",
        "Join us on 03/14/2026 for the health fair!",
        "Happy birthday to our founder, who opened the clinic in 1978!",
        "Call 1-800-273-8255 or text 988 any time.",
        "Version 2.1.0 of the app, released 2026-11-02.",
        "Clinic hours 8:00-17:00, lab draws 7:30-11:30.",
        "We vaccinated 12,450 people this season.",
        "Read it at https://riverside.example/news?page=2",
        "Our ER wait time today is about 35 minutes.",
        "Diabetes support group meets Thursday at 6pm in Room B.",
        "October is Breast Cancer Awareness Month.",
        "I got my flu shot today!",
        "Can I bring my elderly dad?",
        "Know the signs of a stroke: face, arms, speech, time.",
        "I work in the ICU at another hospital.",
        "Is Dr. Raman taking new patients?",
    ],
)
def test_benign_text_is_not_flagged(detector, text):
    assert detector.detect(text) == []


def test_the_organisations_own_identifiers_are_allow_listed(detector):
    text = (
        "Call (555) 010-0100 or 010-0100, email info@riverside.example or billing@care.riverside.example, "
        "visit us at 100 River Rd."
    )
    assert detector.detect(text) == []
    assert categories(detector, "or write to jane@gmail.com") == {"email"}
    assert categories(detector, "I live at 12 River Road") == {"address"}
    assert categories(detector, "call 555-0101") == {"phone"}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I'm HIV positive and scared", "health-self"),
        ("Can I get a refill of my lisinopril prescription?", "health-self"),
        ("just got out of surgery, the nurses were angels", "health-self"),
        ("I was admitted to the ICU for three days", "health-self"),
        ("My mother was diagnosed with type 2 diabetes", "health-relative"),
        ("my dad has been in your ICU since Sunday", "health-relative"),
        ("My 5 year old son broke his arm", "health-relative"),
        ("Get well soon Maria! Hope the surgery went well.", "health-named"),
        ("Mrs. Tamura has been in the cardiac unit for a week", "health-named"),
        ("@lena_m hope your chemo goes ok tomorrow", "health-named"),
        ("Praying for Bartholomew, the transplant is tomorrow", "health-named"),
        ("Anyone know if Deshawn got his MRI results back?", "health-named"),
        ("mother-in-law is in the ICU since Sunday", "health-relative"),
        ("Grandpa is in the hospice, can we visit?", "health-relative"),
        ("Im diabetic and need a new meter", "health-self"),
    ],
)
def test_health_terms_tied_to_a_person_are_flagged(detector, text, category):
    assert category in categories(detector, text)


def test_a_cue_before_the_organisation_or_everyone_is_not_a_person():
    detector = Detector(load_rules(), AllowList.build(organisation="Riverside Community Clinic"))
    assert detector.detect("Congratulations to Riverside on the new cancer center!") == []
    assert detector.detect("Congrats to Everyone who ran the cancer walk") == []
    assert detector.detect("The ADA publishes diabetes guidelines") == []


def test_my_before_a_relative_is_the_relative_not_the_author(detector):
    assert categories(detector, "My mother was diagnosed with cancer") == {"health-relative"}


def test_staff_names_and_titles_are_not_patients(detector):
    assert detector.detect("Dr. Priya Raman explains the warning signs of diabetes.") == []
    assert detector.detect("Helen Arbogast leads our diabetes program.") == []
    assert detector.detect("Priya Raman, MD, treats diabetes.") == []
    assert categories(detector, "Priya Raman has diabetes.") == {"health-named"}


def test_an_organisations_own_handle_is_not_a_person(detector):
    assert detector.detect("@riverside the chemo schedule is online?") == []


def test_your_is_the_patient_only_in_the_organisations_replies_and_messages(detector):
    text = "Your biopsy results are ready; please call the care team."
    assert categories(detector, text, "message", "riverside") == {"health-addressee"}
    assert detector.detect(text, "message", "ann") == []  # from the public, "your" is the clinic
    assert detector.detect(text, "post", "riverside") == []  # a public post's "your" is anyone
    assert detector.detect("If you have a fever, call first.", "message", "riverside") == []


def test_spans_index_the_original_text_with_curly_apostrophes(detector):
    text = "My son’s asthma medication ran out, call 555-201-7734"
    assert categories(detector, text) == {"health-relative", "phone"}
    for hit in detector.detect(text):
        assert text[hit.start : hit.end] == hit.matched


def test_rules_version_is_label_plus_digest_and_changes_with_any_edit(tmp_path):
    base = load_rules()
    assert base.version.startswith("2026.11.1+") and len(base.version.split("+")[-1]) == 12
    assert load_rules().version == base.version
    extra = tmp_path / "ours.yml"
    extra.write_text("version: ours-1\nlexicons:\n  conditions: [long covid]\n")
    first = load_rules([extra])
    assert first.version.startswith("2026.11.1+ours-1+") and first.version != base.version
    extra.write_text("version: ours-1\nlexicons:\n  conditions: [long covid, POTS]\n")
    assert load_rules([extra]).version != first.version


def test_an_organisations_rule_file_adds_words_and_rules_and_replaces_by_id(tmp_path):
    extra = tmp_path / "ours.yml"
    extra.write_text(
        """\
version: ours-2
lexicons:
  conditions: [POTS]
  medications: [zepbound]
patterns:
  - id: ours.employee-id
    category: employee-id
    severity: medium
    reason: an employee badge number
    regex: '(?i:\\bbadge\\s*(?:no\\.?|number|\\#)?\\s*)(?P<value>E\\d{6})'
  - id: ip.v4
    category: ip
    severity: high
    reason: an IP address (ours are sensitive)
    regex: '\\b10\\.\\d+\\.\\d+\\.\\d+\\b'
""",
        "utf-8",
    )
    detector = Detector(load_rules([extra]), ALLOW)
    assert found(detector, "my badge number E123456 stopped working") == {("employee-id", "E123456")}
    assert categories(detector, "I have POTS") == {"health-self"}
    assert categories(detector, "I have pots of tea") == set()  # capitals: exact case only
    assert categories(detector, "my zepbound dose") == {"health-self"}
    [hit] = detector.detect("vpn 10.20.30.40")
    assert (hit.rule_id, hit.severity) == ("ip.v4", "high")
    assert detector.detect("my IP 198.51.100.7") == []  # the replaced rule no longer matches it


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "patterns: [{id: x, category: phone, severity: high, reason: r, regex: '(unclosed'}]",
            "patterns[0] (x).regex: not a valid regular expression",
        ),
        (
            "patterns: [{id: x, category: phone, severity: urgent, reason: r, regex: 'a'}]",
            "patterns[0].severity: 'urgent' is not one of",
        ),
        (
            "patterns: [{id: x, category: phone, severity: high, regex: 'a'}]",
            "patterns[0]: 'reason' is a required property",
        ),
        (
            "context: [{id: y, category: c, severity: high, reason: r, anchor: self, terms: [nosuch]}]",
            "context[0] (y): names lexicon 'nosuch'",
        ),
        ("lexicons: {conditions: ['re:(bad']}", "lexicons.conditions[0]: not a valid regular expression"),
        ("colour: blue", "(top level): Additional properties are not allowed ('colour'"),
        ("patterns: [unclosed", "not valid YAML"),
    ],
)
def test_a_bad_rule_file_is_one_line_naming_file_rule_and_field(tmp_path, content, message):
    bad = tmp_path / "bad-rules.yml"
    bad.write_text(content, "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules([bad])
    text = str(caught.value)
    assert text.startswith(f"{bad}: ") and "\n" not in text
    assert message in text, text


def test_a_missing_rule_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nosuch.yml: cannot read rule file"):
        load_rules([tmp_path / "nosuch.yml"])


def test_builtin_rules_need_no_files_on_disk_beyond_the_package():
    rules = build_rules([("a.yml", b"version: a\nlexicons: {conditions: [flu]}\n")])
    assert rules.version.startswith("a+") and rules.lexicons == {"conditions": ["flu"]}
    assert all(Path(f).suffix == ".yml" for f in load_rules().files)


def test_builtin_files_parse_the_same_with_libyaml_and_the_strict_loader():
    import yaml

    for name in ("lexicons.yml", "default.yml"):
        raw = (Path(__file__).resolve().parent.parent / "archiver" / "scan" / "rules" / name).read_text("utf-8")
        strict = yaml.load(raw, Loader=yaml.SafeLoader)  # noqa: S506
        assert yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) == strict  # noqa: S506


def test_a_text_whose_lower_case_changes_length_still_finds_terms_at_the_right_place(detector):
    text = "İstanbul trip cancelled: my ASTHMA flared up"  # "İ".lower() is two characters
    assert len(text.lower()) != len(text)
    [hit] = detector.detect(text)
    assert (hit.category, hit.matched) == ("health-self", "my ASTHMA")


@pytest.mark.parametrize(
    ("organisation", "person"),
    [
        ("Call us at 555-201-7734 any time", "Call me at 555-201-7734 any time"),
        ("Our billing line: (312) 555-0148", "My cell: (312) 555-0148"),
        ("email us at help@clinic-partner.org", "email me at help@clinic-partner.org"),
        ("Questions? Contact us on +44 20 7946 0958", "Questions? Text me on +44 20 7946 0958"),
    ],
)
def test_a_number_or_address_offered_as_the_organisations_is_not_a_persons(detector, organisation, person):
    assert detector.detect(organisation, "post", "riverside") == []
    assert len(detector.detect(person)) == 1
    # the cue offers the organisation's number only in what the organisation wrote (review 2026-11-24k)
    assert len(detector.detect(organisation, "comment", "jane_doe")) == 1
    # an account elsewhere that took the organisation's name is not the organisation (review 2026-11-24m)
    assert len(detector.detect(organisation, "comment", "riverside@other.example")) == 1
    assert detector.detect(organisation, "post", "@riverside") == []


def test_a_handle_given_with_its_instance_stands_for_that_account_alone():
    listed = Detector(load_rules(), AllowList.build(handles=["@Riverside@social.example"]))
    text = "Call us at 555-201-7734 any time"
    for own in ("riverside@social.example", "riverside", "@Riverside"):  # its local form on its own instance
        assert listed.detect(text, "post", own) == []
    assert len(listed.detect(text, "post", "riverside@other.example")) == 1
