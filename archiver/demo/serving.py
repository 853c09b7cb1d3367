"""The lifecycle every sample platform shares: an HTTP server on loopback, served from a daemon thread.

Standard library only, and importing no sample, so that every sample server can build on it.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


class ServedFromThread:
    """start()/stop() of `self._httpd` in a daemon thread named `name`, or use as a context manager."""

    name = "sample-platform"
    _httpd: ThreadingHTTPServer
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; calling it again does nothing."""
        if self._thread is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
