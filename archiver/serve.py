"""Serve the archive in Datasette, read-only: for compliance staff to search, never to change.

The database is registered through ReadOnlyDatabase, whose read connections are `mode=ro` (not immutable:
the nightly run appends while it serves) and which refuses to open a writable connection at all, so no
route, plugin or internal call can write. It binds to loopback; serving beyond it waits for login.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm

from . import datasette_plugin
from .errors import ArchiverError, ConfigError

DATABASE_NAME = "archive"
PLUGIN_NAME = "archiver"
DEFAULT_ERROR_HANDLER = "datasette.handle_exception"
METADATA_FILE = Path(str(resources.files("archiver.schemas").joinpath("datasette-metadata.yml")))
SETTINGS: dict[str, Any] = {
    "suggest_facets": False,  # facet suggestions scan big tables on every page
    "default_page_size": 50,
    "max_returned_rows": 1000,
    "sql_time_limit_ms": 3000,
    "facet_time_limit_ms": 500,
    "allow_download": False,  # the whole PHI database is not one click away
    "allow_csv_stream": False,
    "default_cache_ttl": 0,  # the archive grows every night: never serve stale pages
}


class ReadOnlyDatabase(Database):
    """A Datasette database that can only ever be read."""

    def connect(self, write: bool = False) -> sqlite3.Connection:
        if write:
            raise PermissionError("the archive is served read-only: no writable connection is opened")
        # Datasette pastes the raw path into `file:{path}?mode=ro`: a `#` or `?` in it cuts the URI short and
        # opens (creating it) another file read-write. A percent-encoded URI names exactly this file.
        uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
        if self.ds.nolock:
            uri += "&nolock=1"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._all_file_connections.append(conn)
        return conn


def check_archive(database: ReadOnlyDatabase) -> None:
    """Fail before serving if the file is not an archive (Datasette would serve an empty or broken page)."""
    try:
        conn = database.connect()
        try:
            found = conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('items', 'item_versions')")
            is_archive = found.fetchone()[0] == 2
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{database.path}: cannot be read as an archive database ({exc})") from None
    if not is_archive:
        raise ConfigError(f"{database.path}: not an archive database; run `archiver run` or `archiver demo` first")


def load_metadata(path: Path = METADATA_FILE) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text("utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: Datasette metadata not found; reinstall archiver") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def build_datasette(db_path: Path, *, metadata_path: Path | None = None) -> Datasette:
    """A Datasette app over the archive database opened read-only."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise ConfigError(f"{db_path}: archive database not found; run `archiver run` or `archiver demo` first")
    if not pm.has_plugin(PLUGIN_NAME):
        pm.register(datasette_plugin, name=PLUGIN_NAME)
    if pm.has_plugin(DEFAULT_ERROR_HANDLER):
        # It prints every local variable of a failed request (search terms: PHI) to the log; ours replaces it.
        pm.unregister(name=DEFAULT_ERROR_HANDLER)
    ds = Datasette([], metadata=load_metadata(metadata_path or METADATA_FILE), settings=SETTINGS)
    database = ReadOnlyDatabase(ds, path=str(db_path), is_mutable=True)
    check_archive(database)
    ds.add_database(database, name=DATABASE_NAME)
    return ds


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(
    db_path: Path,
    host: str = "127.0.0.1",
    port: int = 8001,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (as `datasette serve` does: startup hooks, then uvicorn)."""
    import asyncio

    import uvicorn

    if not is_loopback(host):
        raise ConfigError(
            f"--host {host}: the archive holds PHI and login is not built yet, so it is served on loopback only; "
            "reach it through an SSH tunnel"
        )
    ds = build_datasette(db_path)
    asyncio.run(ds.invoke_startup())
    (on_ready or print)(f"http://{host}:{port}/{DATABASE_NAME}")
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on", workers=1)


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Serve an archive database read-only in Datasette.")
    parser.add_argument("db", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    try:
        run_server(args.db, args.host, args.port)
    except ArchiverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
