"""The web map in a real headless Chromium: loads cleanly, shows features where they are, obeys the slider."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyogrio
import pytest

from layers.settings import REPO_ROOT
from tests.conftest import SAMPLE_MOMENT
from tests.server_fixtures import server  # noqa: F401 - fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "test-artifacts"
# Flags for a closed network: no background connections that would be refused and logged as errors.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--use-gl=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def page(server):  # noqa: F811 - the fixture above
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.errors = []
        page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on(
            "response",
            lambda response: response.status >= 400 and page.errors.append(f"{response.status} {response.url}"),
        )
        page.goto(f"{server.url}/map/")
        page.wait_for_function("document.body.dataset.ready === 'true' || document.body.dataset.error", timeout=60_000)
        yield page
        browser.close()


def wait_idle(page) -> None:
    """Until MapLibre has loaded and drawn every tile of the view (the map's own 'idle' event)."""
    page.evaluate(
        "() => new Promise(done => { const m = window.geoportal.map; "
        "if (m.loaded() && m.areTilesLoaded()) { m.once('idle', done); m.triggerRepaint(); } "
        "else m.once('idle', done); })"
    )


def rendered_ids(page, layer_id: str, id_field: str, lon: float, lat: float) -> set[str]:
    return set(
        page.evaluate(
            """([layer, field, lon, lat]) => {
            const map = window.geoportal.map;
            const ids = map.getStyle().layers.filter(l => l.metadata && l.metadata['geoportal:layer'] === layer)
                .map(l => l.id);
            const p = map.project([lon, lat]);
            return map.queryRenderedFeatures([[p.x - 8, p.y - 8], [p.x + 8, p.y + 8]], {layers: ids})
                .map(f => String(f.properties[field]));
        }""",
            [layer_id, id_field, lon, lat],
        )
    )


def test_page_loads_without_console_errors(page):
    assert page.evaluate("document.body.dataset.error || null") is None
    assert page.errors == []
    domains = page.locator("#layers h2").all_text_contents()
    assert "Ремонты и земляные работы" in domains and "Перекрытия и объезды" in domains
    assert page.locator("#legend .legend-entry").count() > 5


def test_repair_is_shown_at_its_place_while_active_and_hidden_after(page, server):  # noqa: F811
    repairs = pyogrio.read_dataframe(server.paths.published_path("repairs"))
    ends = pd.to_datetime(repairs.end_time, utc=True)
    starts = pd.to_datetime(repairs.start_time, utc=True)
    moment = pd.Timestamp(SAMPLE_MOMENT)
    permit = repairs[(starts <= moment) & (ends >= moment)].iloc[0]
    point = permit.geometry
    page.evaluate("([lon, lat]) => window.geoportal.map.jumpTo({center: [lon, lat], zoom: 16})", [point.x, point.y])
    page.evaluate("t => window.geoportal.setTime(t)", moment.isoformat())
    wait_idle(page)
    assert permit.permit_id in rendered_ids(page, "repairs", "permit_id", point.x, point.y)

    after = ends[repairs.permit_id == permit.permit_id].iloc[0] + pd.Timedelta(days=1)
    page.evaluate("t => window.geoportal.setTime(t)", after.isoformat())
    wait_idle(page)
    assert permit.permit_id not in rendered_ids(page, "repairs", "permit_id", point.x, point.y)

    page.evaluate("() => window.geoportal.showAll()")
    wait_idle(page)
    assert permit.permit_id in rendered_ids(page, "repairs", "permit_id", point.x, point.y)


def test_popup_shows_public_fields_in_russian(page, server):  # noqa: F811
    repairs = pyogrio.read_dataframe(server.paths.published_path("repairs"))
    point = repairs.geometry.iloc[0]
    page.evaluate("() => window.geoportal.showAll()")
    page.evaluate("([lon, lat]) => window.geoportal.map.jumpTo({center: [lon, lat], zoom: 17})", [point.x, point.y])
    wait_idle(page)
    xy = page.evaluate(
        "([lon, lat]) => { const p = window.geoportal.map.project([lon, lat]); "
        "const r = document.getElementById('map').getBoundingClientRect(); "
        "return [r.left + p.x, r.top + p.y]; }",
        [point.x, point.y],
    )
    page.mouse.click(*xy)
    popup = page.locator(".maplibregl-popup-content")
    popup.wait_for(timeout=10_000)
    text = popup.inner_text()
    assert "Номер ордера" in text and "Вид сетей" in text
    assert "Телефон подрядчика" not in text  # internal field: not in public tiles nor popups


def test_screenshot_for_review(page, server):  # noqa: F811
    page.evaluate("() => document.querySelectorAll('.maplibregl-popup').forEach(p => p.remove())")
    page.evaluate("() => window.geoportal.map.fitBounds(window.geoportal.config.bounds, {animate: false})")
    page.evaluate("t => window.geoportal.setTime(t)", pd.Timestamp(SAMPLE_MOMENT).isoformat())
    page.locator("[data-layer='disruption_load']").check()
    wait_idle(page)
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / "web-map.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000
    assert page.errors == []
