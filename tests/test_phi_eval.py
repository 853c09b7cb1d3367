"""The labelled evaluation set: precision, recall and per-category recall against the issue's thresholds,
and `archiver scan --text` giving the same answers as the library, from a file and from stdin.

The set (tests/data/phi_eval.jsonl) holds 322 short posts, comments and DMs over seven platforms: 165 with
PHI of every category, 157 tricky negatives (staff names, health tips and events, event dates, the
clinic's own phone number, address and e-mail, crisis lines, workplaces). The thresholds are the issue's:
precision >= 0.88 and recall >= 0.90 overall, and every structured-identifier category found every time;
below them the engine is not good enough to put in front of a privacy office. The figures are printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.scan.engine import AllowList, Detector
from archiver.scan.evaluation import STRUCTURED, evaluate
from archiver.scan.rules import load_rules

DATA = Path(__file__).resolve().parent / "data" / "phi_eval.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text("utf-8").splitlines() if line.strip()]
ORG = """\
accounts = [{name = "off", platform = "mastodon", api_base = "http://127.0.0.1:9", token_env = "T", enabled = false}]

[archive]
dir = "arch"

[scan]
own_phones = ["(555) 010-0100", "555-0100"]
own_domains = ["riverside.example"]
own_handles = ["riverside"]
own_addresses = ["100 River Road", "250 Harbor Street"]
staff_file = "staff.txt"
"""
STAFF = "Helen Arbogast\nSamuel Ndiaye\nPriya Raman\nTomas Velde\nKit Oduya\nSarah Jenkins\nAna Lopez\nJane Miller\n"


@pytest.fixture(scope="module")
def org_config(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("org")
    (directory / "staff.txt").write_text(STAFF, "utf-8")
    path = directory / "archiver.toml"
    path.write_text(ORG, "utf-8")
    return path


def org_detector() -> Detector:
    allow = AllowList.build(
        phones=["(555) 010-0100", "555-0100"],
        domains=["riverside.example"],
        handles=["riverside"],
        addresses=["100 River Road", "250 Harbor Street"],
        staff=STAFF.split("\n"),
    )
    return Detector(load_rules(), allow)


def test_the_set_is_big_and_mixed_enough():
    assert len(ROWS) >= 300
    assert len({r["id"] for r in ROWS}) == len(ROWS)
    assert len({r["platform"] for r in ROWS}) >= 6 and {r["kind"] for r in ROWS} == {"post", "comment", "message"}
    positives = [r for r in ROWS if r["label"]]
    assert 0.3 < len(positives) / len(ROWS) < 0.7
    assert all(r["categories"] for r in positives) and not any(r["categories"] for r in ROWS if not r["label"])
    assert {c for r in positives for c in r["categories"]} >= STRUCTURED


def test_precision_recall_and_category_recall_meet_the_thresholds(capsys):
    scores = evaluate(org_detector(), ROWS)
    with capsys.disabled():
        print("\n" + scores.report())
    assert scores.precision >= 0.88, scores.mistakes
    assert scores.recall >= 0.90, scores.mistakes
    assert scores.structured_recall == 1.0, scores.mistakes
    for category in STRUCTURED:
        assert scores.category_recall(category) == 1.0, (category, scores.mistakes)


def test_without_the_allow_lists_the_clinics_own_number_is_flagged():
    own = [r for r in ROWS if not r["label"] and ("555-0100" in r["text"] or "010-0100" in r["text"])]
    assert own and not any(org_detector().detect(r["text"], r["kind"], r.get("author")) for r in own)
    bare = Detector(load_rules())  # "call us at" clears some by itself; the others need the config
    assert any("phone" in {h.category for h in bare.detect(r["text"])} for r in own)


def scan_text(args: list[str], stdin: str | None = None) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(app, ["scan", *args], input=stdin)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()] if result.exit_code == 0 else []
    return result.exit_code, lines, result.output


def test_scan_text_prints_one_json_line_per_input_as_the_library_finds(org_config):
    code, lines, output = scan_text(["--text", str(DATA), "--config", str(org_config)])
    assert code == 0, output
    assert [line["id"] for line in lines] == [r["id"] for r in ROWS]
    detector = org_detector()
    for row, line in zip(ROWS, lines, strict=True):
        hits = detector.detect(row["text"], row.get("kind"), row.get("author"))
        assert line["flagged"] is bool(hits)
        assert line["flags"] == [
            {
                "category": h.category,
                "rule": h.rule_id,
                "severity": h.severity,
                "span": [h.start, h.end],
                "reason": h.reason,
            }
            for h in hits
        ]
    flagged = {line["id"] for line in lines if line["flagged"]}
    labelled = {r["id"] for r in ROWS if r["label"]}
    assert len(flagged & labelled) / len(flagged) >= 0.88 and len(flagged & labelled) / len(labelled) >= 0.90


def test_scan_text_reads_stdin_and_needs_no_config_or_archive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no archiver.toml here
    stdin = '{"id": "a", "text": "my DOB is 4/12/1971"}\n\n{"id": 7, "text": "See you Monday!"}\n'
    code, lines, output = scan_text(["--text", "-"], stdin)
    assert code == 0, output
    assert lines == [
        {
            "id": "a",
            "flagged": True,
            "flags": [
                {
                    "category": "dob",
                    "rule": "dob.labelled",
                    "severity": "high",
                    "span": [10, 19],
                    "reason": "a date of birth",
                }
            ],
        },
        {"id": 7, "flagged": False, "flags": []},
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ('{"id": 1, "text": "ok"}\nnot json\n', "<stdin>: line 2: not JSON"),
        ('{"text": "no id"}\n', "<stdin>: line 1: needs an `id` and a string `text`"),
        ('{"id": 1, "text": 5}\n', "<stdin>: line 1: needs an `id` and a string `text`"),
    ],
)
def test_scan_text_bad_input_is_exit_2_naming_the_line(stdin, message):
    result = CliRunner().invoke(app, ["scan", "--text", "-"], input=stdin)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_scan_text_missing_file_is_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["scan", "--text", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "none.jsonl: cannot read" in result.output
