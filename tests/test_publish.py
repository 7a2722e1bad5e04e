"""Publication: a GeoPackage QGIS 3.22 opens quietly, stable ids, and readers never see half a file."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import shapely

from assets.publish import publish_geopackage, published_state, stable_fid
from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from pipelines.factory import layer_asset
from pipelines.resources import GeoportalResource
from tests.conftest import city_paths, path_environment
from tests.test_bad_input import GOOD_POINT, HEADER, ZONES_YAML, _write_shapefile, make_city, works_city

REPAIRS = load_catalog()["repairs"]


def repairs_frame(count: int, offset: int = 0) -> gpd.GeoDataFrame:
    ids = [f"P-{offset + n}" for n in range(count)]
    data = {f.name: [None] * count for f in REPAIRS.fields}
    data.update(
        {
            "permit_id": ids,
            "network": ["heat"] * count,
            "work_kind": ["planned"] * count,
            "status": ["active"] * count,
            "start_time": pd.Series([pd.Timestamp("2026-11-24T01:00Z")] * count),
        }
    )
    frame = gpd.GeoDataFrame(data, geometry=[shapely.Point(104.28 + n * 1e-5, 52.28) for n in range(count)], crs=4326)
    frame.insert(0, "fid", [stable_fid("repairs", i) for i in ids])
    return frame


def read_counts(path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        features = db.execute("SELECT count(*) FROM repairs").fetchone()[0]
        indexed = db.execute("SELECT count(*) FROM rtree_repairs_geom").fetchone()[0]
    return features, indexed


def test_geopackage_is_version_1_2_with_rtree_and_description(tmp_path):
    path = publish_geopackage(repairs_frame(5), REPAIRS, tmp_path / "repairs.gpkg")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
        identifier, description, srs = db.execute(
            "SELECT identifier, description, srs_id FROM gpkg_contents WHERE table_name='repairs'"
        ).fetchone()
        geometry = db.execute("SELECT column_name, geometry_type_name FROM gpkg_geometry_columns").fetchone()
        stored = db.execute("SELECT start_time FROM repairs LIMIT 1").fetchone()[0]
    assert identifier == REPAIRS.title.ru and "Earthworks permits" in description and srs == 4326
    assert geometry == ("geom", "POINT")
    assert stored == "2026-11-24T01:00:00.000Z"
    assert read_counts(path) == (5, 5)


def test_feature_ids_are_stable_whatever_the_order(tmp_path):
    first = publish_geopackage(repairs_frame(20), REPAIRS, tmp_path / "a.gpkg")
    shuffled = repairs_frame(20).sample(frac=1, random_state=1)
    second = publish_geopackage(shuffled, REPAIRS, tmp_path / "b.gpkg")
    ids = [dict(sqlite3.connect(p).execute("SELECT permit_id, fid FROM repairs").fetchall()) for p in (first, second)]
    assert ids[0] == ids[1] and len(set(ids[0].values())) == 20


def test_readers_see_the_old_or_the_new_file_never_half(tmp_path):
    target = tmp_path / "repairs.gpkg"
    small, large = repairs_frame(100), repairs_frame(3000, offset=1000)
    publish_geopackage(small, REPAIRS, target)
    done = threading.Event()
    errors: list[BaseException] = []

    def publisher() -> None:
        try:
            for round_ in range(12):
                publish_geopackage(large if round_ % 2 == 0 else small, REPAIRS, target)
        except BaseException as error:  # noqa: BLE001 - reported by the reader thread's assertion
            errors.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    seen = set()
    while not done.is_set():
        seen.add(read_counts(target))
    thread.join()
    assert not errors
    assert seen and seen <= {(100, 100), (3000, 3000)}, seen
    assert read_counts(target) == (100, 100)
    assert not list(tmp_path.glob(".*.part.gpkg")), "no temporary files are left behind"


# ---------------------------------------------------------------- through the layer asset


def materialize(paths, *layers: str, config: dict | None = None) -> dg.ExecuteInProcessResult:
    catalog = load_catalog(paths.catalog_dir)
    return dg.materialize(
        [layer_asset(catalog[layer]) for layer in layers],
        resources={"geoportal": GeoportalResource.of(paths)},
        raise_on_error=False,
        run_config={"ops": {layer: {"config": config} for layer in layers}} if config else None,
    )


def failure_line(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return failure.event_specific_data.error.message.strip().splitlines()[0].split("Failure: ", 1)[-1]


def check_result(result: dg.ExecuteInProcessResult, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def features(path: Path, layer: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(f'SELECT count(*) FROM "{layer}"').fetchone()[0]


def test_an_empty_event_feed_clears_the_layer(tmp_path):
    # the last closure of the city ended: an empty WZDx feed and a municipal list with only its header
    paths = city_paths(tmp_path)
    assert materialize(paths, "road_closures").success
    before = features(paths.published_path("road_closures"), "road_closures")
    assert before > 0
    live = paths.live_dir / "closures"
    live.mkdir(parents=True)
    feed = json.loads((paths.sample_dir / "closures/wzdx_feed.geojson").read_text(encoding="utf-8"))
    (live / "wzdx_feed.geojson").write_text(json.dumps({**feed, "features": []}), encoding="utf-8")
    header = (paths.sample_dir / "closures/municipal_closures.csv").read_bytes().splitlines()[0]
    (live / "municipal_closures.csv").write_bytes(header + b"\r\n")
    result = materialize(paths, "road_closures")
    assert result.success, failure_line(result)
    assert features(paths.published_path("road_closures"), "road_closures") == 0
    assert check_result(result, "volume").passed  # both feeds are declared may_be_empty


def test_an_empty_shapefile_publishes_an_empty_layer(tmp_path):
    paths = make_city(tmp_path, {"zones": ZONES_YAML})
    _write_shapefile(paths.sample_dir / "zones.shp", [])
    result = materialize(paths, "zones")
    assert result.success, failure_line(result)
    path = paths.published_path("zones")
    assert features(path, "zones") == 0
    with sqlite3.connect(path) as db:  # the schema still comes from the catalog
        columns = {row[1]: row[2] for row in db.execute('PRAGMA table_info("zones")')}
    assert columns["zone_no"] == "INTEGER" and columns["geom"] == "MULTIPOLYGON"


def test_when_every_record_is_rejected_the_layer_fails_in_one_line_and_the_rejects_are_written(tmp_path):
    paths = works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}"])
    assert materialize(paths, "works").success
    rows = [f"W-{n};Теплосеть;{n}.13.2026;;{GOOD_POINT}" for n in range(1, 39)]
    rows += ["W-39;Ливнёвка;01.11.2026;;", "W-40;Ливнёвка;01.11.2026;;"]
    (paths.sample_dir / "works.csv").write_bytes("\n".join([HEADER, *rows]).encode("cp1251"))
    result = materialize(paths, "works")
    assert not result.success
    assert failure_line(result) == (
        'works: all 40 records of works.csv rejected: 38× "not a date/time in the form %d.%m.%Y" (start_time), '
        f"2× \"not one of the allowed values ['heat', 'water']\" (network); rejects in {paths.rejects_path('works')}"
    )
    with open(paths.rejects_path("works"), encoding="utf-8-sig") as handle:
        assert len({row["record"] for row in csv.DictReader(handle)}) == 40
    assert features(paths.published_path("works"), "works") == 1  # the map keeps the last good layer


def test_a_header_only_delivery_does_not_silently_shrink_the_layer(tmp_path):
    """A permits CSV with only its header would replace the 182 repairs by the workbook's 40: held, with the
    reason on the volume check (UI) and in one line of `python -m pipelines`; the operator can release it."""
    paths = city_paths(tmp_path)
    assert materialize(paths, "addresses", "repairs").success
    published = paths.published_path("repairs")
    before = published_state(published, "repairs")
    permits, workbook = before.by_source["repairs/permits.csv"], before.by_source["repairs/emergency_works.xlsx"]
    assert before.features <= permits + workbook and permits > workbook > 0  # 142 + 40 on the sample, one id in both
    (paths.live_dir / "repairs").mkdir(parents=True)
    header = (paths.sample_dir / "repairs/permits.csv").read_bytes().splitlines()[0]
    (paths.live_dir / "repairs/permits.csv").write_bytes(header + b"\r\n")
    loss = (before.features - workbook) / before.features
    reason = (
        f"repairs/permits.csv contributed {permits} records before and none now; {before.features} → {workbook} "
        f"features (−{loss:.0%}, more than max_loss 50%)"
    )

    result = materialize(paths, "repairs")
    assert not result.success
    held = check_result(result, "volume")
    assert not held.passed and held.description == reason
    assert held.metadata["previously_published"].value == before.features
    assert held.metadata["published"].value == workbook
    assert failure_line(result).startswith(f"repairs: held, not published: {reason}; the previous GeoPackage stays")
    assert features(published, "repairs") == before.features

    environment = {**os.environ, **path_environment(paths), "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    cli = subprocess.run(
        [sys.executable, "-m", "pipelines", "repairs_job"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1
    assert f"  repairs: held, not published: {reason}; the previous GeoPackage stays in place" in cli.stdout, cli.stdout
    assert "Traceback" not in cli.stdout + cli.stderr
    assert features(published, "repairs") == before.features

    released = materialize(paths, "repairs", config={"release_hold": True})
    assert released.success, failure_line(released)
    assert check_result(released, "volume").passed
    assert features(published, "repairs") == workbook


def test_zone_topology_findings_are_a_staff_geopackage_the_server_never_serves(tmp_path):
    paths = make_city(tmp_path, {"zones": ZONES_YAML})
    left, right = shapely.box(3335000, 384000, 3335500, 384500), shapely.box(3335501.5, 384000, 3336000, 384500)
    inner = shapely.box(3336000, 384000, 3336500, 384500).difference(shapely.box(3336200, 384200, 3336300, 384300))
    _write_shapefile(paths.sample_dir / "zones.shp", [(1, "Левая", left), (2, "Правая", right), (3, "С дырой", inner)])
    result = materialize(paths, "zones")
    assert result.success, failure_line(result)
    check = check_result(result, "zone_topology")
    assert not check.passed and check.metadata["gaps"].value == 2
    findings = gpd.read_file(paths.topology_path("zones"))
    assert sorted(zip(findings.kind, findings.zones, strict=True)) == [("gap", "1, 2"), ("gap", "3")]
    # a 1.5 m × 500 m sliver open at both ends (no hole of the union), a 100 m × 100 m hole
    assert sorted(findings.area_m2.round(-1)) == [750, 10000]
    assert paths.topology_path("zones").parent == paths.rejects_dir != paths.published_dir
    assert not [p.name for p in paths.published_dir.iterdir() if "topology" in p.name]


def test_an_empty_layer_is_served_empty_and_its_tiles_too(tmp_path):
    """The map clears: an empty layer answers /items with no feature and a tile with nothing, not 404/500."""
    from tests.server_fixtures import start_server, stop_server

    paths = city_paths(tmp_path)
    live = paths.live_dir / "closures"
    live.mkdir(parents=True)
    feed = json.loads((paths.sample_dir / "closures/wzdx_feed.geojson").read_text(encoding="utf-8"))
    (live / "wzdx_feed.geojson").write_text(json.dumps({**feed, "features": []}), encoding="utf-8")
    header = (paths.sample_dir / "closures/municipal_closures.csv").read_bytes().splitlines()[0]
    (live / "municipal_closures.csv").write_bytes(header + b"\r\n")
    result = materialize(paths, "road_closures")
    assert result.success, failure_line(result)
    server = start_server(paths, tmp_path / "server.log")
    try:
        with server.client() as client:
            items = client.get("/collections/road_closures/items", params={"f": "json"})
            assert items.status_code == 200, items.text
            assert items.json()["features"] == [] and items.json()["numberMatched"] == 0
            tile = client.get("/tiles/road_closures/12/3234/1352.pbf")  # central Irkutsk (104.28 E, 52.28 N)
            assert tile.status_code in (200, 204) and len(tile.content) < 100
    finally:
        stop_server(server)
