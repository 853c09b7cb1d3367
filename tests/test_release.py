"""The version names what a release writes: the schema it leaves an archive at (schema_migrations records the
version that applied each migration), the bundle format (custody.json names the version that exported it), the
checkpoint statements it signs. Two builds writing different archives or bundles under one version could not be
told apart (review r F5)."""

from __future__ import annotations

import re
from pathlib import Path

from archiver import __version__
from archiver.bundle.write import CUSTODY_TYPE
from archiver.checkpoints import STATEMENT_TYPE
from archiver.store import load_migrations

# Each release: the schema version its migrations end at, the bundle format and the checkpoint statements it
# writes. Before 0.2.0 every build said 0.1.0 (schemas 1 to 21, bundle formats 1 and 2).
RELEASES = {
    "0.2.0": (21, "archiver-custody/2", "archiver-checkpoint/1"),
    "0.3.0": (22, "archiver-custody/2", "archiver-checkpoint/2"),
    "0.4.0": (23, "archiver-custody/2", "archiver-checkpoint/2"),
    "0.5.0": (24, "archiver-custody/2", "archiver-checkpoint/2"),
    "0.6.0": (24, "archiver-custody/3", "archiver-checkpoint/2"),
}


def test_a_new_migration_bundle_format_or_statement_type_comes_with_a_new_version():
    wrote = (len(load_migrations()), CUSTODY_TYPE, STATEMENT_TYPE)
    assert RELEASES.get(__version__) == wrote, (
        f"this build writes schema {wrote[0]}, {wrote[1]} and {wrote[2]}: raise archiver.__version__ and add it to "
        "RELEASES"
    )


def test_each_release_writes_what_no_other_did():
    assert len(set(RELEASES.values())) == len(RELEASES)


def test_the_package_takes_its_version_from_the_code():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text("utf-8")
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.MULTILINE)
    assert 'version = { attr = "archiver.__version__" }' in pyproject
