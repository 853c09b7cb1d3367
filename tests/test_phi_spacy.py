"""The optional spaCy name detector, loaded from a folder: a small pipeline made here with spaCy itself (an
entity ruler that knows two names the lexicon does not), never a download."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config
from archiver.errors import ConfigError
from archiver.scan.archive import build_detector
from archiver.scan.spacy_names import load_person_finder

from .test_config import DISABLED


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": [{"LOWER": "zebulon"}, {"LOWER": "quark"}]},
            {"label": "PERSON", "pattern": [{"LOWER": "thaddeus"}]},
            {"label": "ORG", "pattern": [{"LOWER": "riverside"}]},
        ]
    )
    path = tmp_path_factory.mktemp("models") / "names-model"
    nlp.to_disk(path)
    return path


def config(tmp_path: Path, model_line: str) -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\n{DISABLED}[scan]\nstaff = ["Thaddeus Moon"]\n{model_line}\n')
    return path


def test_names_the_model_finds_tie_health_terms_to_a_person(tmp_path, model):
    with_model = build_detector(load_config(config(tmp_path, f'spacy_model = "{model}"')))
    without = build_detector(load_config(config(tmp_path, "")))
    text = "Zebulon Quark was admitted to the ICU after the crash"
    assert without.detect(text) == []  # neither name is in the lexicon
    [hit] = with_model.detect(text)
    assert (hit.category, hit.rule_id, hit.matched) == ("health-named", "health.named", text[: text.index(" after")])
    assert with_model.detect("Zebulon Quark won the raffle") == []  # a name alone is not PHI
    assert with_model.detect("Riverside is great at diabetes care") == []  # other entity labels are not names
    assert with_model.detect("Thaddeus Moon explains chemo side effects") == []  # staff directory still applies


def test_scan_text_uses_the_model_from_the_config(tmp_path, model):
    stdin = '{"id": 1, "text": "praying for thaddeus, his chemo starts monday"}\n'
    result = CliRunner().invoke(
        app, ["scan", "--text", "-", "--config", str(config(tmp_path, f'spacy_model = "{model}"'))], input=stdin
    )
    assert result.exit_code == 0, result.output
    assert '"flagged": true' in result.output and "health-named" in result.output


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("en_core_web_sm", "is not a folder; give the folder of an installed spaCy pipeline (archiver never downloads"),
        ("empty-folder", "not a spaCy pipeline"),
    ],
)
def test_a_model_that_is_not_a_pipeline_folder_is_exit_2(tmp_path, value, message):
    (tmp_path / "empty-folder").mkdir()
    result = CliRunner().invoke(
        app, ["scan", "--text", "-", "--config", str(config(tmp_path, f'spacy_model = "{value}"'))], input="{}\n"
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output[-1] == "\n" and result.output.count("\n") == 1


def test_a_pipeline_without_an_entity_recogniser_is_refused(tmp_path):
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(ConfigError, match="has no ner or entity_ruler component"):
        load_person_finder(tmp_path / "blank", "archiver.toml: [scan]")


def test_the_model_is_part_of_the_rules_version(tmp_path, model):
    """A flag's rules version must change when what finds names changes: another model, or the same folder
    retrained in place (a skipped version is then retried, and `scan --all` rescans under it)."""
    copy = tmp_path / "model"
    spacy.load(model).to_disk(copy)

    def version(line: str) -> str:
        return build_detector(load_config(config(tmp_path, line))).version

    without, with_model = version(""), version(f'spacy_model = "{copy}"')
    assert without != with_model and with_model.startswith(without + "+spacy-")
    assert version(f'spacy_model = "{copy}"') == with_model  # the same model, the same version
    nlp = spacy.load(copy)
    nlp.get_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "ozymandias"}]}])
    nlp.to_disk(copy)  # retrained in place
    assert version(f'spacy_model = "{copy}"') not in (without, with_model)
