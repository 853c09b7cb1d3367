"""Captures made by an older connector, for the request-revision tests of each platform (see
archiver/connectors/base.py RequestRevisions): a run that asks as revision 1 did, optionally with a warcinfo
that names no revision, as the software before revisions wrote it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from archiver import pipeline
from archiver.cli import app
from archiver.connectors.base import REVISIONS_FIELD, RequestRevisions
from archiver.rebuild import index_runs


@contextmanager
def captured_at_revision_1(
    monkeypatch: pytest.MonkeyPatch, connector: type[RequestRevisions], *, named: bool = True
) -> Iterator[None]:
    """Live runs inside ask as revision 1 of `connector`; with `named` False their warcinfo names no revision."""
    with monkeypatch.context() as old:
        old.setattr(connector, "REQUEST_REVISION", 1)
        if not named:
            writer = pipeline.WarcWriter

            def unnamed(*args: object, info: dict[str, str], **kwargs: object) -> pipeline.WarcWriter:
                return writer(*args, info={k: v for k, v in info.items() if k != REVISIONS_FIELD}, **kwargs)

            old.setattr(pipeline, "WarcWriter", unnamed)
        yield


def recorded_revisions(warc_dir: Path) -> list[dict[str, int]]:
    """Each run's recorded connector revisions, in capture order ({} for a warcinfo that names none)."""
    return [run.revisions for run in index_runs(warc_dir)]


def verify_replay(config: Path) -> Result:
    return CliRunner().invoke(app, ["verify", "--config", str(config), "--replay"])
