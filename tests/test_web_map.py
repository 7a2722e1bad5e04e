"""The web map in a real headless Chromium: loads cleanly, shows features where they are, obeys the slider,
speaks the browser's language with the catalog's titles and labels, and opens where the events are."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pyogrio
import pytest
from rasterio.io import MemoryFile

from layers.settings import REPO_ROOT, PathSettings
from tests.conftest import SAMPLE_MOMENT
from tests.server_fixtures import RunningServer, server, start_server, stop_server  # noqa: F401 - fixture

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


def open_map(playwright, url: str, locale: str):
    """A fresh browser with `locale` as its language, on the web map once it is ready; every request it makes
    is kept in `page.requests`, every console error and failed response in `page.errors`."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, locale=locale)
    page.errors, page.requests = [], []
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("request", lambda request: page.requests.append(request.url))
    page.on(
        "response",
        lambda response: response.status >= 400 and page.errors.append(f"{response.status} {response.url}"),
    )
    page.goto(f"{url}/map/")
    page.wait_for_function("document.body.dataset.ready === 'true' || document.body.dataset.error", timeout=60_000)
    return browser, page


@pytest.fixture(scope="module")
def playwright():
    """One Playwright per module: its sync API cannot run twice at once in a thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def page(playwright, server):  # noqa: F811 - the fixture above
    browser, page = open_map(playwright, server.url, "ru-RU")
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


def test_legend_and_popups_read_the_catalogs_labels(page):
    legend = page.locator("#legend .legend-entry").all_text_contents()
    assert "Полное перекрытие" in legend and "Теплосеть" in legend
    assert not {"all-lanes-closed", "full", "Полное"} & set(legend), legend
    assert page.evaluate("document.documentElement.lang") == "ru"


def test_no_request_leaves_the_server(page, server):  # noqa: F811
    assert page.requests, "the page was recorded"
    elsewhere = [
        u
        for u in page.requests
        if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != urlsplit(server.url).netloc
    ]
    assert elsewhere == []


# A city whose events are all in the past, with English titles and WZDx-like source codes, its raster not
# published at first: the web map must open where its events are, in English, without a raster toggle.
PAST_CLOSURES_YAML = """
title: {ru: Перекрытия прошлых лет, en: Road closures of past years}
description: {ru: "Перекрытия, которые уже закончились", en: Closures that have ended}
domain: closures
geometry_type: LineString
id_field: closure_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: closure_id, type: string, required: true, title: {ru: Код перекрытия, en: Closure id}}
  - {name: road_name, type: string, required: true, title: {ru: Улица, en: Road}}
  - name: closure_type
    type: string
    required: true
    allowed: [full, partial]
    title: {ru: Тип перекрытия, en: Closure type}
    labels: {full: {ru: Полное перекрытие, en: Full closure}, partial: {ru: Частичное перекрытие, en: Partial closure}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Окончание, en: End}}
sources:
  - path: closures.csv
    format: csv
    date_format: "%Y-%m-%d %H:%M"
    columns: {id: closure_id, road: road_name, type: closure_type, start: start_time, end: end_time}
    values: {closure_type: {all-lanes-closed: full, some-lanes-closed: partial}}
    geometry: {wkt: wkt}
style:
  by: closure_type
  colors: {full: "#b91c1c", partial: "#f59e0b"}
  dashed: {closure_type: [partial]}
  width: 4
severity: {by: closure_type, weights: {full: 4, partial: 2}, radius_m: 60}
"""
PAST_CLOSURES_CSV = """id,road,type,start,end,wkt
C-1,Lenin Street,all-lanes-closed,2020-05-01 08:00,2020-05-10 18:00,"LINESTRING (104.280 52.287, 104.285 52.287)"
C-2,Karl Marx Street,some-lanes-closed,2020-06-01 08:00,2020-06-20 18:00,"LINESTRING (104.290 52.283, 104.290 52.278)"
C-3,Sukhe-Bator Street,all-lanes-closed,2019-03-01 08:00,2019-03-02 18:00,"LINESTRING (104.270 52.290, 104.275 52.290)"
"""


@pytest.fixture(scope="module")
def past_city(tmp_path_factory) -> Iterator[RunningServer]:
    """The city above published by the pipeline and served by `python -m server`."""
    import dagster as dg

    from layers.catalog import load_catalog
    from pipelines.factory import layer_assets
    from pipelines.resources import GeoportalResource

    base = tmp_path_factory.mktemp("past_city")
    (base / "layers").mkdir()
    (base / "sources").mkdir()
    shutil.copy(REPO_ROOT / "layers" / "_city.yaml", base / "layers" / "_city.yaml")
    (base / "layers" / "closures.yaml").write_text(textwrap.dedent(PAST_CLOSURES_YAML), encoding="utf-8")
    (base / "sources" / "closures.csv").write_text(PAST_CLOSURES_CSV, encoding="utf-8")
    paths = PathSettings(
        root=base,
        catalog_dir=base / "layers",
        sample_dir=base / "sources",
        live_dir=base / "live",
        published_dir=base / "published",
        rejects_dir=base / "rejects",
        inbox_dir=base / "inbox",
        archive_dir=base / "archive",
        quarantine_dir=base / "quarantine",
    )
    catalog = load_catalog(paths.catalog_dir)
    result = dg.materialize(layer_assets(catalog), resources={"geoportal": GeoportalResource.of(paths)})
    assert result.success
    extra = {"GEOPORTAL_CATALOG_DIR": str(paths.catalog_dir), "GEOPORTAL_SAMPLE_DIR": str(paths.sample_dir)}
    running = start_server(paths, base / "server.log", extra_env=extra)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def english_page(playwright, past_city):
    browser, page = open_map(playwright, past_city.url, "en-US")
    yield page
    browser.close()


def test_english_browser_gets_english_titles_and_catalog_labels(english_page):
    page = english_page
    assert page.evaluate("document.body.dataset.error || null") is None and page.errors == []
    assert page.evaluate("[navigator.languages, document.documentElement.lang]") == [["en-US"], "en"]
    assert page.locator("#layers h2").all_text_contents() == ["Closures and detours"]
    assert "Road closures of past years" in page.locator("#layers .layer").all_text_contents()[0]
    assert page.locator("#legend .legend-entry").all_text_contents() == ["Full closure", "Partial closure"]
    assert page.locator("#time-now").inner_text() == "Now"
    assert page.locator("#city-title").inner_text() == "Irkutsk"


def test_opens_at_the_latest_moment_with_events_and_says_so(english_page, past_city):
    page = english_page
    published = pyogrio.read_dataframe(past_city.paths.published_path("closures"))
    last = published.loc[pd.to_datetime(published.end_time, utc=True).idxmax()]
    latest = pd.Timestamp(last.end_time).tz_convert("UTC")
    opened = page.evaluate("window.geoportal.time")
    assert pd.Timestamp(opened["from"]) == pd.Timestamp(opened["to"]) == latest
    note = page.locator("#time-note")
    assert note.is_visible() and "latest moment with events" in note.inner_text()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web-map-en.png"))  # for review beside web-map.png
    line = last.geometry
    middle = line.interpolate(0.5, normalized=True)
    page.evaluate("([lon, lat]) => window.geoportal.map.jumpTo({center: [lon, lat], zoom: 15})", [middle.x, middle.y])
    wait_idle(page)
    assert last.closure_id in rendered_ids(page, "closures", "closure_id", middle.x, middle.y)

    xy = page.evaluate(
        "([lon, lat]) => { const p = window.geoportal.map.project([lon, lat]); "
        "const r = document.getElementById('map').getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; }",
        [middle.x, middle.y],
    )
    page.mouse.click(*xy)
    popup = page.locator(".maplibregl-popup-content")
    popup.wait_for(timeout=10_000)
    assert "Closure type" in popup.inner_text() and "Partial closure" in popup.inner_text()

    page.evaluate("t => window.geoportal.setTime(t)", (latest + pd.Timedelta(days=1)).isoformat())
    assert not note.is_visible(), "the note speaks of the opening moment only"
    assert page.errors == []


def test_english_page_asks_only_its_server(english_page, past_city):
    hosts = {urlsplit(u).netloc for u in english_page.requests if urlsplit(u).scheme in ("http", "https")}
    assert hosts == {urlsplit(past_city.url).netloc}


def test_raster_toggle_only_with_a_raster_product_and_an_empty_one_is_served(playwright, english_page, past_city):
    """Last in the module: it publishes the past city's raster, which nothing active at "now" leaves empty."""
    import dagster as dg

    from assets.raster import PRODUCT
    from layers.catalog import load_catalog
    from pipelines.raster import disruption_load_asset
    from pipelines.resources import GeoportalResource

    paths = past_city.paths
    assert not paths.raster_path(PRODUCT).exists()
    assert english_page.evaluate("window.geoportal.config.raster") is None
    assert english_page.locator(f"[data-layer='{PRODUCT}']").count() == 0
    with past_city.client() as client:
        assert client.get(f"/collections/{PRODUCT}").status_code == 404

    asset = disruption_load_asset(load_catalog(paths.catalog_dir))
    assert dg.materialize([asset], resources={"geoportal": GeoportalResource.of(paths)}).success
    with past_city.client() as client:
        coverage = client.get(f"/collections/{PRODUCT}/coverage", params={"f": "GTiff"})
        assert coverage.status_code == 200, coverage.text
        with MemoryFile(coverage.content) as memory, memory.open() as dataset:
            assert (dataset.width, dataset.height) == (1, 1) and dataset.read(1).max() == 0
        assert client.get(f"/map/raster/{PRODUCT}.png").headers["content-type"] == "image/png"
    browser, page = open_map(playwright, past_city.url, "en-US")
    try:
        page.locator(f"[data-layer='{PRODUCT}']").check()
        wait_idle(page)
        assert page.evaluate("document.body.dataset.error || null") is None and page.errors == []
    finally:
        browser.close()
