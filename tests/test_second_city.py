"""A second city, Sofia, configured only by YAML in its own catalog folder (tests/cities/sofia/layers),
published through the real Dagster assets and served by the real server, like the bundled city."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyogrio
import pytest
import shapely

from layers.catalog import load_catalog
from layers.settings import REPO_ROOT, PathSettings
from pipelines.factory import layer_assets
from pipelines.raster import PRODUCT, disruption_load_asset
from pipelines.resources import GeoportalResource
from tests.conftest import SHARED_DATA
from tests.server_fixtures import RunningServer, start_server, stop_server

SOFIA = REPO_ROOT / "tests" / "cities" / "sofia"
DISTRICTS = SHARED_DATA / "sofia" / "districts"
MOMENT = "2026-11-25T10:00:00+00:00"  # a Wednesday morning in Sofia, while the closures are on
# (published, distinct rejected) per layer, counted from tests/cities/sofia/make_fixtures.py and the
# four district files: closures 5 WZDx events (a detour skipped, a spot rejected) + 2 CWZ events;
# street works 6 Shapefile points (31.02 rejected) + 13 permit rows (one without a start).
EXPECTED = {"districts": (4, 0), "outages": (3, 1), "closures": (5, 1), "street_works": (17, 2)}
PUBLIC_FIELDS = {"street_works": {"work_id", "network", "address", "start_time", "end_time", "length_m"}}

pytestmark = pytest.mark.skipif(not DISTRICTS.is_dir(), reason=f"real Sofia districts not found at {DISTRICTS}")


def sofia_paths(base: Path) -> PathSettings:
    """Sofia's committed fixtures plus the real district files (a file set), everything written under `base`."""
    sample = base / "sample"
    shutil.copytree(SOFIA / "sample", sample)
    (sample / "districts").mkdir()
    for path in sorted(DISTRICTS.glob("*.geojson")):
        shutil.copy(path, sample / "districts" / path.name)
    return PathSettings(
        root=base,
        catalog_dir=SOFIA / "layers",
        sample_dir=sample,
        live_dir=base / "live",
        published_dir=base / "published",
        rejects_dir=base / "rejects",
        inbox_dir=base / "inbox",
        archive_dir=base / "archive",
        quarantine_dir=base / "quarantine",
    )


def materialize(paths: PathSettings, at: str | None = None) -> dg.ExecuteInProcessResult:
    catalog = load_catalog(paths.catalog_dir)
    assets = [*layer_assets(catalog)]
    config = {}
    if any(spec.severity for spec in catalog.values()):
        assets.append(disruption_load_asset(catalog))
        config = {"ops": {PRODUCT: {"config": {"at": at or MOMENT}}}}
    return dg.materialize(
        assets, resources={"geoportal": GeoportalResource.of(paths)}, raise_on_error=False, run_config=config
    )


def failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


@pytest.fixture(scope="module")
def sofia(tmp_path_factory) -> tuple[PathSettings, dg.ExecuteInProcessResult]:
    paths = sofia_paths(tmp_path_factory.mktemp("sofia"))
    result = materialize(paths)
    assert result.success, failures(result)
    return paths, result


def published(paths: PathSettings, layer: str):
    return pyogrio.read_dataframe(paths.published_path(layer))


def rejects(paths: PathSettings, layer: str) -> list[dict[str, str]]:
    path = paths.rejects_path(layer)
    if not path.exists():
        return []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def metadata(result: dg.ExecuteInProcessResult, layer: str) -> dict:
    (event,) = result.asset_materializations_for_node(layer)
    return {key: value.value for key, value in event.metadata.items()}


def by_id(frame, field: str) -> dict:
    return {row[field]: row for _, row in frame.iterrows()}


# --- publication ---------------------------------------------------------------------------------------


def test_every_layer_published_and_every_record_accounted(sofia):
    paths, result = sofia
    for layer, (count, rejected) in EXPECTED.items():
        assert len(published(paths, layer)) == count, layer
        assert len({(r["source_file"], r["record"]) for r in rejects(paths, layer)}) == rejected, layer
        meta = metadata(result, layer)
        assert (meta["published"], meta["rejected"]) == (count, rejected), layer
    assert paths.raster_path(PRODUCT).exists()


def test_shapefile_in_bgs2005_placed_by_its_prj_alone(sofia):
    paths, result = sofia
    (shapefile, _) = load_catalog(paths.catalog_dir)["street_works"].sources
    assert shapefile.crs is None  # the catalog names no CRS: the .prj says BGS2005 / CCS2005
    works = by_id(published(paths, "street_works"), "work_id")
    # СР-101 was written at 23.3225 E, 42.6935 N (make_fixtures.py), in EPSG:7801 metres
    assert works["СР-101"].geometry.distance(shapely.Point(23.3225, 42.6935)) < 1e-5  # about a metre
    assert "EPSG:7801" in metadata(result, "street_works")["source_crs"]


def test_placeholders_are_empty_values_not_rejects(sofia):
    paths, _ = sofia
    works = by_id(published(paths, "street_works"), "work_id")
    assert works["СР-102"].end_time is None or str(works["СР-102"].end_time) in ("NaT", "None")  # "няма данни"
    assert works["СР-104"].end_time is None or str(works["СР-104"].end_time) in ("NaT", "None")  # "-"
    assert str(works["РР-005"].end_time) in ("NaT", "None")  # a workbook's "няма данни" (its own nulls)
    reasons = {(r["source_file"], r["record"]): r["reason"] for r in rejects(paths, "street_works")}
    assert set(reasons) == {("works/street_works.shp", "feature 5"), ("permits/permits.xlsx", "row 14")}
    assert "not a date" in reasons[("works/street_works.shp", "feature 5")]  # 31.02.2026
    assert "required" in reasons[("permits/permits.xlsx", "row 14")]  # its start is a placeholder


def test_workbook_read_past_its_stale_dimension(sofia):
    paths, _ = sofia
    works = published(paths, "street_works")
    permits = works[works.work_id.str.startswith("РР-")]
    assert len(permits) == 12  # the <dimension> says A1:H5: 4 rows
    assert sorted(permits.source_file.unique()) == ["permits/permits.xlsx"]
    assert by_id(permits, "work_id")["РР-001"].length_m == pytest.approx(12.5)  # "12,5" typed as text


def test_outages_from_a_json_feed_with_epoch_ms_and_flat_lat_lng_rings(sofia):
    paths, _ = sofia
    outages = by_id(published(paths, "outages"), "outage_id")
    water = outages["SV-2026-0320-1"]
    assert water.kind == "water"
    assert str(water.start_time).startswith("2026-03-20T07:00:00") or str(water.start_time).startswith(
        "2026-03-20 07:00:00"
    )  # 09:00 in Sofia (EET), from 1773990000000 ms
    assert water.geometry.contains(shapely.Point(23.396, 42.662))  # [lat, lng] read as lat first
    assert {o for o in outages} == {"SV-2026-0320-1", "SO-2026-0205-1", "SO-2026-0205-2"}
    (reject,) = rejects(paths, "outages")
    assert reject["record"] == "record 4" and "no geometry" in reject["reason"]


def test_closures_from_wzdx_42_and_cwz_10_by_property_paths(sofia):
    paths, result = sofia
    closures = by_id(published(paths, "closures"), "closure_id")
    assert set(closures) == {"SOF-WZ-1", "SOF-WZ-2", "SOF-WZ-3", "SOF-CWZ-1", "SOF-CWZ-2"}
    second = closures["SOF-WZ-2"]
    assert (second.closure_type, second.direction, second.speed_limit_kph) == ("partial", "eastbound", 30)
    assert (second.types_of_work, second.lane_status) == ("surface-work, painting", "closed, open")
    assert second.from_street == "ул. Раковски"
    assert {closures["SOF-CWZ-1"].feed, closures["SOF-WZ-1"].feed} == {"cwz", "wzdx"}
    (spot,) = rejects(paths, "closures")
    assert spot["record"] == "feature 4" and "spot" in spot["reason"]  # a line of one point, said so
    assert metadata(result, "closures")["skipped_other_layers"] == 1  # the detour belongs to no layer here


def test_districts_as_a_file_set_with_topology_in_metres(sofia):
    paths, result = sofia
    districts = by_id(published(paths, "districts"), "code")
    assert {d.name_latin for d in districts.values()} == {"IZGREW", "OBORISTE", "SERDIKA", "SREDEC"}
    assert districts["08"].source_file == "districts/bg.sofia.izgrev.geojson"
    (check,) = [
        c
        for c in result.get_asset_check_evaluations()
        if c.asset_key.path == ["districts"] and c.check_name == "zone_topology"
    ]
    found = {key: value.value for key, value in check.metadata.items()}
    assert "+proj=laea" in found["measured_in"] and found["tolerance_m2"] == 10
    # the four real districts meet edge to edge: no pair shares any area (measured on EPSG:6933 by hand)
    assert found["overlapping_pairs"] == 0, found


def test_our_wzdx_feed_is_valid_wzdx_42():
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource

    schemas = [
        *(SHARED_DATA / "wzdx" / "schemas-4.2").glob("*.json"),
        *(SHARED_DATA / "wzdx" / "geojson-schema").glob("*.json"),
    ]
    registry = Registry().with_resources(
        (document["$id"], Resource.from_contents(document))
        for document in (json.loads(path.read_text(encoding="utf-8")) for path in schemas)
        if "$id" in document
    )
    schema = json.loads((SHARED_DATA / "wzdx" / "schemas-4.2" / "WorkZoneFeed.json").read_text(encoding="utf-8"))
    feed = json.loads((SOFIA / "sample" / "closures" / "wzdx_feed.geojson").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema, registry=registry).validate(feed)


# --- served -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sofia_server(sofia, tmp_path_factory) -> Iterator[RunningServer]:
    paths, _ = sofia
    environment = {"GEOPORTAL_CATALOG_DIR": str(paths.catalog_dir), "GEOPORTAL_SAMPLE_DIR": str(paths.sample_dir)}
    running = start_server(paths, tmp_path_factory.mktemp("sofia-server") / "server.log", environment)
    yield running
    stop_server(running)


def test_served_counts_titles_and_no_internal_fields(sofia, sofia_server):
    paths, _ = sofia
    with sofia_server.client() as client:
        listing = client.get("/collections", params={"f": "json", "lang": "en"}).json()
        titles = {c["id"]: c["title"] for c in listing["collections"]}
        assert set(EXPECTED) <= set(titles)
        assert titles["closures"] == "Road closures" and titles["districts"] == "Districts"
        for layer, (count, _) in EXPECTED.items():
            page = client.get(f"/collections/{layer}/items", params={"f": "json", "limit": 1000}).json()
            assert page["numberMatched"] == count and len(page["features"]) == count, layer
        works = client.get("/collections/street_works/items", params={"f": "json", "limit": 1}).json()
        assert set(works["features"][0]["properties"]) == PUBLIC_FIELDS["street_works"]


def test_gdal_oapif_reads_every_public_layer(sofia, sofia_server):
    paths, _ = sofia
    listed = {name for name, _ in pyogrio.list_layers(f"OAPIF:{sofia_server.url}")}
    assert set(EXPECTED) <= listed
    for layer, (count, _) in EXPECTED.items():
        remote = pyogrio.read_dataframe(f"OAPIF:{sofia_server.url}", layer=layer)
        assert len(remote) == count, layer
        assert remote.total_bounds == pytest.approx(published(paths, layer).total_bounds, abs=1e-5), layer


def test_a_vector_tile_of_sofia_holds_its_closure(sofia_server):
    import mapbox_vector_tile
    import morecantile

    tile = morecantile.tms.get("WebMercatorQuad").tile(23.3180, 42.6925, 15)  # on бул. Витоша
    with sofia_server.client() as client:
        response = client.get(f"/tiles/closures/{tile.z}/{tile.x}/{tile.y}.pbf", params={"datetime": MOMENT})
    assert response.status_code == 200, response.text
    layers = mapbox_vector_tile.decode(response.content)
    ids = {f["properties"].get("closure_id") for layer in layers.values() for f in layer["features"]}
    assert "SOF-WZ-1" in ids


def test_web_map_in_english(sofia_server):
    from tests.test_web_map import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            elsewhere: list[str] = []  # everything the map needs comes from our server: no CDN, no tiles from afar
            ours = (sofia_server.url, f"blob:{sofia_server.url}", "data:")  # blobs: MapLibre's own workers
            page.on("request", lambda r: r.url.startswith(ours) or elsewhere.append(r.url))
            page.goto(f"{sofia_server.url}/map/")
            page.wait_for_function(
                "document.body.dataset.ready === 'true' || document.body.dataset.error", timeout=60_000
            )
            text = page.inner_text("body")
            assert page.evaluate("document.body.dataset.error || null") is None and errors == [] and elsewhere == []
            assert page.evaluate("document.documentElement.lang") == "en"
            for english in ("Sofia", "Road closures", "Districts", "Street works", "Full closure", "Water shut-off"):
                assert english in text, english
            for russian in ("Перекрытия дорог", "Районы", "Полное перекрытие"):
                assert russian not in text, russian
            page.screenshot(path=str(REPO_ROOT / "test-artifacts" / "web-map-sofia.png"))
        finally:
            browser.close()
