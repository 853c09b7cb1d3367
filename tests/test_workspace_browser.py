"""The workspace as a person uses it, in headless Chromium (Debian's `chromium`, driven by Playwright):
sign in, search, open an item's history and its raw captured response, with a screenshot of each page.

Chromium is required: `.ci/run` installs it; without it this test fails and says so (never skipped).
Screenshots go to $ARCHIVER_SCREENSHOTS when set (to look at them), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest

from .workspace_server import PASSWORDS, add_users, serving


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: `apt-get install -y chromium` (.ci/run installs it before the tests)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    directory = demo_template.copy_to(tmp_path_factory.mktemp("browser-demo") / "demo")
    add_users(directory)
    return directory


def image_item(demo: Path) -> str:
    """An item with an image captured in the WARC."""
    conn = sqlite3.connect(f"file:{demo / 'archive' / 'archive.db'}?mode=ro", uri=True)
    try:
        [url] = conn.execute("SELECT url FROM media_files WHERE content_type LIKE 'image/%' LIMIT 1").fetchone()
        [key] = conn.execute("SELECT item_key FROM item_versions WHERE media LIKE ? LIMIT 1", (f"%{url}%",)).fetchone()
        return key
    finally:
        conn.close()


def test_sign_in_search_history_and_raw_response_in_chromium(demo, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("ARCHIVER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with serving(demo) as base, sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/-/search")
            assert page.url.endswith("/-/login")  # accounts exist: sign in first
            page.screenshot(path=shots / "1-login.png", full_page=True)
            page.fill("#id_username", "ivan")
            page.fill("#id_password", PASSWORDS["ivan"])
            page.click("input[type=submit]")
            expect(page.locator(".actor")).to_contain_text("ivan")

            page.goto(f"{base}/-/search")
            page.fill("input[name=q]", "vaccination record")
            page.press("input[name=q]", "Enter")
            expect(page.locator(".ws-hit").first).to_be_visible()
            assert page.locator(".ws-hit mark").count() > 0
            expect(page.locator("#facets ul[data-facet=kind]")).to_contain_text("message")
            page.screenshot(path=shots / "2-search.png", full_page=True)

            page.click("#facets ul[data-facet=status] a >> nth=0")  # a facet narrows the search
            assert "status=" in page.url

            page.goto(f"{base}/-/search?status=edited")
            page.click(".ws-hit a.item-link >> nth=0")
            expect(page.locator("#item-status")).to_have_text("edited")
            assert page.locator(".ws-version").count() >= 2
            expect(page.locator(".ws-version ins").first).to_be_visible()
            page.screenshot(path=shots / "3-item-history.png", full_page=True)

            page.click(".ws-version a.raw-link >> nth=0")
            expect(page.locator("#digests .ok").first).to_contain_text("matches")
            assert re.match(r"HTTP/1\.\d 200", page.inner_text("#status-line"))
            assert page.inner_text("#body-json").lstrip().startswith(("{", "["))
            page.screenshot(path=shots / "4-raw-response.png", full_page=True)

            page.goto(f"{base}/-/search?status=deleted")
            page.click(".ws-hit a.item-link >> nth=0")
            expect(page.locator("#item-status")).to_have_text("deleted")
            expect(page.locator("[data-event=deleted]")).to_be_visible()
            page.screenshot(path=shots / "5-deleted-item.png", full_page=True)

            page.goto(f"{base}/access_log/access_log?_sort_desc=seq")
            expect(page.locator("table.rows-and-columns")).to_contain_text("ivan")
            page.screenshot(path=shots / "6-access-log.png", full_page=True)

            # Under the security headers (no framing, nosniff, no-store): a Datasette table page, its CSV shown
            # as text, and an item's image drawn from the WARC through /-/raw/body.
            page.goto(f"{base}/archive/items?_size=3")
            expect(page.locator("table.rows-and-columns tbody tr")).to_have_count(3)
            csv = page.goto(f"{base}/archive/items.csv?_size=3")
            assert csv.ok and csv.headers["x-content-type-options"] == "nosniff"
            assert page.inner_text("body").startswith("item_key,")
            page.goto(f"{base}/-/item?key={quote(image_item(demo))}")
            image = page.locator('img[src^="/-/raw/body"]').first
            expect(image).to_be_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")
        finally:
            browser.close()
    for name in ("1-login", "2-search", "3-item-history", "4-raw-response", "5-deleted-item", "6-access-log"):
        assert (shots / f"{name}.png").stat().st_size > 5_000, name
