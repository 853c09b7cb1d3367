"""Optional: person names from a spaCy pipeline the user installed, named by its folder in the config.

Not the default (the lexicon of given names and honorifics needs nothing): a statistical NER model finds
names the lexicon does not know, at some cost in speed. It is only asked about texts that already hold a
health term. archiver never downloads a model: `[scan] spacy_model` must be a folder on disk (a pipeline
saved with `nlp.to_disk`, or an installed model package's data folder).
"""

from __future__ import annotations

import hashlib
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


def model_digest(folder: Path) -> str:
    """Twelve hex digits over the installed spaCy's version and every file of the model's folder (names and
    bytes), for the rules version: a model retrained or upgraded in place finds other names."""
    import spacy

    digest = hashlib.sha256(f"spacy {spacy.__version__}\0".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:12]
