"""archiver: a compliance archive of an organisation's social media accounts (SQLite + WARC + Datasette)."""

# Raised with every release; a new schema migration or bundle format needs a new one (tests/test_release.py), so
# that schema_migrations, warcinfo records and custody.json say which release wrote them.
__version__ = "0.6.0"
