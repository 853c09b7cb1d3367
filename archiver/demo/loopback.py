"""The HTTP plumbing the sample platforms share: a threaded server on 127.0.0.1, fault injection, a log.

A platform subclasses LoopbackServer and answers `respond(request)`; everything else (threads, framing,
injected faults, the request log tests read) is here. Standard library only.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .serving import ServedFromThread

__all__ = ["Fault", "LoopbackServer", "Reply", "Request"]


@dataclass
class Fault:
    """Answer requests whose path+query matches `path_regex` with an error, after `after` good ones."""

    path_regex: str
    status: int = 500
    body: bytes | None = None
    headers: dict[str, str] | None = None
    times: int = 1
    after: int = 0
    drop_connection: bool = False
    delay: float = 0.0
    matched: int = field(default=0, init=False)

    def fires(self, target: str) -> bool:
        if not re.search(self.path_regex, target):
            return False
        self.matched += 1
        return self.after < self.matched <= self.after + self.times


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # last value of each parameter
    multi: dict[str, list[str]]  # every value of each parameter
    headers: dict[str, str]  # lower-cased names
    body: bytes
    raw_query: str = ""  # as sent, still percent-encoded (a platform may refuse what is not)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(value).encode("utf-8"), dict(headers or {}))


class LoopbackServer(ServedFromThread):
    """Serves `respond` on 127.0.0.1 from a daemon thread. Use as a context manager or start()/stop()."""

    name = "sample-platform"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.faults: list[Fault] = []
        self.requests_log: list[tuple] = []  # log_entry's: (method, path, query) unless a platform says otherwise
        self.on_request: Callable[[str], None] | None = None  # a test's hook, called with each path+query first
        self.lock = threading.RLock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self._httpd.server_address[1]}"

    def respond(self, request: Request) -> Reply:  # pragma: no cover - every platform overrides it
        return Reply.json(404, {"error": "NotFound"})

    def fault_body(self, fault: Fault) -> bytes:
        """What an injected fault that names no body answers: a platform gives its own error shape."""
        return b'{"error":"InjectedFault"}'

    def log_entry(self, method: str, path: str, query: str, headers: dict[str, str]) -> tuple:
        """What `requests_log` keeps of a request; a platform may mask a key or keep the headers."""
        return (method, path, query)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet: and never a header
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = dict(self.headers.items())
                server.requests_log.append(server.log_entry(method, parts.path, parts.query, headers))
                if server.on_request:
                    server.on_request(self.path)
                for fault in list(server.faults):
                    if fault.fires(self.path):
                        if fault.delay:
                            threading.Event().wait(fault.delay)
                        if fault.drop_connection:
                            self.close_connection = True
                            self.connection.close()
                            return
                        fault_body = fault.body if fault.body is not None else server.fault_body(fault)
                        self._send(Reply(fault.status, fault_body, dict(fault.headers or {})))
                        return
                multi = parse_qs(parts.query, keep_blank_values=True)
                request = Request(
                    method,
                    parts.path,
                    {k: v[-1] for k, v in multi.items()},
                    multi,
                    {k.lower(): v for k, v in headers.items()},
                    body,
                    parts.query,
                )
                try:
                    reply = server.respond(request)
                except Exception as exc:  # a sample bug answers 500 (as a platform's would), never a dropped line
                    reply = Reply.json(500, {"error": "InternalServerError", "message": type(exc).__name__})
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(reply.body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self._serve("POST")

        return Handler
