"""archiver: a compliance archive of an organisation's social media accounts (SQLite + WARC + Datasette)."""

__version__ = "0.1.0"
