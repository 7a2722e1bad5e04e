"""The published GeoPackage's spatial index, written in bulk (assets.gpkg_rtree) instead of by GDAL: the same
extension, tables and triggers as GDAL's, a box around every feature, and a tree SQLite, GDAL and QGIS's GDAL
use and keep right when they edit the file."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from assets.gpkg_rtree import float32_outward, spatial_index_beside
from assets.publish import GPKG_VERSION, PublicationError, publish_geopackage, stable_fid
from tests.test_publish import REPAIRS, repairs_frame

GDAL_36 = pytest.mark.skipif(
    not shutil.which("ogrinfo"), reason="Debian's gdal-bin (GDAL 3.6, as in QGIS 3.22) not installed"
)


def mixed_frame(count: int, seed: int = 5) -> gpd.GeoDataFrame:
    """Points, boxes and lines, one missing and one empty geometry, fids in ascending order as published."""
    rng = np.random.default_rng(seed)
    xs, ys = 104 + rng.random(count) / 3, 52 + rng.random(count) / 3
    shapes = []
    for n, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if n % 3 == 0:
            shapes.append(shapely.Point(x, y))
        elif n % 3 == 1:
            shapes.append(shapely.box(x, y, x + rng.random() * 1e-3, y + rng.random() * 1e-3))
        else:
            shapes.append(shapely.LineString([(x, y), (x - 1e-3, y + 2e-3)]))
    if count > 7:
        shapes[5], shapes[7] = None, shapely.Polygon()
    fids = np.sort(rng.choice(2**40, count, replace=False)) + 1
    return gpd.GeoDataFrame({"fid": fids, "n": np.arange(count)}, geometry=shapes, crs=4326)


def write_without_index(frame: gpd.GeoDataFrame, path: Path, spatial_index: str = "NO") -> Path:
    pyogrio.write_dataframe(
        frame,
        path,
        layer="t",
        geometry_type="Unknown",
        dataset_options={"VERSION": GPKG_VERSION},
        layer_options={"FID": "fid", "GEOMETRY_NAME": "geom", "SPATIAL_INDEX": spatial_index},
    )
    return path


def index_ours(frame: gpd.GeoDataFrame, path: Path) -> Path:
    write_without_index(frame, path)
    with spatial_index_beside(path, "t", "geom", "fid", frame["fid"].to_numpy(), frame.geometry.to_numpy()):
        pass
    return path


def rows(path: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        found = db.execute(sql, args).fetchall()
    db.close()
    return found


# empty; a leaf root; a full one; two levels; three levels, the last leaf and inner node part-filled
@pytest.mark.parametrize("count", [0, 1, 51, 52, 2_700])
def test_every_feature_is_indexed_in_a_box_around_it_and_sqlite_checks_the_tree(tmp_path, count):
    frame = mixed_frame(count)
    path = index_ours(frame, tmp_path / "ours.gpkg")
    assert rows(path, "SELECT rtreecheck('rtree_t_geom')") == [("ok",)]
    indexed = {row[0]: row[1:] for row in rows(path, "SELECT id, minx, maxx, miny, maxy FROM rtree_t_geom")}
    with_shape = frame[~(frame.geometry.isna() | frame.geometry.is_empty)]
    assert set(indexed) == set(with_shape["fid"].tolist())  # missing and empty geometries are not indexed
    for fid, shape in zip(with_shape["fid"], with_shape.geometry, strict=True):
        minx, miny, maxx, maxy = shape.bounds
        low_x, high_x, low_y, high_y = indexed[fid]
        assert low_x <= minx and high_x >= maxx and low_y <= miny and high_y >= maxy
        # as tight as 32-bit floats allow: one step outward at most
        assert np.float32(low_x) >= np.nextafter(np.float32(minx), np.float32(-np.inf))
        assert np.float32(high_y) <= np.nextafter(np.float32(maxy), np.float32(np.inf))


def test_coordinates_between_two_32_bit_floats_are_rounded_outward():
    box = np.array([[104.1, 104.1, 52.3, 52.3], [1.0, 2.0, -3.0, 3.0], [-0.1, 1e-8, -1e-8, 0.1]])
    rounded = float32_outward(box).astype(np.float64)
    assert (rounded[:, [0, 2]] <= box[:, [0, 2]]).all() and (rounded[:, [1, 3]] >= box[:, [1, 3]]).all()
    assert rounded[1].tolist() == [1.0, 2.0, -3.0, 3.0]  # exact values stay


def test_the_index_is_registered_and_triggered_as_gdal_registers_and_triggers_its_own(tmp_path):
    frame = mixed_frame(300)
    ours = index_ours(frame, tmp_path / "ours.gpkg")
    gdal = write_without_index(frame, tmp_path / "gdal.gpkg", spatial_index="YES")
    for sql in (
        "SELECT * FROM gpkg_extensions ORDER BY extension_name",
        "SELECT name, sql FROM sqlite_master WHERE name LIKE 'rtree%' ORDER BY name",
    ):
        assert rows(ours, sql) == rows(gdal, sql)
    assert pyogrio.read_info(ours, layer="t")["capabilities"]["fast_spatial_filter"]


def test_gdal_finds_by_box_what_a_scan_finds(tmp_path):
    frame = mixed_frame(2_000)
    path = index_ours(frame, tmp_path / "ours.gpkg")
    rng = np.random.default_rng(9)
    for _ in range(25):
        x, y = 104 + rng.random() * 0.3, 52 + rng.random() * 0.3
        window = (x, y, x + 0.02, y + 0.01)
        found = pyogrio.read_dataframe(path, layer="t", bbox=window, fid_as_index=True)
        expected = frame[frame.geometry.intersects(shapely.box(*window))]  # missing and empty: never
        assert sorted(found["n"]) == sorted(expected["n"])


@GDAL_36
def test_gdal_36_edits_keep_the_tree_right(tmp_path):
    frame = mixed_frame(500)
    path = index_ours(frame, tmp_path / "ours.gpkg")
    first, second = (int(f) for f in frame["fid"].iloc[[10, 20]])
    for sql in (
        f"DELETE FROM t WHERE fid = {first}",
        f"UPDATE t SET geom = (SELECT geom FROM t WHERE fid = {int(frame['fid'].iloc[0])}) WHERE fid = {second}",
    ):
        result = subprocess.run(["ogrinfo", str(path), "-sql", sql], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and "ERROR" not in result.stderr, result.stderr
    assert rows(path, "SELECT rtreecheck('rtree_t_geom')") == [("ok",)]
    assert rows(path, "SELECT count(*) FROM rtree_t_geom WHERE id = ?", first) == [(0,)]
    moved = rows(path, "SELECT minx, miny FROM rtree_t_geom WHERE id = ?", second)[0]
    x, y = frame.geometry.iloc[0].x, frame.geometry.iloc[0].y
    assert abs(moved[0] - x) < 1e-5 and abs(moved[1] - y) < 1e-5


def test_a_published_layer_carries_the_bulk_index_and_leaves_no_scratch_file(tmp_path):
    path = publish_geopackage(repairs_frame(120), REPAIRS, tmp_path / "repairs.gpkg")
    assert rows(path, "SELECT rtreecheck('rtree_repairs_geom')") == [("ok",)]
    assert rows(path, "SELECT count(*) FROM rtree_repairs_geom") == [(120,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repairs.gpkg"]


def test_a_failed_index_fails_the_publication_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "repairs.gpkg"
    publish_geopackage(repairs_frame(3), REPAIRS, target)
    before = target.read_bytes()
    # the scratch file's place is taken by a folder: the index thread cannot write it
    real = Path.with_name

    def taken(self, name):
        place = real(self, name)
        if name.endswith(".part.gpkg-rtree"):
            place.mkdir(exist_ok=True)
            (place / "x").write_text("in the way")
        return place

    monkeypatch.setattr(Path, "with_name", taken)
    with pytest.raises(PublicationError) as raised:
        publish_geopackage(repairs_frame(5, offset=100), REPAIRS, target)
    monkeypatch.undo()
    assert str(target) in str(raised.value) and "\n" not in str(raised.value)
    assert target.read_bytes() == before
    assert stable_fid("repairs", "P-100") not in {r[0] for r in rows(target, "SELECT fid FROM repairs")}
