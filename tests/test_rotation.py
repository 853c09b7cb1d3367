"""A run whose WARC passes the configured size rotates files; every file is recorded, verify and rebuild
work across them."""

from __future__ import annotations

import random
import sqlite3
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.demo.png import make_png

TOKEN = "rotation-token-5521xq"


def photo(i: int, size: int = 120_000) -> bytes:
    """A valid PNG about as incompressible as a photo: a small image plus a private chunk of noise."""
    base = make_png(8, 8, i)
    noise = random.Random(i).randbytes(size)
    chunk = struct.pack(">I", size) + b"prVt" + noise + struct.pack(">I", zlib.crc32(b"prVt" + noise))
    return base[:-12] + chunk + base[-12:]


def test_rotated_files_are_all_recorded_verified_and_rebuilt(tmp_path, monkeypatch):
    now = datetime.now(UTC)
    state = MastodonState()
    clinic = state.add_account("riverside", "Riverside Clinic")
    for i in range(25):
        state.add_status(
            clinic["id"],
            f"Photo post {i}",
            created_at=now - timedelta(days=3, minutes=i),
            media=[(photo(i), f"photo {i}")],
        )
    monkeypatch.setenv("ROT_TOKEN", TOKEN)
    with SampleMastodonServer(state, TOKEN) as server:
        config = tmp_path / "archiver.toml"
        config.write_text(
            f'[archive]\ndir = "arch"\nwarc_max_bytes = 1048576\n\n[[accounts]]\nname = "c"\n'
            f'platform = "mastodon"\napi_base = "{server.base_url}"\ntoken_env = "ROT_TOKEN"\n'
        )
        result = CliRunner().invoke(app, ["run", "--config", str(config), "-q"])
        assert result.exit_code == 0, result.output
    warcs = sorted((tmp_path / "arch" / "warcs").glob("*.warc.gz"))
    assert len(warcs) >= 3
    conn = sqlite3.connect(tmp_path / "arch" / "archive.db")
    recorded = [r[0] for r in conn.execute("SELECT name FROM warc_files ORDER BY name")]
    media_files = {r[0] for r in conn.execute("SELECT DISTINCT warc_file FROM media_files")}
    conn.close()
    assert recorded == [w.name for w in warcs]
    assert len(media_files) >= 2  # rows point into several files
    for warc in warcs[:-1]:
        assert warc.stat().st_size >= 1048576
    for warc in warcs:
        check = subprocess.run([sys.executable, "-m", "warcio.cli", "check", str(warc)], capture_output=True)
        assert check.returncode == 0
    assert CliRunner().invoke(app, ["verify", "--config", str(config)]).exit_code == 0
    out = tmp_path / "rebuilt.db"
    assert CliRunner().invoke(app, ["rebuild", "--config", str(config), "--out", str(out)]).exit_code == 0
    live, rebuilt = sqlite3.connect(tmp_path / "arch" / "archive.db"), sqlite3.connect(out)
    query = "SELECT url, sha256, warc_file, warc_offset, warc_record_id FROM media_files ORDER BY url"
    assert rebuilt.execute(query).fetchall() == live.execute(query).fetchall()
