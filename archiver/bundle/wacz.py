"""The optional WACZ package (`--wacz`): the bundle's WARC records as a WACZ 1.1.1 file that ReplayWeb.page
and pywb open.

Webrecorder's own `wacz` tool writes it (CDXJ index, pages, datapackage.json with the sha256 of every file,
datapackage-digest.json), rather than our code: the format is theirs and so is its validator
(`wacz validate`). The WARC goes in as it is, so its records stay byte for byte the captured ones. Pages are
the captured responses the bundle's versions were read from, titled by the item they hold.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from ..errors import ArchiverError


def write_wacz(extract: Path, catalogue: list[dict[str, Any]], out: Path, *, title: str) -> None:
    try:
        from wacz.main import main as wacz_main
    except ImportError:
        raise ArchiverError(
            "--wacz needs Webrecorder's `wacz` package: pip install 'archiver[wacz]' (or drop --wacz)"
        ) from None
    pages = out.with_name("pages.jsonl.tmp")
    lines = [json.dumps({"format": "json-pages-1.0", "id": "pages", "title": title})]
    seen = set()
    for record in catalogue:
        if record["type"] == "response" and record["target_uri"] and record["target_uri"] not in seen:
            seen.add(record["target_uri"])
            lines.append(json.dumps({"url": record["target_uri"], "title": record["target_uri"]}))
    pages.write_text("\n".join(lines) + "\n", "utf-8")
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            code = wacz_main(["create", "-o", str(out), "-p", str(pages), "--title", title, str(extract)])
    finally:
        pages.unlink()
    if code not in (0, None) or not out.exists():
        raise ArchiverError(f"{out}: the wacz tool failed: {output.getvalue().strip().splitlines()[-1:]}")
