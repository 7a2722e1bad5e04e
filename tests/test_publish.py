"""Publication: a GeoPackage QGIS 3.22 opens quietly, stable ids, and readers never see half a file."""

from __future__ import annotations

import sqlite3
import threading

import geopandas as gpd
import pandas as pd
import shapely

from assets.publish import publish_geopackage, stable_fid
from layers.catalog import load_catalog

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
