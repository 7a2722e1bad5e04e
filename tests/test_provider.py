"""GeoPackageProvider against real contract GeoPackages written by pyogrio, through its public methods."""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import shapely
from pygeoapi.provider.base import ProviderConnectionError, ProviderItemNotFoundError, ProviderQueryError
from pygeoapi.util import CrsTransformSpec, modify_pygeofilter
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.ecql import parse as parse_ecql

from layers.catalog import load_catalog
from layers.timewindow import stored_text
from server.features.connections import POOL
from server.features.crs import CRS84, EPSG_URI, city_crs_uri, install_city_crs
from server.features.filter_parse import parse_cql2_text
from server.features.provider import FILTER_CONFORMANCE, GeoPackageProvider
from server.published import gpkg
from server.published.extents import read_table_extent

TABLE = "repairs"
PUBLIC = ["permit_id", "network", "address", "floors", "depth", "has_detour", "start_time", "end_time", "day"]
EXTENT = (103.95, 52.15, 104.55, 52.45)
BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)
COUNT = 400
EPSG_4326 = EPSG_URI.format(code=4326)
EPSG_3857 = EPSG_URI.format(code=3857)


# ---------------------------------------------------------------------- fixtures: contract GeoPackages


def stable_fid(record_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(f"{TABLE}\x1f{record_id}".encode(), digest_size=6).digest(), "big") or 1


def repairs_frame(seed: int = 1, count: int = COUNT) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"P-{seed}-{i:04d}" for i in range(count)]
    starts = [BASE_TIME + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 40, count)]
    ends = [
        s + timedelta(hours=int(d)) if d > 0 else None
        for s, d in zip(starts, rng.integers(-20, 24 * 10, count), strict=True)
    ]
    floors = pd.array([None if f == 0 else int(f) for f in rng.integers(0, 12, count)], dtype="Int64")
    detour = pd.array([None if v == 2 else bool(v) for v in rng.integers(0, 3, count)], dtype="boolean")
    streets = ["ул. Ленина", "ул. Карла Маркса", "улица Ленина", "Байкальская ул.", "ул._Ленина", None]
    x = rng.uniform(EXTENT[0], EXTENT[2], count)
    y = rng.uniform(EXTENT[1], EXTENT[3], count)
    # points exactly on and a hair outside the edges of the bbox the tests use most: the R-tree stores
    # float32 envelopes, so only the exact test tells these apart
    x[:4] = [104.2, 104.3, 104.3 + 1e-7, 104.2 - 1e-7]
    y[:4] = [52.25, 52.35, 52.3, 52.3]
    return gpd.GeoDataFrame(
        {
            "fid": np.array([stable_fid(i) for i in ids], dtype="int64"),
            "permit_id": ids,
            "network": rng.choice(["heat", "water", "gas", "power"], count),
            "address": [
                None if s is None else f"{s}, {n}"
                for s, n in zip(rng.choice(streets, count), range(count), strict=True)
            ],
            "floors": floors,
            "depth": np.where(rng.random(count) < 0.1, np.nan, rng.uniform(0.5, 4.0, count).round(2)),
            "has_detour": detour,
            "start_time": pd.to_datetime(starts, utc=True),
            "end_time": pd.to_datetime(ends, utc=True),
            "day": [s.date().isoformat() for s in starts],
            "contractor_phone": [f"+7 3952 {i:06d}" for i in range(count)],
        },
        geometry=shapely.points(x, y),
        crs="EPSG:4326",
    )


def write_gpkg(frame: gpd.GeoDataFrame, path: Path, table: str = TABLE) -> Path:
    """As the pipeline publishes: written beside, swapped in with one rename."""
    partial = path.with_name(f".{path.stem}.part.gpkg")
    pyogrio.write_dataframe(
        frame,
        partial,
        layer=table,
        driver="GPKG",
        dataset_options={"VERSION": "1.2"},
        layer_options={"FID": "fid", "GEOMETRY_NAME": "geom", "SPATIAL_INDEX": "YES"},
    )
    os.replace(partial, path)
    return path


def definition(path: Path, **overrides) -> dict:
    provider = {
        "name": "server.features.provider.GeoPackageProvider",
        "type": "feature",
        "data": str(path),
        "table": TABLE,
        "id_field": "fid",
        "time_field": "start_time",
        "time_end_field": "end_time",
        "properties": list(PUBLIC),
        "storage_crs": CRS84,
    }
    provider.update(overrides)
    return provider


@pytest.fixture(scope="module")
def frame() -> gpd.GeoDataFrame:
    return repairs_frame()


@pytest.fixture(scope="module")
def layer(tmp_path_factory, frame) -> Path:
    return write_gpkg(frame, tmp_path_factory.mktemp("published") / f"{TABLE}.gpkg")


@pytest.fixture
def provider(layer) -> GeoPackageProvider:
    return GeoPackageProvider(definition(layer))


def everything(provider: GeoPackageProvider, **query) -> list[dict]:
    """All matching features, fetched page by page the way clients walk them."""
    features, offset = [], 0
    while True:
        page = provider.query(offset=offset, limit=53, **query)["features"]
        features.extend(page)
        if len(page) < 53:
            return features
        offset += 53


def ids(features: list[dict]) -> list[int]:
    return [f["id"] for f in features]


def expected(frame: gpd.GeoDataFrame, mask) -> list[int]:
    return sorted(frame.loc[mask, "fid"].tolist())


# ---------------------------------------------------------------------- GeoPackage geometry blobs


def blob(geometry, *, envelope: int = 0, big_endian: bool = False, empty: bool = False, srs_id: int = 4326) -> bytes:
    order = ">" if big_endian else "<"
    flags = (envelope << 1) | (0 if big_endian else 1) | (0b1_0000 if empty else 0)
    minx, miny, maxx, maxy = geometry.bounds if not geometry.is_empty else (0, 0, 0, 0)
    values = {0: (), 1: (minx, maxx, miny, maxy), 2: (minx, maxx, miny, maxy, 0.0, 9.0)}[envelope]
    header = (
        b"GP" + bytes([0, flags]) + struct.pack(order + "i", srs_id) + struct.pack(f"{order}{len(values)}d", *values)
    )
    return header + shapely.to_wkb(geometry, byte_order=0 if big_endian else 1)


def test_header_without_envelope_is_8_bytes_as_gdal_writes_points(layer):
    with sqlite3.connect(layer) as connection:
        (raw,) = connection.execute(f'SELECT geom FROM "{TABLE}" LIMIT 1').fetchone()
    header = gpkg.parse_header(raw)
    assert (header.srs_id, header.envelope, header.empty, header.wkb_offset) == (4326, None, False, 8)
    assert gpkg.to_shapely(raw).geom_type == "Point"


@pytest.mark.parametrize("envelope, offset", [(0, 8), (1, 40), (2, 56)])
@pytest.mark.parametrize("big_endian", [False, True])
def test_envelope_length_follows_the_flags(envelope, offset, big_endian):
    line = shapely.LineString([(104.1, 52.2), (104.3, 52.4)])
    raw = blob(line, envelope=envelope, big_endian=big_endian)
    header = gpkg.parse_header(raw)
    assert header.wkb_offset == gpkg.wkb_offset(raw) == offset
    if envelope:
        assert header.envelope[:4] == (104.1, 104.3, 52.2, 52.4)
    assert gpkg.to_shapely(raw).equals(line)


def test_empty_and_null_geometries_are_none():
    empty = blob(shapely.Point(), empty=True)
    assert gpkg.parse_header(empty).empty
    assert gpkg.to_shapely(empty) is None and gpkg.to_shapely(None) is None
    many = gpkg.to_shapely_many([None, empty, blob(shapely.Point(1, 2))])
    assert many[0] is None and many[1] is None and many[2].equals(shapely.Point(1, 2))


@pytest.mark.parametrize("big_endian", [False, True])
def test_a_page_of_points_is_read_as_geos_reads_it(big_endian):
    """gpkg.points_xy (a page of points without GEOS) gives what to_shapely_many gives, or None for anything else."""
    points = [shapely.Point(104.123456789012, 52.1), shapely.Point(-0.0, 1e-300)]
    blobs = [None, blob(shapely.Point(), empty=True), *(blob(p, big_endian=big_endian) for p in points)]
    expected = [None, None, *(shape.coords[0] for shape in gpkg.to_shapely_many(blobs)[2:])]
    assert gpkg.points_xy(blobs) == expected
    plain = [None, *(shapely.to_wkb(p, byte_order=0 if big_endian else 1) for p in points)]
    assert gpkg.wkb_points_xy(plain) == [None, *(p.coords[0] for p in points)]
    for other in (shapely.Point(1, 2, 3), shapely.LineString([(0, 0), (1, 1)]), shapely.MultiPoint([(0, 0)])):
        assert gpkg.points_xy([blob(points[0]), blob(other)]) is None
        assert gpkg.wkb_points_xy([shapely.to_wkb(other)]) is None
    assert gpkg.wkb_points_xy([shapely.to_wkb(shapely.Point())]) is None  # POINT EMPTY: GEOS says empty


def test_every_29_byte_point_blob_is_read_as_geos_reads_it_or_left_to_it():
    """points_xy reads a point as GDAL writes one (29 bytes: no envelope, little-endian) with one unpack: whatever
    else a 29-byte blob holds (a big-endian WKB after a little-endian header, a non-finite coordinate, another
    version byte) is the general way's, which gives GEOS's coordinates or leaves the page to GEOS (None)."""
    point = shapely.Point(104.25, 52.3)
    little = blob(point)
    assert len(little) == 29 and gpkg.points_xy([little]) == [(104.25, 52.3)]
    mixed = little[:8] + shapely.to_wkb(point, byte_order=0)  # header little-endian, WKB big-endian
    assert gpkg.points_xy([mixed]) == [gpkg.to_shapely(mixed).coords[0]] == [(104.25, 52.3)]
    versioned = little[:2] + b"\x01" + little[3:]  # a version byte no GeoPackage writes: read as before
    assert gpkg.points_xy([versioned]) == [(104.25, 52.3)]
    for x in (math.nan, math.inf, -math.inf):
        odd = little[:13] + struct.pack("<dd", x, 52.3)
        assert gpkg.points_xy([little, odd]) is None


def test_a_bbox_is_read_from_its_wkb_as_geos_reads_it():
    """The spatial test reads a rectangle's corners from its WKB; exactly what GEOS's judgement gives, or None."""
    from server.published.layer import _rectangle, wkb_rectangle

    rng = random.Random(7)
    for _ in range(2000):
        x, y = rng.uniform(-180, 180), rng.uniform(-90, 90)
        w, h = rng.choice([0.0, rng.random()]), rng.choice([0.0, rng.random()])
        shapes = [
            shapely.box(x, y, x + w, y + h),
            shapely.box(x, y, x + w, y + h, ccw=False),
            shapely.Polygon([(x, y), (x + w, y + h), (x + w, y), (x, y + h)]),  # a bow tie
            shapely.Point(x, y).buffer(1, 1),  # a diamond
            shapely.Polygon(
                [(x, y), (x + 1, y), (x + 1, y + 1), (x, y + 1)],
                [[(x + 0.2, y + 0.2), (x + 0.3, y + 0.2), (x + 0.3, y + 0.3), (x + 0.2, y + 0.2)]],
            ),
        ]
        for shape in shapes:
            for order in (0, 1):
                wkb = shapely.to_wkb(shape, byte_order=order)
                found = wkb_rectangle(wkb)
                if found is not None:
                    assert found == tuple(_rectangle(shapely.from_wkb(wkb)))
                elif shapely.get_num_coordinates(shape) == 5 and shape.is_valid:
                    assert _rectangle(shapely.from_wkb(wkb)) is None


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"XX\x00\x01\xe6\x10\x00\x00", "magic"),
        (b"GP\x00\x21\xe6\x10\x00\x00", "extended"),
        (b"GP\x00\x0b\xe6\x10\x00\x00", "indicator"),
        (b"GP\x00\x03\xe6\x10\x00\x00\x00", "truncated"),
        (b"GP", "magic"),
    ],
)
def test_malformed_blobs_are_refused_with_a_reason(raw, message):
    with pytest.raises(gpkg.GeometryBlobError, match=message):
        gpkg.parse_header(raw)


# ---------------------------------------------------------------------- construction, schema, features


def test_constructing_reads_nothing(tmp_path):
    provider = GeoPackageProvider(definition(tmp_path / "not-published-yet.gpkg"))
    with pytest.raises(ProviderConnectionError):
        provider.query()


def test_the_public_field_list_is_required(layer):
    provider_def = definition(layer)
    del provider_def["properties"]
    with pytest.raises(ProviderConnectionError, match="properties"):
        GeoPackageProvider(provider_def)


def test_fields_are_the_exposed_ones_with_json_types(provider):
    fields = provider.get_fields()
    assert list(fields) == PUBLIC
    assert fields["permit_id"] == {"type": "string"}
    assert fields["floors"] == {"type": "integer"}
    assert fields["depth"] == {"type": "number"}
    assert fields["has_detour"] == {"type": "boolean"}
    assert fields["start_time"] == {"type": "string", "format": "date-time"}
    fields["floors"]["x-ogc-role"] = "id"  # pygeoapi decorates what it gets: no effect on the next call
    assert provider.fields["floors"] == {"type": "integer"}
    media_type, schema = provider.get_schema()
    assert media_type == "application/geo+json" and list(schema["properties"]["properties"]["properties"]) == PUBLIC


def test_every_feature_has_every_public_property_typed_as_json(provider, frame):
    features = everything(provider)
    assert len(features) == COUNT
    assert all(list(f["properties"]) == PUBLIC for f in features)
    assert all("contractor_phone" not in json.dumps(f) for f in features)
    values = {name: {type(f["properties"][name]) for f in features} for name in PUBLIC}
    assert values["has_detour"] == {bool, type(None)}
    assert values["floors"] == {int, type(None)}
    assert values["end_time"] == {str, type(None)}
    by_id = {f["id"]: f for f in features}
    row = frame.iloc[5]
    feature = by_id[int(row.fid)]
    assert feature["properties"]["start_time"] == row.start_time.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert feature["geometry"]["type"] == "Point"
    assert feature["geometry"]["coordinates"] == pytest.approx((row.geometry.x, row.geometry.y))


def test_get_by_fid_and_404(provider, frame):
    fid = int(frame.fid.iloc[7])
    item = provider.get(fid)
    assert item["id"] == fid and item["properties"]["permit_id"] == frame.permit_id.iloc[7]
    assert provider.get(str(fid))["id"] == fid  # URLs carry text
    for unknown in (12345, "not-a-number", "1; DROP TABLE repairs"):
        with pytest.raises(ProviderItemNotFoundError):
            provider.get(unknown)


def test_item_id_may_be_the_layers_id_field(layer, frame):
    provider = GeoPackageProvider(definition(layer, id_field="permit_id"))
    item = provider.get(frame.permit_id.iloc[3])
    assert item["id"] == frame.permit_id.iloc[3] and item["properties"]["permit_id"] == item["id"]
    assert provider.query(limit=1)["features"][0]["id"].startswith("P-")
    with pytest.raises(ProviderItemNotFoundError):
        provider.get("P-nope")


def test_a_page_is_light_when_it_reads_few_rows_of_a_version_a_query_has_read(tmp_path, frame, monkeypatch):
    from server.features import provider as provider_module

    provider = GeoPackageProvider(definition(write_gpkg(frame, tmp_path / f"{TABLE}.gpkg")))
    small, city = [104.0, 52.2, 104.01, 52.21], list(EXTENT)
    assert not provider.light_page(small, 0, 10)  # this version's metadata is not read yet: it is not read now either
    provider.query(limit=1)
    monkeypatch.setattr(provider_module, "LIGHT_ROWS", COUNT // 4)
    assert provider.light_page(small, 0, 10)
    assert not provider.light_page(city, 0, 10)  # every candidate of the city is counted
    assert provider.light_page([], 0, 10)  # the count is the file's own, the page the first rows
    assert not provider.light_page([], COUNT // 2, 10)  # the rows before the offset are read
    assert not provider.light_page(small, 0, provider_module.LIGHT_LIMIT + 1)


def test_hits_count_without_features(provider):
    result = provider.query(resulttype="hits", datetime_="2026-11-10/2026-11-12")
    assert result["features"] == [] and result["numberMatched"] > 0


def test_select_properties_and_skip_geometry(provider):
    page = provider.query(limit=5, select_properties=["start_time", "network"], skip_geometry=True)["features"]
    assert all(list(f["properties"]) == ["network", "start_time"] and f["geometry"] is None for f in page)
    with pytest.raises(ProviderQueryError):
        provider.query(select_properties=["contractor_phone"])


# ---------------------------------------------------------------------- bbox


BBOXES = [
    (104.2, 52.25, 104.3, 52.35),
    (104.0, 52.2, 104.05, 52.22),
    (103.0, 51.0, 105.0, 53.0),
    (10.0, 10.0, 11.0, 11.0),
]


@pytest.mark.parametrize("bbox", BBOXES)
def test_bbox_matches_shapely_brute_force(provider, frame, bbox):
    truth = expected(frame, frame.geometry.intersects(shapely.box(*bbox)))
    result = provider.query(bbox=list(bbox), limit=1000)
    assert sorted(ids(result["features"])) == truth
    assert result["numberMatched"] == len(truth)


def test_bbox_edges_are_exact_not_float32(provider, frame):
    found = set(ids(provider.query(bbox=[104.2, 52.25, 104.3, 52.35], limit=1000)["features"]))
    on_edge, outside = frame.fid.iloc[:2].tolist(), frame.fid.iloc[2:4].tolist()
    assert set(on_edge) <= found and not set(outside) & found


def test_bbox_in_lat_lon_storage_order(layer, frame):
    """With storage_crs EPSG:4326 pygeoapi hands the bbox over in lat/lon order."""
    provider = GeoPackageProvider(definition(layer, storage_crs=EPSG_4326))
    minx, miny, maxx, maxy = BBOXES[0]
    found = provider.query(bbox=[miny, minx, maxy, maxx], limit=1000)["features"]
    assert sorted(ids(found)) == expected(frame, frame.geometry.intersects(shapely.box(*BBOXES[0])))


def test_bbox_on_lines_uses_the_exact_geometry(tmp_path):
    lines = gpd.GeoDataFrame(
        {"fid": [1, 2, 3], "name": ["diagonal", "outside", "crossing"]},
        geometry=[
            shapely.LineString([(104.0, 52.2), (104.4, 52.4)]),  # its envelope covers the bbox, the line misses it
            shapely.LineString([(104.5, 52.2), (104.54, 52.21)]),
            shapely.LineString([(104.35, 52.1), (104.35, 52.4)]),
        ],
        crs="EPSG:4326",
    )
    path = write_gpkg(lines, tmp_path / "closures.gpkg", table="closures")
    provider = GeoPackageProvider(definition(path, table="closures", properties=["name"], time_field=None))
    result = provider.query(bbox=[104.3, 52.2, 104.4, 52.25])
    assert ids(result["features"]) == [3] and result["numberMatched"] == 1
    assert ids(provider.query(bbox=[104.0, 52.15, 104.6, 52.45])["features"]) == [1, 2, 3]


def test_features_without_geometry_are_served_with_null(tmp_path):
    points = gpd.GeoDataFrame(
        {"fid": [1, 2, 3], "name": ["a", "no place", "c"]},
        geometry=[shapely.Point(104.1, 52.2), None, shapely.Point(104.2, 52.3)],
        crs="EPSG:4326",
    )
    path = write_gpkg(points, tmp_path / "places.gpkg", table="places")
    provider = GeoPackageProvider(definition(path, table="places", properties=["name"], time_field=None))
    features = provider.query()["features"]
    assert [f["geometry"] and f["geometry"]["coordinates"] for f in features] == [(104.1, 52.2), None, (104.2, 52.3)]
    assert provider.query(bbox=[104.0, 52.0, 105.0, 53.0])["numberMatched"] == 2


# ---------------------------------------------------------------------- datetime


def active(frame, start, end):
    """Active within [start, end]: started by its end, not ended before its start (NULL end = open)."""
    mask = pd.Series(True, index=frame.index)
    if end is not None:
        mask &= frame.start_time <= end
    if start is not None:
        mask &= frame.end_time.isna() | (frame.end_time >= start)
    return mask


@pytest.mark.parametrize(
    "parameter, start, end",
    [
        ("2026-11-10T10:00:00Z", "2026-11-10T10:00:00Z", "2026-11-10T10:00:00Z"),
        ("2026-11-10T18:00:00+08:00", "2026-11-10T10:00:00Z", "2026-11-10T10:00:00Z"),
        ("2026-11-10T00:00:00Z/2026-11-12T00:00:00Z", "2026-11-10T00:00:00Z", "2026-11-12T00:00:00Z"),
        ("../2026-11-05T00:00:00Z", None, "2026-11-05T00:00:00Z"),
        ("2026-12-05T00:00:00Z/..", "2026-12-05T00:00:00Z", None),
        ("/2026-11-05T00:00:00Z", None, "2026-11-05T00:00:00Z"),
        ("2026-11-10", "2026-11-10T00:00:00Z", "2026-11-10T23:59:59.999Z"),
        ("2026-11-10/2026-11-11", "2026-11-10T00:00:00Z", "2026-11-11T23:59:59.999Z"),
    ],
)
def test_datetime_means_active_within(provider, frame, parameter, start, end):
    start = pd.Timestamp(start) if start else None
    end = pd.Timestamp(end) if end else None
    truth = expected(frame, active(frame, start, end))
    result = provider.query(datetime_=parameter, limit=1000)
    assert sorted(ids(result["features"])) == truth
    assert result["numberMatched"] == len(truth)


def index_like_the_pipeline(path: Path) -> Path:
    """assets.publish indexes the id and time fields; the provider must answer the same with them."""
    with sqlite3.connect(path) as connection:
        for name in ("permit_id", "start_time", "end_time"):
            connection.execute(f'CREATE INDEX "idx_{TABLE}_{name}" ON "{TABLE}" ("{name}")')
    connection.close()
    return path


WINDOWS = ["2026-11-10", "2026-11-10/2026-11-12", "../2026-11-05", "2026-12-05/..", "2026-11-20T06:30:00Z"]


@pytest.mark.parametrize("parameter", WINDOWS)
def test_indexed_time_fields_give_the_same_answers(tmp_path, frame, parameter):
    plain = GeoPackageProvider(definition(write_gpkg(frame, tmp_path / "plain.gpkg")))
    indexed = GeoPackageProvider(definition(index_like_the_pipeline(write_gpkg(frame, tmp_path / f"{TABLE}.gpkg"))))
    for query in ({"datetime_": parameter}, {"datetime_": parameter, "properties": [("network", "gas")]}):
        expected_result = plain.query(limit=1000, **query)
        result = indexed.query(limit=1000, **query)
        assert result["numberMatched"] == expected_result["numberMatched"]
        assert ids(result["features"]) == ids(expected_result["features"])


def test_window_counts_stay_exact_when_a_feature_ends_before_it_starts(tmp_path):
    frame = repairs_frame(seed=5, count=120)
    frame.loc[:9, "end_time"] = frame.loc[:9, "start_time"] - pd.Timedelta(days=30)  # bad source data
    provider = GeoPackageProvider(definition(index_like_the_pipeline(write_gpkg(frame, tmp_path / f"{TABLE}.gpkg"))))
    windows = [
        ("2026-11-10/2026-11-12", "2026-11-10T00:00:00Z", "2026-11-12T23:59:59.999Z"),
        ("../2026-11-05T00:00:00Z", None, "2026-11-05T00:00:00Z"),
        ("2026-11-20T00:00:00Z/..", "2026-11-20T00:00:00Z", None),
    ]
    for parameter, start, end in windows:
        mask = active(frame, start and pd.Timestamp(start), end and pd.Timestamp(end))
        assert provider.query(datetime_=parameter)["numberMatched"] == int(mask.sum())


def test_a_versions_window_check_is_not_pushed_out_by_other_queries_counts(tmp_path):
    """Whether some feature ends before it starts is a fact of the file version, read once. Kept among the counts
    of queries (1,024 of them), a map's bbox requests pushed it out within a second, and every 5 s the read-ahead
    ran it again on the whole table (1M repairs: 0.2-0.3 s of CPU each time, seen with py-spy under bbox load)."""
    path = index_like_the_pipeline(write_gpkg(repairs_frame(seed=6, count=120), tmp_path / f"{TABLE}.gpkg"))
    provider = GeoPackageProvider(definition(path))
    provider.read_ahead()  # as the server's background thread does after a publication
    for i in range(1100):  # a map's pages: each a count of its own
        provider.query(bbox=[104.0 + i * 1e-5, 52.0, 104.0 + i * 1e-5 + 1e-6, 52.00001], limit=1)
    statements: list[str] = []
    with POOL.connection(str(path)) as (connection, _):  # the idle connection the next queries take (one thread)
        connection.set_trace_callback(statements.append)
    try:
        provider.read_ahead()
        provider.query(datetime_="2026-11-10/2026-11-12")
    finally:
        with POOL.connection(str(path)) as (connection, _):
            connection.set_trace_callback(None)
    assert any("end_time" in statement for statement in statements)  # the traced connection answered the window
    assert not [statement for statement in statements if statement.startswith("SELECT EXISTS")]


def test_open_ended_features_stay_active(provider, frame):
    late = provider.query(datetime_="2027-06-01T00:00:00Z", limit=1000)["features"]
    assert late and all(f["properties"]["end_time"] is None for f in late)
    assert len(late) == frame.end_time.isna().sum()


def test_dates_are_local_days_when_a_timezone_is_given(layer, frame):
    provider = GeoPackageProvider(definition(layer, timezone="Asia/Irkutsk"))
    start, end = pd.Timestamp("2026-11-09T16:00:00Z"), pd.Timestamp("2026-11-10T15:59:59.999Z")
    assert sorted(ids(provider.query(datetime_="2026-11-10", limit=1000)["features"])) == expected(
        frame, active(frame, start, end)
    )


def test_without_an_end_field_features_are_instants(layer, frame):
    provider = GeoPackageProvider(definition(layer, time_end_field=None))
    window = provider.query(datetime_="2026-11-10T00:00:00Z/2026-11-12T00:00:00Z", limit=1000)["features"]
    mask = (frame.start_time >= "2026-11-10T00:00:00Z") & (frame.start_time <= "2026-11-12T00:00:00Z")
    assert sorted(ids(window)) == expected(frame, mask)


@pytest.mark.parametrize("parameter", ["yesterday", "2026-13-01", "2026-11-12/2026-11-10", "../..", "a/b/c"])
def test_unreadable_datetime_is_a_400(provider, parameter):
    with pytest.raises(ProviderQueryError) as caught:
        provider.query(datetime_=parameter)
    assert caught.value.http_status_code == 400 and caught.value.message != "query error (check logs)"


# ---------------------------------------------------------------------- property filters, q, sortby


def test_property_filters_are_typed(provider, frame):
    cases = [
        ([("network", "gas")], frame.network == "gas"),
        ([("floors", "3")], frame.floors == 3),
        ([("has_detour", "true")], frame.has_detour.fillna(False).astype(bool)),
        ([("network", "gas"), ("has_detour", "false")], (frame.network == "gas") & (frame.has_detour == False)),  # noqa: E712
    ]
    for properties, mask in cases:
        result = provider.query(properties=properties, limit=1000)
        assert sorted(ids(result["features"])) == expected(frame, mask.fillna(False).astype(bool))
        assert result["numberMatched"] == int(mask.fillna(False).sum())


@pytest.mark.parametrize("properties", [[("floors", "three")], [("contractor_phone", "+7")], [("has_detour", "yes")]])
def test_bad_property_filters_are_400(provider, properties):
    with pytest.raises(ProviderQueryError) as caught:
        provider.query(properties=properties)
    assert caught.value.http_status_code == 400


def test_q_searches_public_text_ignoring_case(provider, frame):
    found = provider.query(q="ЛЕНИНА", limit=1000)
    truth = frame.address.fillna("").str.casefold().str.contains("ленина", regex=False)
    assert sorted(ids(found["features"])) == expected(frame, truth)
    assert provider.query(q="+7 3952")["numberMatched"] == 0  # the phone is internal


@pytest.mark.parametrize("order", ["+", "-"])
def test_sortby_with_nulls_and_deep_paging(provider, frame, order):
    sortby = [{"property": "floors", "order": order}, {"property": "start_time", "order": "-"}]
    walked = everything(provider, sortby=sortby)
    keys = [(f["properties"]["floors"], f["properties"]["start_time"], f["id"]) for f in walked]
    ascending = order == "+"
    nulls = [k for k in keys if k[0] is None]
    values = [k for k in keys if k[0] is not None]
    assert keys == (nulls + values if ascending else values + nulls)  # SQLite: NULL lowest
    assert [k[0] for k in values] == sorted((k[0] for k in values), reverse=not ascending)
    for a, b in zip(keys, keys[1:], strict=False):
        if a[0] == b[0]:
            assert (a[1], -a[2]) >= (b[1], -b[2])  # then newest start first, then fid
    assert sorted(k[2] for k in keys) == sorted(frame.fid)


def test_sortby_hidden_field_is_refused(provider):
    with pytest.raises(ProviderQueryError):
        provider.query(sortby=[{"property": "contractor_phone", "order": "+"}])


# ---------------------------------------------------------------------- CQL2


def cql(provider, node, **query):
    # exactly what pygeoapi does with a parsed filter before handing it to the provider
    node = modify_pygeofilter(node, filter_crs_uri=CRS84, storage_crs_uri=provider.storage_crs)
    return provider.query(filterq=node, limit=1000, **query)


TEXT_CASES = [
    ("network = 'gas'", lambda f: f.network == "gas"),
    ("network <> 'gas' AND floors >= 5", lambda f: (f.network != "gas") & (f.floors >= 5)),
    ("floors < 3 OR depth > 3.5", lambda f: (f.floors < 3) | (f.depth > 3.5)),
    ("NOT (network = 'gas')", lambda f: f.network != "gas"),
    ("floors BETWEEN 2 AND 4", lambda f: f.floors.between(2, 4)),
    ("network IN ('gas', 'heat')", lambda f: f.network.isin(["gas", "heat"])),
    ("network NOT IN ('gas', 'heat')", lambda f: ~f.network.isin(["gas", "heat"])),
    ("floors IS NULL", lambda f: f.floors.isna()),
    ("end_time IS NOT NULL", lambda f: f.end_time.notna()),
    ("has_detour = TRUE", lambda f: f.has_detour == True),  # noqa: E712
    ("address LIKE 'ул. Ленина%'", lambda f: f.address.str.startswith("ул. Ленина")),
    ("address LIKE 'ул_Ленина%'", lambda f: f.address.str.match(r"^ул.Ленина")),
    ("address LIKE '%ЛЕНИНА%'", lambda f: f.address.str.contains("ЛЕНИНА", regex=False)),
    ("address ILIKE '%ЛЕНИНА%'", lambda f: f.address.str.casefold().str.contains("ленина", regex=False)),
    ("address LIKE 'ул\\_Ленина%'", lambda f: f.address.str.startswith("ул_Ленина")),
    ("start_time > TIMESTAMP('2026-11-20T00:00:00Z')", lambda f: f.start_time > "2026-11-20T00:00:00Z"),
    ("start_time >= '2026-11-20T08:00:00+08:00'", lambda f: f.start_time >= "2026-11-20T00:00:00Z"),
    ("day = '2026-11-03'", lambda f: f.day == "2026-11-03"),
    ("floors * 2 > 10", lambda f: f.floors * 2 > 10),
]


@pytest.mark.parametrize("text, truth", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_cql2_text(provider, frame, text, truth):
    mask = truth(frame).fillna(False).astype(bool)
    try:
        node = parse_ecql(text)  # the parser pygeoapi 0.21 uses for filter=
    except Exception:  # noqa: BLE001 - ECQL lacks some CQL2 syntax; our parser helper covers it
        node = parse_cql2_text(text)
    result = cql(provider, node)
    assert sorted(ids(result["features"])) == expected(frame, mask)
    assert result["numberMatched"] == int(mask.sum())


CQL2_ONLY = [
    ("CASEI(address) LIKE CASEI('%ЛЕНИНА%')", lambda f: f.address.str.casefold().str.contains("ленина", regex=False)),
    ("start_time < DATE('2026-11-05')", lambda f: f.start_time < "2026-11-05T00:00:00Z"),
    ("network = 'gas' AND floors > 4", lambda f: (f.network == "gas") & (f.floors > 4)),
    ('"network" = \'gas\' AND "floors" > "depth"', lambda f: (f.network == "gas") & (f.floors > f.depth)),
    (
        "S_INTERSECTS(geometry, BBOX(104.2, 52.25, 104.3, 52.35))",
        lambda f: f.geometry.intersects(shapely.box(*BBOXES[0])),
    ),
    ("S_INTERSECTS(geometry, POINT(104.2 52.25))", lambda f: f.geometry.intersects(shapely.Point(104.2, 52.25))),
    (
        "S_DISJOINT(geometry, BBOX(104.2, 52.25, 104.3, 52.35))",
        lambda f: ~f.geometry.intersects(shapely.box(*BBOXES[0])),
    ),
]


@pytest.mark.parametrize("text, truth", CQL2_ONLY, ids=[c[0] for c in CQL2_ONLY])
def test_cql2_text_through_the_cql2_parser(provider, frame, text, truth):
    mask = truth(frame).fillna(False).astype(bool)
    assert sorted(ids(cql(provider, parse_cql2_text(text))["features"])) == expected(frame, mask)


POLYGON = shapely.Polygon([(104.1, 52.2), (104.4, 52.22), (104.3, 52.4), (104.1, 52.2)])


def test_s_intersects_polygon_text_and_json(provider, frame):
    truth = expected(frame, frame.geometry.intersects(POLYGON))
    text = cql(provider, parse_cql2_text(f"S_INTERSECTS(geometry, {POLYGON.wkt})"))
    ecql = cql(provider, parse_ecql(f"INTERSECTS(geometry, {POLYGON.wkt})"))
    body = {"op": "s_intersects", "args": [{"property": "geometry"}, shapely.geometry.mapping(POLYGON)]}
    via_json = cql(provider, parse_cql2_json(json.dumps(body)))
    assert sorted(ids(text["features"])) == sorted(ids(ecql["features"])) == sorted(ids(via_json["features"])) == truth
    assert text["numberMatched"] == len(truth)


def test_spatial_predicates_under_or_and_not(provider, frame):
    inside = frame.geometry.intersects(POLYGON)
    node = parse_cql2_text(f"NOT S_INTERSECTS(geometry, {POLYGON.wkt}) OR network = 'gas'")
    assert sorted(ids(cql(provider, node)["features"])) == expected(frame, ~inside | (frame.network == "gas"))
    within = parse_cql2_text(f"S_WITHIN(geometry, {POLYGON.wkt}) AND floors > 3")
    assert sorted(ids(cql(provider, within)["features"])) == expected(frame, inside & (frame.floors > 3).fillna(False))


def test_filter_geometry_in_another_crs_is_transformed(layer, frame):
    """filter-crs=EPSG:3857: pygeoapi transforms the literal into the storage CRS (lat/lon for EPSG:4326)."""
    to_3857 = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:3857", always_xy=True)
    polygon_3857 = shapely.transform(POLYGON, lambda c: np.column_stack(to_3857.transform(c[:, 0], c[:, 1])))
    truth = frame.geometry.intersects(POLYGON)
    for storage in (CRS84, EPSG_4326):
        provider = GeoPackageProvider(definition(layer, storage_crs=storage))
        node = modify_pygeofilter(
            parse_cql2_text(f"S_INTERSECTS(geometry, {polygon_3857.wkt})"),
            filter_crs_uri=EPSG_3857,
            storage_crs_uri=storage,
        )
        # the transformed edges are not exactly straight in lon/lat: compare away from the boundary
        found = set(ids(provider.query(filterq=node, limit=1000)["features"]))
        core = set(expected(frame, frame.geometry.intersects(POLYGON.buffer(-1e-4))))
        hull = set(expected(frame, frame.geometry.intersects(POLYGON.buffer(1e-4))))
        assert core <= found <= hull and len(found) >= int(truth.sum()) - 2


def test_bbox_and_temporal_in_cql(provider, frame):
    bbox = cql(provider, parse_ecql("BBOX(geometry, 104.2, 52.25, 104.3, 52.35)"))
    assert sorted(ids(bbox["features"])) == expected(frame, frame.geometry.intersects(shapely.box(*BBOXES[0])))
    body = {
        "op": "t_intersects",
        "args": [{"property": "start_time"}, {"interval": ["2026-11-10T00:00:00Z", "2026-11-12T00:00:00Z"]}],
    }
    during = cql(provider, parse_cql2_json(json.dumps(body)))
    mask = (frame.start_time >= "2026-11-10T00:00:00Z") & (frame.start_time <= "2026-11-12T00:00:00Z")
    assert sorted(ids(during["features"])) == expected(frame, mask)
    box = {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": list(BBOXES[0])}]}
    assert sorted(ids(cql(provider, parse_cql2_json(json.dumps(box)))["features"])) == sorted(ids(bbox["features"]))
    after = cql(provider, parse_ecql("start_time AFTER 2026-12-01T00:00:00Z"))
    assert sorted(ids(after["features"])) == expected(frame, frame.start_time > "2026-12-01T00:00:00Z")


def test_cql2_json_comparisons(provider, frame):
    body = {
        "op": "and",
        "args": [
            {"op": "=", "args": [{"property": "network"}, "water"]},
            {
                "op": "or",
                "args": [
                    {"op": "isNull", "args": [{"property": "floors"}]},
                    {"op": ">", "args": [{"property": "floors"}, 8]},
                ],
            },
            {"op": "in", "args": [{"property": "has_detour"}, [True, False]]},
        ],
    }
    mask = (
        (frame.network == "water") & (frame.floors.isna() | (frame.floors > 8)).fillna(False) & frame.has_detour.notna()
    )
    assert sorted(ids(cql(provider, parse_cql2_json(json.dumps(body)))["features"])) == expected(
        frame, mask.astype(bool)
    )


def test_values_never_become_sql(provider, frame):
    for value in ["x' OR 1=1 --", 'gas" OR "1"="1', "gas'; DROP TABLE repairs; --"]:
        body = {"op": "=", "args": [{"property": "network"}, value]}
        assert cql(provider, parse_cql2_json(json.dumps(body)))["numberMatched"] == 0
        assert provider.query(properties=[("network", value)], q=value)["numberMatched"] == 0
    assert provider.query()["numberMatched"] == COUNT


@pytest.mark.parametrize(
    "text", ["contractor_phone = '+7'", "nosuch = 1", "DWITHIN(geometry, POINT(104 52), 10, meters)"]
)
def test_filters_on_hidden_or_unknown_things_are_400(provider, text):
    with pytest.raises(ProviderQueryError) as caught:
        cql(provider, parse_ecql(text))
    assert caught.value.http_status_code == 400


def test_declared_filter_conformance_names_the_classes_qgis_needs(provider):
    assert provider.FILTER_CONFORMANCE == FILTER_CONFORMANCE
    for name in ("filter", "features-filter"):
        assert f"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/{name}" in FILTER_CONFORMANCE
    for name in ("cql2-text", "cql2-json", "basic-cql2"):
        assert f"http://www.opengis.net/spec/cql2/1.0/conf/{name}" in FILTER_CONFORMANCE


# ---------------------------------------------------------------------- CRS


def spec(target: str) -> CrsTransformSpec:
    return CrsTransformSpec(source_crs_uri=CRS84, source_crs_wkt="", target_crs_uri=target, target_crs_wkt="")


def test_output_in_web_mercator_and_epsg_4326_axis_order(provider, frame):
    fid = int(frame.fid.iloc[10])
    x, y = frame.geometry.iloc[10].x, frame.geometry.iloc[10].y
    mercator = provider.get(fid, crs_transform_spec=spec(EPSG_3857))["geometry"]["coordinates"]
    assert mercator == pytest.approx(pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(x, y))
    lat_lon = provider.query(limit=400, crs_transform_spec=spec(EPSG_4326))["features"]
    assert {f["id"]: f for f in lat_lon}[fid]["geometry"]["coordinates"] == pytest.approx((y, x))


@pytest.fixture
def city_crs():
    """The catalog's local systems made resolvable by CRS URI (idempotent: the server does the same)."""
    catalog = load_catalog()
    yield catalog, install_city_crs({k: d.proj4 for k, d in catalog.city.crs.items()})


def test_output_in_the_city_msk_matches_the_pipelines_definition(provider, frame, city_crs):
    catalog, uris = city_crs
    assert uris == {"msk38-3": city_crs_uri("msk38-3")}
    to_msk = pyproj.Transformer.from_crs("OGC:CRS84", catalog.city.resolve_crs("msk38-3"), always_xy=True)
    fid = int(frame.fid.iloc[11])
    item = provider.get(fid, crs_transform_spec=spec(uris["msk38-3"]))
    expected_xy = to_msk.transform(frame.geometry.iloc[11].x, frame.geometry.iloc[11].y)
    assert item["geometry"]["coordinates"] == pytest.approx(expected_xy, abs=1e-3)  # millimetres: same towgs84
    # and in worker threads, which open their own PROJ context
    with ThreadPoolExecutor(2) as pool:
        again = pool.submit(provider.get, fid, crs_transform_spec=spec(uris["msk38-3"])).result()
    assert again["geometry"]["coordinates"] == pytest.approx(expected_xy, abs=1e-3)


# ---------------------------------------------------------------------- paging, counts, extents


@pytest.mark.parametrize(
    "query",
    [{}, {"datetime_": "2026-11-05/2026-11-25", "bbox": [104.0, 52.2, 104.5, 52.4]}, {"q": "ленина"}],
    ids=["all", "datetime+bbox", "q"],
)
def test_pages_concatenate_to_the_whole_set_in_any_request_order(provider, query):
    whole = provider.query(limit=1000, **query)
    limit = 23
    offsets = list(range(0, whole["numberMatched"] + limit, limit))
    random.Random(3).shuffle(offsets)  # cold jumps, repeated pages and neighbours hitting checkpoints
    pages = {o: provider.query(offset=o, limit=limit, **query) for o in offsets + offsets[:5]}
    walked = [f["id"] for o in sorted(pages) for f in pages[o]["features"]]
    assert walked == ids(whole["features"]) and len(set(walked)) == len(walked)
    assert all(p["numberMatched"] == whole["numberMatched"] for p in pages.values())


def test_offset_past_the_end_is_empty(provider):
    assert provider.query(offset=COUNT + 5, limit=10)["features"] == []


def test_extents_for_the_config(layer, frame):
    extent = read_table_extent(layer, TABLE, "start_time", "end_time")  # what the collections' extents read
    bbox, (tmin, tmax) = extent.bbox, (stored_text(extent.begin), extent.end)
    assert bbox == pytest.approx(frame.total_bounds.tolist())
    assert tmin == frame.start_time.min().strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert tmax is None  # some permits are open-ended
    last_start = stored_text(read_table_extent(layer, TABLE, "start_time", None).end)
    assert last_start == frame.start_time.max().strftime("%Y-%m-%dT%H:%M:%S.000Z")


# ---------------------------------------------------------------------- files: replacement, damage, threads


def test_a_republished_file_is_served_at_once(tmp_path):
    path = write_gpkg(repairs_frame(seed=1, count=50), tmp_path / f"{TABLE}.gpkg")
    provider = GeoPackageProvider(definition(path))
    before = provider.query(limit=10, offset=20)
    assert before["numberMatched"] == 50
    replacement = repairs_frame(seed=2, count=70)
    write_gpkg(replacement, path)
    after = GeoPackageProvider(definition(path)).query(limit=10, offset=20)
    assert after["numberMatched"] == 70
    assert all(f["properties"]["permit_id"].startswith("P-2-") for f in after["features"])
    assert set(ids(everything(provider))) == set(replacement.fid)


def test_replacing_the_file_under_running_queries_fails_none(tmp_path):
    path = write_gpkg(repairs_frame(seed=1, count=120), tmp_path / f"{TABLE}.gpkg")
    versions = [repairs_frame(seed=s, count=120 + s) for s in (2, 3, 4)]
    errors, done = [], threading.Event()

    def read() -> None:
        provider = GeoPackageProvider(definition(path))
        while not done.is_set():
            try:
                result = provider.query(limit=7, offset=35, bbox=[103.9, 52.1, 104.6, 52.5])
                prefixes = {f["properties"]["permit_id"].split("-")[1] for f in result["features"]}
                assert len(prefixes) == 1 and result["numberMatched"] >= 120  # one version per answer
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for frame in versions:
        write_gpkg(frame, path)
    done.set()
    for reader in readers:
        reader.join()
    assert errors == []


def thread_queries() -> list[dict]:
    """A mix of every kind of query, asked from many threads at once (here and over PostGIS)."""
    return [
        {"limit": 17, "offset": 40},
        {"bbox": [104.1, 52.2, 104.4, 52.4], "limit": 30},
        {"datetime_": "2026-11-10/2026-11-20", "limit": 25, "offset": 10},
        {"filterq": parse_ecql("network IN ('gas','water') AND floors > 2"), "limit": 50},
        {"sortby": [{"property": "start_time", "order": "-"}], "limit": 20, "offset": 100},
        {"q": "Ленина", "limit": 10, "crs_transform_spec": spec(EPSG_3857)},
    ]


def test_sixteen_threads_get_the_same_answers_as_one(provider):
    queries = thread_queries()
    truth = [json.dumps(provider.query(**q), sort_keys=True) for q in queries]

    def run(index: int) -> bool:
        shared = provider if index % 2 else GeoPackageProvider(provider_def=definition(Path(provider.path)))
        return all(
            json.dumps(shared.query(**q), sort_keys=True) == t
            for q, t in zip(queries, truth, strict=True)
            for _ in range(3)
        )

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(run, range(64)))


def test_missing_damaged_or_foreign_files_are_connection_errors(tmp_path, frame):
    damaged = tmp_path / "damaged.gpkg"
    damaged.write_bytes(b"this is not sqlite" * 100)
    other_table = write_gpkg(frame.head(5), tmp_path / "other.gpkg", table="other")
    for path in (tmp_path / "missing.gpkg", damaged, other_table):
        with pytest.raises(ProviderConnectionError):
            GeoPackageProvider(definition(path)).query()
