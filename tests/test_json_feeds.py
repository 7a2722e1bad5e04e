"""JSON record feeds (`format: json`): records at a path, fields by dotted path, geometry from flat
coordinate arrays, GeoJSON objects, WKT or lon/lat fields, times in epoch or ISO form; a bad record
is `record N` in the rejects, a bad document one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import shapely

from assets.records import SourceError
from assets.sources.json_records import read_json_records
from layers.catalog import load_catalog
from tests.test_bad_input import build, make_city

LAYER = """
title: {ru: Отключения, en: Outages}
description: {ru: Лента отключений, en: Outage feed}
domain: outages
geometry_type: {geometry_type}
id_field: outage_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: outage_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: address, type: string, title: {ru: Адрес, en: Address}}
  - {name: customers, type: integer, title: {ru: Абоненты, en: Customers}}
  - {name: causes, type: string, title: {ru: Причины, en: Causes}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Окончание, en: End}}
sources:
  - path: outages.json
    format: json
{source}
"""

# The shape of a real utility outage feed: an array of records, a polygon as a flat [lat, lng, …]
# list whose ring is not closed, times in epoch milliseconds.
OUTAGE_SOURCE = """
    date_format: epoch_ms
    columns: {id: outage_id, location.address: address, customersAffected: customers, causes: causes,
              startTime: start_time, etrTime: end_time}
    join_lists: {causes: "; "}
    geometry: {coordinates: polygon, kind: polygon, coordinate_order: lat_lon}
"""
RING = [52.280, 104.280, 52.285, 104.280, 52.285, 104.290, 52.280, 104.290]  # open: last ≠ first


def outage(number: int, **changes) -> dict:
    return {
        "id": f"OUT-{number}",
        "location": {"address": f"ул. Ленина, {number}", "district": "Кировский"},
        "customersAffected": 120 + number,
        "causes": ["weather", "equipment"],
        "startTime": 1667612760000,
        "etrTime": 1667641560000,
        "polygon": RING,
        **changes,
    }


def feed_city(tmp_path, records, source: str = OUTAGE_SOURCE, geometry_type: str = "MultiPolygon", text=None):
    layer = LAYER.replace("{geometry_type}", geometry_type).replace("{source}", source.strip("\n"))
    paths = make_city(tmp_path, {"works": layer})
    document = text if text is not None else json.dumps(records, ensure_ascii=False)
    (paths.sample_dir / "outages.json").write_text(document, encoding="utf-8")
    return paths


def test_an_outage_feed_of_flat_lat_lng_polygons_and_epoch_milliseconds(tmp_path):
    result = build(feed_city(tmp_path, [outage(1), outage(2)]))
    assert not result.rejects
    assert list(result.frame.outage_id) == ["OUT-1", "OUT-2"]
    first = result.frame.iloc[0]
    assert first.address == "ул. Ленина, 1" and first.customers == 121  # dotted path into an object
    assert first.causes == "weather; equipment"
    assert first.start_time == pd.Timestamp("2022-11-05T01:46:00Z")
    assert first.end_time == pd.Timestamp("2022-11-05T09:46:00Z")
    polygon = first.geometry.geoms[0]
    assert polygon.exterior.is_closed and len(polygon.exterior.coords) == 5  # the ring was closed
    assert polygon.exterior.coords[0] == (104.280, 52.280)  # lat_lon read as x = longitude


def test_each_bad_record_is_named_record_n(tmp_path):
    records = [
        outage(1),
        "not an object",
        outage(3, polygon=[52.28, 104.28, 52.29]),  # an odd count of numbers
        outage(4, startTime="вчера"),
        outage(5, polygon=None),
    ]
    result = build(feed_city(tmp_path, records))
    found = {r.record: (r.field, r.reason) for r in result.rejects}
    assert list(result.frame.outage_id) == ["OUT-1"]
    assert found["record 2"] == ("", "a record is not a JSON object")
    assert found["record 3"] == ("polygon", "unreadable geometry: 3 numbers: coordinates come in pairs")
    assert found["record 4"] == ("start_time", "not a date/time in the form epoch milliseconds")
    assert found["record 5"][0] == "geometry" and "no geometry" in found["record 5"][1]
    assert result.counts.read == 5 == len(result.frame) + len(found)


def test_records_at_a_path_with_geojson_geometry_and_iso_times(tmp_path):
    source = """
    records: data.items
    date_format: iso
    columns: {properties.id: outage_id, properties.start: start_time, properties.end: end_time}
    geometry: {geojson: location.geometry}
"""
    items = [
        {
            "properties": {"id": "A", "start": "2026-11-20T08:00:00+08:00", "end": "2026-11-30"},
            "location": {"geometry": {"type": "Point", "coordinates": [104.28, 52.28]}},
        },
        {
            "properties": {"id": "B", "start": "2026-11-21T10:00:00Z"},
            "location": {"geometry": {"type": "Point", "coordinates": "oops"}},
        },
    ]
    result = build(feed_city(tmp_path, {"data": {"items": items, "total": 2}}, source, "Point"))
    assert list(result.frame.outage_id) == ["A"]
    row = result.frame.iloc[0]
    assert row.start_time == pd.Timestamp("2026-11-20T00:00:00Z")
    # a bare date that ends an interval is the end of that local day (Irkutsk, UTC+8)
    assert row.end_time == pd.Timestamp("2026-11-30T15:59:59Z")
    assert row.geometry.equals(shapely.Point(104.28, 52.28))
    assert [(r.record, r.field) for r in result.rejects] == [("record 2", "location.geometry")]


@pytest.mark.parametrize(
    ("geometry", "fields"),
    [
        ("{wkt: shape}", {"shape": "POINT (104.28 52.28)"}),
        ("{x: pos.lng, y: pos.lat}", {"pos": {"lat": 52.28, "lng": 104.28}}),
        ("{coordinates: at, kind: point, coordinate_order: lat_lon}", {"at": [52.28, 104.28]}),
    ],
)
def test_wkt_lon_lat_fields_and_coordinate_pairs(tmp_path, geometry, fields):
    source = f"""
    date_format: epoch_s
    columns: {{id: outage_id, startTime: start_time}}
    geometry: {geometry}
"""
    records = [{"id": "P-1", "startTime": 1667612760, **fields}]
    result = build(feed_city(tmp_path, records, source, "Point"))
    assert not result.rejects
    assert result.frame.geometry.iloc[0].equals(shapely.Point(104.28, 52.28))
    assert result.frame.start_time.iloc[0] == pd.Timestamp("2022-11-05T01:46:00Z")


def test_a_repair_that_leaves_nothing_is_a_reject_not_a_repair(tmp_path):
    source = """
    date_format: epoch_ms
    columns: {id: outage_id, startTime: start_time}
    geometry: {geojson: area}
"""
    square = [[104.28, 52.28], [104.29, 52.28], [104.29, 52.29], [104.28, 52.28]]
    collapsed = [[104.28, 52.28], [104.29, 52.29], [104.28, 52.28], [104.28, 52.28]]  # a ring with no area
    records = [
        {"id": f"A-{n}", "startTime": 1667612760000, "area": {"type": "Polygon", "coordinates": [ring]}}
        for n, ring in enumerate([square, collapsed], start=1)
    ]
    result = build(feed_city(tmp_path, records, source))
    assert [(r.record, r.field) for r in result.rejects] == [("record 2", "geometry")]
    assert result.rejects[0].reason.startswith("repair left nothing: Too few points")
    assert result.counts.repaired == 0  # not counted as a repair (it used to be, then refused as "outside")
    assert list(result.frame.outage_id) == ["A-1"]


@pytest.mark.parametrize(
    ("text", "source", "message"),
    [
        ("not json at all", OUTAGE_SOURCE, "not a JSON document"),
        ("[" * 100_000, OUTAGE_SOURCE, "nested too deeply"),
        ('{"data": {}}', "    records: data.items\n" + OUTAGE_SOURCE, "no records at 'data.items'"),
        ('{"items": []}', OUTAGE_SOURCE, "expected an array of records: say where the records are"),
        ('{"data": {"items": 5}}', "    records: data.items\n" + OUTAGE_SOURCE, "found a JSON int"),
        (b"\xff\xfe{}", OUTAGE_SOURCE, "not utf-8 text"),
    ],
)
def test_a_malformed_document_is_one_line(tmp_path, text, source, message):
    paths = feed_city(tmp_path, None, source, text="")
    target = paths.sample_dir / "outages.json"
    target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(SourceError) as error:
        build(paths)
    assert message in str(error.value)
    assert "\n" not in str(error.value) and str(error.value).startswith("outages.json: ")


def test_a_mapped_path_no_record_has_is_named_but_an_empty_feed_is_no_error(tmp_path):
    with pytest.raises(SourceError, match=r"column\(s\) \['customersAffected'\] not found"):
        build(feed_city(tmp_path, [{k: v for k, v in outage(1).items() if k != "customersAffected"}]))
    (tmp_path / "empty").mkdir()
    paths = feed_city(tmp_path / "empty", [])
    spec = load_catalog(paths.catalog_dir)["works"].sources[0]
    with read_json_records(paths.sample_dir / "outages.json", "outages.json", spec) as table:
        assert {"id", "location.address", "polygon"} <= set(table.columns)
        assert list(table.records) == []


def test_a_huge_number_in_an_integer_field_is_a_reject_not_a_crash(tmp_path):
    result = build(feed_city(tmp_path, [outage(1), outage(2, customersAffected=1e308)]))
    assert list(result.frame.outage_id) == ["OUT-1"]
    assert [(r.record, r.field, r.reason) for r in result.rejects] == [("record 2", "customers", "not a whole number")]


def test_a_cp1251_export_reads_when_the_catalog_says_so(tmp_path):
    paths = feed_city(tmp_path, None, "    encoding: cp1251\n" + OUTAGE_SOURCE, text="")
    document = json.dumps([outage(1)], ensure_ascii=False).encode("cp1251")
    (paths.sample_dir / "outages.json").write_bytes(document)
    assert list(build(paths).frame.address) == ["ул. Ленина, 1"]
