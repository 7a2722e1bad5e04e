"""The web map's address search in a real headless Chromium, at desktop size and on a phone (390×844): the box asks
`/affects`, lists what it answers and highlights it; on the phone the map fills the screen, opens on the city and
the panel is a sheet that folds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pyogrio
import pytest

from tests.conftest import SAMPLE_MOMENT
from tests.server_fixtures import RunningServer, server  # noqa: F401 - fixture
from tests.test_web_map import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, wait_idle

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
CONTROL_ADDRESS = "ул. Ленина, 5А"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        running = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield running
        running.close()


def open_map(browser, url: str, **context):
    """A page on the web map once it is ready; console errors and failed responses are kept in `page.errors`."""
    page = browser.new_page(locale="ru-RU", **context)
    page.errors = []
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("response", lambda r: r.status >= 400 and page.errors.append(f"{r.status} {r.url}"))
    page.goto(f"{url}/map/")
    page.wait_for_function("document.body.dataset.ready === 'true' || document.body.dataset.error", timeout=60_000)
    assert page.evaluate("document.body.dataset.error || null") is None
    return page


def search(page, address: str) -> dict:
    """Types the address into the box and submits it as a person would; the answer the page received."""
    page.fill("#search-input", address)
    page.press("#search-input", "Enter")
    page.wait_for_function("['found', 'candidates', 'error'].includes(document.body.dataset.search)", timeout=30_000)
    return page.evaluate("window.geoportal.answer")


def affects(server: RunningServer, **params) -> dict:  # noqa: F811
    response = httpx.get(f"{server.url}/affects", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def event_ids(answer: dict) -> set[str]:
    return {e["id"] for d in answer["domains"] for e in d["events"]}


def highlighted(page) -> dict:
    return page.evaluate(
        "() => { const data = window.geoportal.map.getSource('affects').serialize().data;"
        " return {building: data.features.filter(f => f.properties.kind === 'building').length,"
        " events: data.features.filter(f => f.properties.kind === 'event').map(f => f.properties.id)}; }"
    )


def on_screen(page, lon: float, lat: float) -> tuple[float, float]:
    return tuple(
        page.evaluate(
            "([lon, lat]) => { const p = window.geoportal.map.project([lon, lat]); return [p.x, p.y]; }", [lon, lat]
        )
    )


def test_desktop_search_lists_and_highlights_what_affects_the_address(browser, server):  # noqa: F811
    page = open_map(browser, server.url, viewport={"width": 1280, "height": 800})
    page.evaluate("t => window.geoportal.setTime(t)", SAMPLE_MOMENT)
    answer = search(page, CONTROL_ADDRESS)
    expected = affects(server, address=CONTROL_ADDRESS, at=SAMPLE_MOMENT)
    assert page.evaluate("document.body.dataset.search") == "found"
    assert event_ids(answer) == event_ids(expected) and event_ids(expected)

    result = page.locator("#search-result")
    assert result.is_visible()
    assert page.locator("#search-building").inner_text() == expected["building"]["properties"]["address"]
    listed = set(page.locator("#search-result li.affecting").evaluate_all("items => items.map(i => i.dataset.id)"))
    assert listed == event_ids(expected)
    text = result.inner_text()
    for zone in expected["zones"]:
        person = zone["properties"].get("deputy_name") or zone["properties"].get("officer_name")
        if person:
            assert person in text
    assert "кто отвечает за адрес" in text.lower()  # a heading in capitals by the style

    shown = highlighted(page)
    assert shown["building"] == 1 and set(shown["events"]) == event_ids(expected)
    lon, lat = expected["building"]["geometry"]["coordinates"]
    x, y = on_screen(page, lon, lat)
    box = page.locator("#map").bounding_box()
    assert 0 <= x <= box["width"] and 0 <= y <= box["height"]
    wait_idle(page)
    assert page.evaluate("window.geoportal.map.getZoom()") >= 15
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web-map-search.png"))

    missing = search(page, "ул. Ленина, 9999")
    assert missing["matched"] is False
    assert page.locator("#search-miss").is_visible()
    candidates = page.locator("#search-result button.candidate")
    assert candidates.count() == len(missing["candidates"]) > 0
    first = missing["candidates"][0]["address"]
    candidates.first.click()
    page.wait_for_function("document.body.dataset.search === 'found'", timeout=30_000)
    assert page.locator("#search-building").inner_text() == first
    assert page.errors == []
    page.close()


def test_phone_map_fills_the_screen_opens_on_the_city_and_the_sheet_folds(browser, server):  # noqa: F811
    page = open_map(browser, server.url, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    box = page.locator("#map").bounding_box()
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, PHONE["width"], PHONE["height"])

    panel = page.locator("#panel")
    toggle = page.locator("#sheet-toggle")
    folded = panel.bounding_box()
    assert toggle.get_attribute("aria-expanded") == "false"
    assert folded["height"] < 0.2 * PHONE["height"] and folded["y"] + folded["height"] == PHONE["height"]
    assert page.locator("#search-input").is_visible() and not page.locator("#time-slider").is_visible()

    # the city (its election districts as published) is in view above the sheet and fills the screen's width
    west, south, east, north = pyogrio.read_info(server.paths.published_path("election_districts"))["total_bounds"]
    (x0, y0), (x1, y1) = on_screen(page, west, south), on_screen(page, east, north)
    assert x0 >= -2 and x1 <= PHONE["width"] + 2 and y1 >= 0 and y0 <= folded["y"] + 2
    assert x1 - x0 > 0.75 * PHONE["width"], "the city is not a speck"
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web-map-phone.png"))

    toggle.tap()
    assert toggle.get_attribute("aria-expanded") == "true"
    assert page.locator("#time-slider").is_visible() and page.locator("#layers").is_visible()
    opened = panel.bounding_box()
    assert opened["height"] > folded["height"] + 100 and opened["height"] <= 0.5 * PHONE["height"] + 1
    page.screenshot(path=str(SCREENSHOTS / "web-map-phone-sheet.png"))
    toggle.tap()
    assert toggle.get_attribute("aria-expanded") == "false" and not page.locator("#time-slider").is_visible()

    page.evaluate("t => window.geoportal.setTime(t)", SAMPLE_MOMENT)
    answer = search(page, CONTROL_ADDRESS)
    assert answer["matched"] and page.locator("#search-building").is_visible()
    sheet = panel.bounding_box()
    lon, lat = answer["building"]["geometry"]["coordinates"]
    x, y = on_screen(page, lon, lat)
    assert 0 < x < PHONE["width"] and 0 < y < sheet["y"], "the building is on the map above the sheet"
    wait_idle(page)
    page.screenshot(path=str(SCREENSHOTS / "web-map-phone-search.png"))
    assert page.errors == []
    page.close()
