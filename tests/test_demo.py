"""`archiver demo`: the README's first command, on the embedded sample clinic."""

from __future__ import annotations

import gzip
import sqlite3

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.run import DEFAULT_TOKEN, TOKEN_ENV


def every_byte_under(directory) -> list[tuple[str, bytes]]:
    out = []
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            out.append((str(path), data))
            if path.name.endswith(".gz"):
                out.append((f"{path} (decompressed)", gzip.decompress(data)))
    return out


@pytest.mark.parametrize("token", ["demo-secret-Zk38fQ1x", None])
def test_demo_builds_an_archive_with_versions_and_deletions_and_no_token(tmp_path, monkeypatch, token):
    if token:
        monkeypatch.setenv(TOKEN_ENV, token)
    else:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    secret = token or DEFAULT_TOKEN
    directory = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(directory), "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "second run" in result.output and secret not in result.output
    for name, data in every_byte_under(directory):
        assert secret.encode() not in data, name
    conn = sqlite3.connect(directory / "archive" / "archive.db")
    by_status = {
        platform: dict(
            conn.execute("SELECT status, count(*) FROM items WHERE platform = ? GROUP BY status", (platform,))
        )
        for platform in ("mastodon", "x", "bluesky")
    }
    by_kind = dict(conn.execute("SELECT kind, count(*) FROM items WHERE platform = 'mastodon' GROUP BY kind"))
    accounts = dict(conn.execute("SELECT account, status FROM account_runs"))
    # The clinic's Facebook Page and Instagram account are in the demo too, changed between the two runs.
    meta = {
        (platform, kind, status): n
        for platform, kind, status, n in conn.execute(
            "SELECT platform, kind, status, count(*) FROM items WHERE platform IN ('facebook', 'instagram') "
            "GROUP BY 1, 2, 3"
        )
    }
    pages = {
        (platform, kind, status): n
        for platform, kind, status, n in conn.execute(
            "SELECT platform, kind, status, count(*) FROM items WHERE platform IN ('linkedin', 'youtube') "
            "GROUP BY 1, 2, 3"
        )
    }
    conn.close()
    # The LinkedIn page and the YouTube channel: a comment edited, one deleted (on proof) and one new on each.
    assert pages[("linkedin", "post", "live")] == 24 and pages[("youtube", "post", "live")] == 8
    assert pages[("linkedin", "comment", "edited")] == 1 and pages[("linkedin", "comment", "deleted")] >= 1
    assert pages[("youtube", "comment", "edited")] == 1 and pages[("youtube", "comment", "deleted")] >= 1
    assert set(accounts.values()) == {"ok"} and {"riverside-x", "riverside-bluesky"} <= set(accounts)
    assert by_status["mastodon"]["deleted"] == 2 and by_status["mastodon"]["edited"] == 3
    assert by_kind["post"] == 205 and by_kind["comment"] >= 1000 and by_kind["message"] >= 150
    assert meta[("facebook", "post", "edited")] == 1 and meta[("facebook", "comment", "deleted")] == 1
    assert meta[("instagram", "post", "edited")] == 1 and meta[("instagram", "comment", "deleted")] == 1
    assert meta[("facebook", "post", "live")] == 29 and meta[("instagram", "post", "live")] == 14
    assert meta[("facebook", "message", "live")] == 16 and meta[("instagram", "message", "live")] == 8
    # X: an edit chain edited again between the runs, a deleted post and reply; Bluesky: a replaced record.
    assert by_status["x"]["deleted"] == 2 and by_status["x"]["edited"] == 1
    assert by_status["bluesky"]["deleted"] == 2 and by_status["bluesky"]["edited"] == 1
    config = str(directory / "archiver.toml")
    assert CliRunner().invoke(app, ["verify", "--config", config]).exit_code == 0
    status = CliRunner().invoke(app, ["status", "--config", config])
    assert status.exit_code == 0 and "deleted 1" in status.output
    # A second demo in the same folder reuses the archive instead of mixing in a new sample.
    again = CliRunner().invoke(app, ["demo", "--dir", str(directory), "--no-serve"])
    assert again.exit_code == 0 and "already holds a demo archive" in again.output
