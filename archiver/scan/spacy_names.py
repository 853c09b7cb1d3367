"""Optional: person names from a spaCy pipeline the user installed, named by its folder in the config.

Not the default (the lexicon of given names and honorifics needs nothing): a statistical NER model finds
names the lexicon does not know, at some cost in speed. It is only asked about texts that already hold a
health term. archiver never downloads a model: `[scan] spacy_model` must be a folder on disk (a pipeline
saved with `nlp.to_disk`, or an installed model package's data folder).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

PersonFinder = Callable[[str], list[tuple[int, int]]]


def load_person_finder(model: Path, where: str) -> PersonFinder:
    """A function giving the (start, end) of every PERSON entity in a text."""
    if not model.is_dir():
        raise ConfigError(
            f"{where}: spacy_model {model} is not a folder; give the folder of an installed spaCy pipeline "
            "(archiver never downloads a model)"
        )
    try:
        import spacy
    except ImportError:
        raise ConfigError(
            f"{where}: spacy_model is set but spaCy is not installed; pip install 'archiver[spacy]'"
        ) from None
    try:
        nlp = spacy.load(model)
    except (OSError, ValueError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{where}: spacy_model {model}: not a spaCy pipeline ({message})") from None
    if "ner" not in nlp.pipe_names and "entity_ruler" not in nlp.pipe_names:
        raise ConfigError(f"{where}: spacy_model {model}: the pipeline has no ner or entity_ruler component")

    def find(text: str) -> list[tuple[int, int]]:
        return [(ent.start_char, ent.end_char) for ent in nlp(text).ents if ent.label_ == "PERSON"]

    return find
