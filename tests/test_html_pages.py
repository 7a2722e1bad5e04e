"""The OGC API's HTML pages in a real headless Chromium on a closed network: every request goes to the server
itself (no CDN), the pages are styled, and the item map is drawn with our MapLibre."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.server_fixtures import published_frame, server  # noqa: F401 - fixture
from tests.test_web_map import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def browser_page(server):  # noqa: F811 - the fixture above
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.requested = []
        page.errors = []
        page.on("request", lambda request: page.requested.append(request.url))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        yield page
        browser.close()


def visit(page, url: str) -> list[str]:
    """Open `url` until the network is quiet; the URLs it requested."""
    page.requested.clear()
    page.goto(url, wait_until="networkidle", timeout=60_000)
    return list(page.requested)


def test_every_page_loads_only_from_the_server_and_the_item_map_is_drawn(server, browser_page):  # noqa: F811
    page, host = browser_page, urlsplit(server.url).netloc
    fid = int(published_frame(server.paths, "road_closures").index[0])
    urls = {
        "landing": f"{server.url}/?f=html",
        "collections": f"{server.url}/collections?f=html",
        "collection": f"{server.url}/collections/road_closures?f=html",
        "items": f"{server.url}/collections/road_closures/items?f=html&limit=20",
        "item": f"{server.url}/collections/road_closures/items/{fid}?f=html",
    }
    for name, url in urls.items():
        requested = visit(page, url)
        foreign = [r for r in requested if urlsplit(r).scheme in ("http", "https") and urlsplit(r).netloc != host]
        assert foreign == [], f"{name} page reached other hosts: {foreign}"
        assert any("/vendor/bootstrap/bootstrap.min.css" in r for r in requested), name
        # Bootstrap applied: the navigation is a flex row, not an unstyled list
        assert page.evaluate("getComputedStyle(document.querySelector('.nav')).display") == "flex", name
        if name == "landing":
            assert page.locator("#web-map-link").get_attribute("href") == f"{server.url}/map/"
            assert page.locator("#styles-link").get_attribute("href") == f"{server.url}/styles/geoportal.json"
        if name in ("collection", "items", "item"):
            page.wait_for_function("document.body.dataset.mapReady === 'true'", timeout=60_000)
            assert int(page.evaluate("document.body.dataset.mapFeatures")) > 0, f"{name} map drew nothing"
            assert any("/tiles/road_closures/" in r for r in page.requested), f"{name} map asked no tiles"
        if name == "item":
            SCREENSHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "item-page.png"))
    assert page.errors == []
