"""WZDx 4.0–4.2 and CWZ 1.0 feeds: every road-event property by dotted path, lists as JSON or joined
text, spot work zones, and the official WorkZoneFeed examples read with nothing lost."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from assets.records import SourceError
from layers.settings import PathSettings
from tests.conftest import SHARED_DATA
from tests.test_bad_input import build, make_city

EXAMPLES = SHARED_DATA / "wzdx" / "examples" / "WorkZoneFeed"
needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"WZDx examples not found at {EXAMPLES}")

# The examples lie in and around Des Moines, Iowa.
IOWA_CITY = """
name: {ru: Де-Мойн, en: Des Moines}
timezone: America/Chicago
extent: [-94.5, 41.0, -93.0, 42.5]
crs: {}
"""

WORK_ZONES_YAML = """
title: {ru: Дорожные работы, en: Work zones}
description: {ru: Все свойства WZDx, en: Every WZDx property}
domain: closures
geometry_type: {geometry_type}
id_field: event_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: event_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: event_type, type: string, title: {ru: Тип, en: Type}}
  - {name: direction, type: string, title: {ru: Направление, en: Direction}}
  - {name: road_names, type: string, title: {ru: Дороги, en: Roads}}
  - {name: lanes, type: string, title: {ru: Полосы, en: Lanes}}
  - {name: lane_status, type: string, title: {ru: Состояние полос, en: Lane status}}
  - {name: work_types, type: string, title: {ru: Виды работ, en: Types of work}}
  - {name: restrictions, type: string, title: {ru: Ограничения, en: Restrictions}}
  - {name: from_street, type: string, title: {ru: От улицы, en: From street}}
  - {name: to_street, type: string, title: {ru: До улицы, en: To street}}
  - {name: from_milepost, type: number, title: {ru: От км, en: From milepost}}
  - {name: from_reference_post, type: number, title: {ru: От столба, en: From reference post}}
  - {name: work_zone_type, type: string, title: {ru: Вид зоны, en: Work zone type}}
  - {name: location_method, type: string, title: {ru: Метод, en: Location method}}
  - {name: speed_limit, type: number, title: {ru: Скорость, en: Reduced speed limit}}
  - {name: workers_present, type: boolean, title: {ru: Рабочие, en: Workers present}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
sources:
  - path: feed.geojson
    format: wzdx
    columns:
      id: event_id
      event_type: event_type
      core_details.direction: direction
      road_names: road_names
      lanes: lanes
      lanes.status: lane_status
      types_of_work.type_name: work_types
      restrictions: restrictions
      beginning_cross_street: from_street
      ending_cross_street: to_street
      beginning_milepost: from_milepost
      beginning_reference_post: from_reference_post
      work_zone_type: work_zone_type
      location_method: location_method
      reduced_speed_limit_kph: speed_limit
      worker_presence.are_workers_present: workers_present
      start_date: start_time
      end_date: end_time
    join_lists: {lanes.status: ", ", types_of_work.type_name: ", "}
"""


def wzdx_city(tmp_path: Path, feed: dict | Path, geometry_type: str = "LineString") -> PathSettings:
    paths = make_city(tmp_path, {"works": WORK_ZONES_YAML.replace("{geometry_type}", geometry_type)})
    (paths.catalog_dir / "_city.yaml").write_text(textwrap.dedent(IOWA_CITY), encoding="utf-8")
    text = feed.read_text(encoding="utf-8") if isinstance(feed, Path) else json.dumps(feed)
    (paths.sample_dir / "feed.geojson").write_text(text, encoding="utf-8")
    return paths


def nothing_lost(result) -> None:
    """Every road event is published or rejected with a reason, and counted once."""
    rejected = {r.record for r in result.rejects}
    assert all(r.reason for r in result.rejects)
    assert result.counts.read == len(result.frame) + len(rejected), (result.counts, result.rejects)


@needs_examples
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.geojson")) if EXAMPLES.is_dir() else [])
def test_official_examples_publish_or_reject_every_event(tmp_path, example):
    feed = json.loads((EXAMPLES / example).read_text(encoding="utf-8"))
    result = build(wzdx_city(tmp_path, feed))
    nothing_lost(result)
    assert result.counts.read == len(feed["features"])
    if "multipoint" in example:  # start and end points only: no line to draw on a LineString layer
        assert {r.reason for r in result.rejects} == {"geometry type MultiPoint does not fit a LineString layer"}
    else:
        assert len(result.frame) == len(feed["features"]) and not result.rejects


@needs_examples
def test_every_property_by_dotted_path_lists_as_json_or_joined(tmp_path):
    feed = json.loads((EXAMPLES / "scenario6_multi_lane_closure_linestring_example.geojson").read_text("utf-8"))
    row = build(wzdx_city(tmp_path, feed)).frame.iloc[0]
    assert row.direction == "westbound"
    assert row.lane_status == "closed, closed, closed, open, open"  # joined: the catalog says so
    assert row.work_types == "surface-work"
    assert json.loads(row.restrictions) == [  # a list kept whole, as JSON text
        {"type": "reduced-width", "value": 16, "unit": "feet"},
        {"type": "reduced-weight", "value": 156000, "unit": "pounds"},
    ]
    assert [lane["status"] for lane in json.loads(row.lanes)] == ["closed", "closed", "closed", "open", "open"]
    assert row.from_milepost == 139.9 and row.speed_limit == 88.5
    assert row.workers_present is True or row.workers_present == True  # noqa: E712 - pandas boolean
    assert row.location_method == "channel-device-method" and row.road_names == "I-80"


def _feed(version: str, features: list[dict]) -> dict:
    return {
        "feed_info": {
            "publisher": "Test DOT",
            "update_date": "2026-11-20T00:00:00Z",
            "update_frequency": 60,
            "version": version,
            "license": "https://creativecommons.org/publicdomain/zero/1.0/",
            "data_sources": [{"data_source_id": "s1", "organization_name": "Test DOT"}],
        },
        "type": "FeatureCollection",
        "features": features,
    }


def _event(event_id: str, coordinates: list, **properties) -> dict:
    return {
        "id": event_id,
        "type": "Feature",
        "properties": {
            "core_details": {
                "data_source_id": "s1",
                "event_type": "work-zone",
                "road_names": ["I-35"],
                "direction": "northbound",
            },
            "start_date": "2026-11-20T08:00:00Z",
            "end_date": "2026-11-30T18:00:00Z",
            "vehicle_impact": "some-lanes-closed",
            "location_method": "channel-device-method",
            **properties,
        },
        "geometry": {"type": "LineString", "coordinates": coordinates},
    }


LINE = [[-93.60, 41.60], [-93.61, 41.61]]
SPOT = [[-93.62, 41.62], [-93.62, 41.62]]


def test_cwz_1_0_reads_like_wzdx(tmp_path):
    cwz = _event("c-1", LINE, beginning_reference_post=12.5, reference_post_unit="miles", work_zone_type="static")
    result = build(wzdx_city(tmp_path, _feed("1.0", [cwz])))
    nothing_lost(result)
    row = result.frame.iloc[0]
    assert (row.event_id, row.direction, row.from_reference_post, row.work_zone_type) == (
        "c-1",
        "northbound",
        12.5,
        "static",
    )


@pytest.mark.parametrize("version", ["3.1", "5.0", "2", ""])
def test_other_versions_are_one_line_errors(tmp_path, version):
    with pytest.raises(SourceError) as error:
        build(wzdx_city(tmp_path, _feed(version, [_event("e-1", LINE)])))
    assert "\n" not in str(error.value)
    assert "WZDx 4.0, 4.1, 4.2 or CWZ 1.0 expected" in str(error.value)


def test_a_property_the_feed_does_not_carry_is_empty_but_a_typo_is_named(tmp_path):
    # no event carries lanes or milepost: still mappable, empty
    result = build(wzdx_city(tmp_path, _feed("4.2", [_event("e-1", LINE)])))
    assert result.frame.iloc[0].lanes is None and len(result.frame) == 1
    (tmp_path / "typo").mkdir()
    paths = wzdx_city(tmp_path / "typo", _feed("4.2", [_event("e-1", LINE)]))
    layer = paths.catalog_dir / "works.yaml"
    layer.write_text(layer.read_text("utf-8").replace("core_details.direction:", "core_detail.direction:"), "utf-8")
    with pytest.raises(SourceError, match=r"column\(s\) \['core_detail.direction'\] not found"):
        build(paths)


def test_a_spot_work_zone_is_a_point_on_a_point_layer(tmp_path):
    result = build(wzdx_city(tmp_path, _feed("4.2", [_event("spot", SPOT), _event("line", LINE)]), "Point"))
    nothing_lost(result)
    assert list(result.frame.event_id) == ["spot"]
    assert result.frame.geometry.iloc[0].wkt == "POINT (-93.62 41.62)"
    assert [r.reason for r in result.rejects] == ["geometry type LineString does not fit a Point layer"]
    assert result.counts.repaired == 1


def test_a_spot_work_zone_on_a_line_layer_is_rejected_with_the_true_reason(tmp_path):
    result = build(wzdx_city(tmp_path, _feed("4.2", [_event("spot", SPOT), _event("line", LINE)])))
    nothing_lost(result)
    assert list(result.frame.event_id) == ["line"]
    assert [(r.record, r.field, r.reason) for r in result.rejects] == [
        ("feature 1", "geometry", "a line of identical points (a spot)")
    ]
    assert result.counts.repaired == 0  # refused, not repaired
    assert not result.frame.geometry.is_empty.any()


@pytest.mark.parametrize(
    "text",
    ["{" * 100_000, "not json", '{"type": "FeatureCollection"}', "[]", '{"type": "FeatureCollection", "features": {}}'],
)
def test_a_malformed_feed_is_one_line(tmp_path, text):
    paths = wzdx_city(tmp_path, {})
    (paths.sample_dir / "feed.geojson").write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as error:
        build(paths)
    assert "\n" not in str(error.value) and str(error.value).startswith("feed.geojson: ")


def test_a_broken_feed_rejects_events_without_a_traceback(tmp_path):
    linked = _event("a", LINE)
    linked["properties"]["core_details"]["related_road_events"] = [{"type": "next-in-sequence", "id": ["b"]}, "x"]
    odd_id = _event("b", LINE)
    odd_id["id"] = ["b"]  # an id that is a list
    features = [linked, odd_id, "not a feature", {"type": "Feature", "properties": []}]
    result = build(wzdx_city(tmp_path, _feed("4.2", features)))
    nothing_lost(result)
    assert list(result.frame.event_id) == ["a", '["b"]']
    assert {r.record: r.reason for r in result.rejects} == {
        "feature 3": "road event without core_details",
        "feature 4": "road event without core_details",
    }
