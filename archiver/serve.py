"""Serve the archive in Datasette, read-only: for compliance staff to search, never to change.

The database is registered through ReadOnlyDatabase, whose read connections are `mode=ro` (not immutable:
the nightly run appends while it serves) and which refuses to open a writable connection at all, so no
route, plugin or internal call can write. Only the plugins named in ALLOWED_PLUGINS may be loaded (none of
them writes). Beyond loopback it serves only with accounts (`archiver users add`); every request is
appended to the access log, a separate database beside the archive, itself served read-only to
investigators.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import re
import socket
import sqlite3
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm

from . import datasette_plugin
from .access_log import AccessLog, access_log_path, count_rows
from .errors import ArchiverError, ConfigError, storage_failure
from .users import UsersFile, users_path

DATABASE_NAME = datasette_plugin.ARCHIVE_DB
ACCESS_LOG_NAME = datasette_plugin.ACCESS_LOG_DB
PLUGIN_NAME = "archiver"
# Every plugin the server may load besides Datasette's own: none of them writes to a database.
ALLOWED_PLUGINS = {datasette_plugin.__name__, "datasette-auth-passwords", "datasette-block-robots"}
TEMPLATES = Path(str(resources.files("archiver.workspace").joinpath("templates")))
FLAGS_QUERY = "flagged_awaiting_review"  # needs the flags table (PHI scan, migration 0005)
DEFAULT_ERROR_HANDLER = "datasette.handle_exception"
# The shape of the queries of Datasette's facets (column, array and date: datasette/facets.py).
FACET_SQL = re.compile(r"\bas\s+value\s*,\s*count\(\*\)\s+as\s+count\b", re.IGNORECASE)
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

    async def execute(self, sql: str, params: Any = None, truncate: bool = False, **kwargs: Any) -> Any:
        # Datasette prints a failed query's SQL and parameters to stderr: search terms and SQL typed by an
        # investigator (PHI) would end up in the server's log. The error still goes back to the page.
        kwargs["log_sql_errors"] = False
        results = await super().execute(sql, params, truncate=truncate, **kwargs)
        # Datasette truncates the query whose rows a page shows (table, row and SQL pages); a facet's values
        # (`?_facet=text`: every distinct text) are rows shown as well.
        if truncate or FACET_SQL.search(sql):
            count_rows(len(results.rows))
        return results


SERVE_NOT_STARTED = "the archive was not changed: serve it once that is fixed"


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
        # A full disk or an I/O error under it (SQLite cannot make the -shm a WAL database's reader needs) is the
        # disk's condition, not a file that is no archive
        failure = storage_failure(exc, database=Path(database.path), then=SERVE_NOT_STARTED)
        if failure is not None:
            raise failure from None
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


def check_plugins() -> None:
    """Refuse to serve with a plugin we have not vetted installed (Datasette loads every installed one)."""
    from datasette.plugins import DEFAULT_PLUGINS, get_plugins

    loaded = {plugin["name"] for plugin in get_plugins()} - set(DEFAULT_PLUGINS)
    unknown = sorted(loaded - ALLOWED_PLUGINS)
    if unknown:
        raise ConfigError(
            f"Datasette plugins not vetted for a read-only PHI archive are installed: {', '.join(unknown)}; "
            "uninstall them (pip uninstall) or serve from a clean environment"
        )


def _has_table(database: ReadOnlyDatabase, name: str) -> bool:
    conn = database.connect()
    try:
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return found is not None
    finally:
        conn.close()


def build_datasette(
    db_path: Path,
    *,
    metadata_path: Path | None = None,
    warc_dir: Path | None = None,
    users_file: Path | None = None,
    access_log: Path | None = None,
    require_login: bool = False,
) -> Datasette:
    """A Datasette app over the archive database opened read-only, with the compliance workspace.

    `access_log`: the log database to append every request to (and to serve to investigators); None logs
    nothing (in-process use). `require_login`: demand sign-in even from loopback.
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        raise ConfigError(f"{db_path}: archive database not found; run `archiver run` or `archiver demo` first")
    if not pm.has_plugin(PLUGIN_NAME):
        pm.register(datasette_plugin, name=PLUGIN_NAME)
    if pm.has_plugin(DEFAULT_ERROR_HANDLER):
        # It prints every local variable of a failed request (search terms: PHI) to the log; ours replaces it.
        pm.unregister(name=DEFAULT_ERROR_HANDLER)
    check_plugins()
    metadata = load_metadata(metadata_path or METADATA_FILE)
    ds = Datasette([], metadata=metadata, settings=SETTINGS, template_dir=str(TEMPLATES))
    database = ReadOnlyDatabase(ds, path=str(db_path), is_mutable=True)
    check_archive(database)
    ds.add_database(database, name=DATABASE_NAME)
    if not _has_table(database, "flags"):
        archive_meta = metadata.get("databases", {}).get(DATABASE_NAME, {})
        archive_meta.get("queries", {}).pop(FLAGS_QUERY, None)
    users = UsersFile(users_file or users_path(db_path))
    users.users()  # a broken users file stops the server here, with its message
    log = None
    if access_log is not None:
        log = AccessLog(access_log)
        ds.add_database(ReadOnlyDatabase(ds, path=str(access_log), is_mutable=True), name=ACCESS_LOG_NAME)
    if require_login:
        metadata["allow"] = {"role": ["viewer", "investigator"]}
    ds.archiver_workspace = datasette_plugin.Workspace(  # type: ignore[attr-defined]
        warc_dir=Path(warc_dir) if warc_dir else db_path.parent / "warcs",
        users=users,
        access_log=log,
        require_login=require_login,
    )
    return ds


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_trusted_proxies(values: Sequence[str]) -> list[str]:
    """The reverse proxies (`--trusted-proxy`) whose X-Forwarded-For names the client: each an IP address or a
    network, normalised; anything else (a host name, `*`) is a ConfigError naming it, as a proxy is trusted by
    the address it connects from and by nothing a client could send."""
    proxies = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f"--trusted-proxy {value!r}: give the IP address or network of the reverse proxy in front of the "
                "server, e.g. 127.0.0.1 or 10.0.0.0/24"
            ) from None
        proxies.append(str(network.network_address) if network.num_addresses == 1 else str(network))
    return proxies


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to `host`:`port` (every address the host resolves to, as uvicorn's own binding does:
    localhost is 127.0.0.1 and ::1), for the server to listen on. Bound before anything is built or announced,
    so that a port in use or out of range is a ConfigError, not uvicorn's log after "serving"."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a TCP port; give one from 1 to 65535")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host {host}: cannot be resolved ({exc.strerror}); give an address such as 127.0.0.1"
        ) from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the IPv4 address is bound by itself
            sock.bind(address)
    except OSError as exc:
        for sock in bound:
            sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{where}: already in use; stop what listens there or choose another --port") from None
        raise ConfigError(f"{where}: cannot listen there ({exc.strerror}); choose another --host or --port") from None
    return bound


def run_server(
    db_path: Path,
    host: str = "127.0.0.1",
    port: int = 8001,
    *,
    warc_dir: Path | None = None,
    trusted_proxies: Sequence[str] = (),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (as `datasette serve` does: startup hooks, then uvicorn).

    `trusted_proxies`: addresses or networks of reverse proxies whose X-Forwarded-For names the client (the
    address logged, throttled and checked for loopback); from any other peer the header is ignored.
    """
    import asyncio

    import uvicorn

    proxies = parse_trusted_proxies(trusted_proxies)
    db_path = Path(db_path)
    users = UsersFile(users_path(db_path)).users() if db_path.is_file() else {}
    if not is_loopback(host) and not users:
        raise ConfigError(
            f"--host {host}: the archive holds PHI, so without accounts it is served on loopback only; "
            "add one with `archiver users add NAME --role viewer` (login is then required), or use an SSH tunnel"
        )
    listeners = bind_listeners(host, port)  # before the access log is made: a port in use touches nothing
    try:
        ds = build_datasette(
            db_path,
            warc_dir=warc_dir,
            access_log=access_log_path(db_path),
            require_login=bool(users) or not is_loopback(host),
        )
        asyncio.run(ds.invoke_startup())
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    (on_ready or print)(f"http://{host}:{port}/{DATABASE_NAME}")
    # Proxy headers only from the proxies named: uvicorn's default trusts X-Forwarded-For from any loopback peer,
    # so any local process could name the address logged and throttled (and pass as off-loopback). From a
    # trusted proxy uvicorn takes the last address the header names that is not itself a trusted proxy: the
    # one that proxy appended, not one the client wrote into the header.
    server = uvicorn.Server(
        uvicorn.Config(
            ds.app(),
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            workers=1,
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )
    )
    # uvicorn.run's path for one worker, on the sockets bound above. Ctrl-C or SIGTERM, raised again once the
    # server has shut down, is a normal stop (as uvicorn.run has it).
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=listeners)


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Serve an archive database read-only in Datasette.")
    parser.add_argument("db", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--trusted-proxy", action="append", default=[])
    args = parser.parse_args()
    try:
        run_server(args.db, args.host, args.port, trusted_proxies=args.trusted_proxy)
    except ArchiverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
