"""A small hospital on the sample Graph API server: a Facebook Page and an Instagram account, archived by the CLI.

Shared by the Facebook and Instagram run tests. Every object is hand-written through GraphState in the
documented shapes; the tests change it between runs and assert exact rows.
"""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.graph_server import GraphState, SampleGraphServer
from archiver.demo.png import make_png

TOKEN = "EAAGraphPageToken-7Hq2LmZx91"
NOW = datetime.now(UTC).replace(microsecond=0)
ANN = {"name": "Ann Patient", "id": "6100000000000001"}
BOB = {"name": "Bob Visitor", "id": "6100000000000002"}


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


class Hospital:
    """The Page and the Instagram account of a hospital, served on loopback, with an archive config for them."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, app_secret: str | None = None):
        self.state = GraphState()
        self.page = self.state.add_page("Riverside Hospital", "riversidehospital")
        self.page_author = {"name": self.page["name"], "id": self.page["id"]}
        self.ig = self.state.add_ig_user("riverside.hospital", "Riverside Hospital")
        self.tmp_path = tmp_path
        monkeypatch.setenv("PAGE_TOKEN", TOKEN)
        self.app_secret = app_secret
        if app_secret:
            monkeypatch.setenv("META_APP_SECRET", app_secret)
        self.server: SampleGraphServer | None = None

    def start(self) -> SampleGraphServer:
        self.server = SampleGraphServer(self.state, TOKEN, app_secret=self.app_secret).start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def png(self, seed: int) -> bytes:
        return make_png(8, 6, seed)

    # -- configuration -----------------------------------------------------------------------------------------
    def config(
        self, accounts: str = "both", extra: str = "", archive_extra: str = "", parallel: int = 1, fb_options: str = ""
    ) -> Path:
        """The archive's config; `fb_options` is added to the Facebook account's options (`hidden_status = false`)."""
        assert self.server is not None
        secret = ', app_secret_env = "META_APP_SECRET"' if self.app_secret else ""
        fb_more = f", {fb_options}" if fb_options else ""
        blocks = []
        if accounts in ("both", "facebook"):
            blocks.append(
                f"""
[[accounts]]
name = "hospital-facebook"
platform = "facebook"
api_base = "{self.server.base_url}"
token_env = "PAGE_TOKEN"
options = {{ page_id = "{self.page["id"]}", graph_version = "v26.0"{secret}{fb_more} }}
"""
            )
        if accounts in ("both", "instagram"):
            blocks.append(
                f"""
[[accounts]]
name = "hospital-instagram"
platform = "instagram"
api_base = "{self.server.base_url}"
token_env = "PAGE_TOKEN"
options = {{ ig_user_id = "{self.ig["id"]}", page_id = "{self.page["id"]}"{secret} }}
"""
            )
        path = self.tmp_path / "archiver.toml"
        # One platform at a time by default, so that a rebuild's row ids can be compared with the live ones.
        head = f'[archive]\ndir = "arch"\nrecheck_days = 14\nparallel_platforms = {parallel}\n{archive_extra}\n'
        path.write_text(head + "".join(blocks) + extra)
        return path

    def run(
        self,
        accounts: str = "both",
        *args: str,
        extra: str = "",
        archive_extra: str = "",
        parallel: int = 1,
        fb_options: str = "",
    ) -> tuple[int, str]:
        config = self.config(accounts, extra, archive_extra, parallel, fb_options)
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet", *args])
        return result.exit_code, result.output

    # -- the archive -------------------------------------------------------------------------------------------
    @property
    def archive(self) -> Path:
        return self.tmp_path / "arch"

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.archive / "archive.db")
        conn.row_factory = sqlite3.Row
        return conn

    def rows(self, sql: str, *params: object) -> list[tuple]:
        conn = self.db()
        try:
            return [tuple(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()

    def warc_bytes(self) -> bytes:
        return b"".join(gzip.decompress(p.read_bytes()) for p in sorted((self.archive / "warcs").glob("*.warc.gz")))

    def assert_never_written(self, *secrets: str) -> None:
        """No byte of any file under the archive (WARCs decompressed too) holds any of the secrets."""
        files = [p for p in self.archive.rglob("*") if p.is_file()]
        assert files
        for path in files:
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data += gzip.decompress(data)
            for secret in secrets:
                assert secret.encode() not in data, f"{secret!r} found in {path}"

    def assert_warcs_check(self) -> None:
        warcs = sorted((self.archive / "warcs").glob("*.warc.gz"))
        assert warcs
        for warc in warcs:
            check = subprocess.run(
                [sys.executable, "-m", "warcio.cli", "check", "-v", str(warc)], capture_output=True, text=True
            )
            assert check.returncode == 0, check.stdout + check.stderr

    def assert_rebuild_equal(self, accounts: str = "both") -> None:
        """`archiver rebuild` from the WARCs alone gives the same rows as the live archive."""
        out = self.tmp_path / "rebuilt.db"
        result = CliRunner().invoke(app, ["rebuild", "--config", str(self.config(accounts)), "--out", str(out)])
        assert result.exit_code == 0, result.output
        queries = {
            "item_versions": "SELECT item_key, platform, account, kind, native_id, parent_key, thread_key, "
            "conversation_key, author_id, author_handle, author_name, created_at, edited_at, text, url, visibility, "
            "media, raw_json, content_sha256, run_id, captured_at, warc_file, warc_offset, warc_record_id "
            "FROM item_versions ORDER BY id",
            "events": "SELECT item_key, event, version_id, run_id, observed_at, evidence FROM events ORDER BY id",
            "media_files": "SELECT url, sha256, size, content_type, warc_file, warc_offset FROM media_files "
            "ORDER BY url",
            "cursors": "SELECT account, name, value, run_id FROM cursors ORDER BY id",
        }
        live = sqlite3.connect(self.archive / "archive.db")
        rebuilt = sqlite3.connect(out)
        try:
            for name, sql in queries.items():
                expected = live.execute(sql).fetchall()
                assert expected or name != "item_versions", name
                assert rebuilt.execute(sql).fetchall() == expected, name
        finally:
            live.close()
            rebuilt.close()
        out.unlink()


@pytest.fixture
def hospital(tmp_path, monkeypatch):
    h = Hospital(tmp_path, monkeypatch)
    yield h
    h.stop()


def fb_key(object_id: str) -> str:
    return f"facebook:{object_id}"


def ig_key(object_id: str) -> str:
    return f"instagram:{object_id}"
