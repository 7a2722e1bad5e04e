"""The other real data of the second-city work, each under a catalog of its own where it lies: the official
WZDx examples (USA) and the Moscow-region electoral districts (near Kaluga)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from layers.settings import PathSettings
from tests.conftest import SHARED_DATA
from tests.test_second_city import failures, materialize, metadata, published, rejects

US_CITY = """
name: {ru: Тестовый штат, en: Test state}
timezone: America/Chicago
extent: [-125.0, 24.0, -66.0, 50.0]
"""
WZDX_LAYER = """
title: {ru: Рабочие зоны, en: Work zones}
description: {ru: Официальные примеры WZDx, en: Official WZDx examples}
domain: closures
geometry_type: LineString
id_field: event_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: event_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: event_type, type: string, title: {ru: Тип, en: Type}}
  - {name: road, type: string, title: {ru: Дорога, en: Road}}
  - {name: direction, type: string, title: {ru: Направление, en: Direction}}
  - {name: lanes, type: string, title: {ru: Полосы, en: Lanes}}
  - {name: restrictions, type: string, title: {ru: Ограничения, en: Restrictions}}
  - {name: start_time, type: datetime, required: true, dates: {earliest: 2000-01-01}, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, dates: {earliest: 2000-01-01}, title: {ru: Конец, en: End}}
  - {name: example, type: string, title: {ru: Файл, en: File}}
sources:
  - path: wzdx/*.geojson
    format: wzdx
    date_format: iso
    source_field: example
    columns: {id: event_id, event_type: event_type, road_names: road, core_details.direction: direction,
              lanes: lanes, restrictions: restrictions, start_date: start_time, end_date: end_time}
"""


def write_city(base: Path, city: str, layers: dict[str, str]) -> PathSettings:
    catalog = base / "layers"
    catalog.mkdir(parents=True)
    (catalog / "_city.yaml").write_text(city, encoding="utf-8")
    for name, text in layers.items():
        (catalog / f"{name}.yaml").write_text(text, encoding="utf-8")
    (base / "sample").mkdir()
    return PathSettings(root=base, catalog_dir=catalog, sample_dir=base / "sample")


@pytest.mark.skipif(not (SHARED_DATA / "wzdx" / "examples").is_dir(), reason="the WZDx examples are not in shared data")
def test_official_wzdx_examples_every_event_published_or_rejected(tmp_path):
    paths = write_city(tmp_path, US_CITY, {"work_zones": WZDX_LAYER})
    examples = sorted((SHARED_DATA / "wzdx" / "examples" / "WorkZoneFeed").glob("*.geojson"))
    (paths.sample_dir / "wzdx").mkdir()
    events = 0
    for path in examples:
        shutil.copy(path, paths.sample_dir / "wzdx" / path.name)
        events += len(json.loads(path.read_text(encoding="utf-8"))["features"])
    result = materialize(paths)
    assert result.success, failures(result)
    meta = metadata(result, "work_zones")
    assert meta["published"] + meta["rejected"] == events == meta["read"]
    frame = published(paths, "work_zones")
    rejected_files = {r["source_file"] for r in rejects(paths, "work_zones")}
    # each file named on its events; scenario 1's MultiPoint zone does not fit a line layer: a reject
    assert set(frame.example) | rejected_files == {f"wzdx/{path.name}" for path in examples}
    assert "wzdx/scenario1_simple_multipoint_example.geojson" in rejected_files
    detour = frame[frame.event_type == "detour"]
    assert len(detour) >= 3  # scenario 4's three detour segments
    assert frame.direction.notna().all() and frame.lanes.str.startswith("[").any()


KALUGA = """
name: {ru: Калужская область (тест), en: Kaluga region (test)}
timezone: Europe/Moscow
extent: [35.5, 54.4, 36.6, 55.0]
"""
ELECTORAL = """
title: {ru: Избирательные округа, en: Electoral districts}
description: {ru: Округа из открытых данных, en: Districts dissolved from OpenStreetMap}
domain: zones
geometry_type: MultiPolygon
id_field: district_no
zone_topology: true
fields:
  - {name: district_no, type: integer, required: true, title: {ru: Номер, en: Number}}
  - {name: note, type: string, title: {ru: Примечание, en: Note}}
sources:
  - path: electoral_districts.geojson
    format: geojson
    columns: {electoral_district: district_no}
    joins:
      - path: data.csv
        format: csv
        match: {district_no: electoral_district}
        columns: {data: note}
"""
MOSCOW = SHARED_DATA / "moscow-test-01"


@pytest.mark.skipif(not MOSCOW.is_dir(), reason="moscow-test-01 is not in shared data")
@pytest.mark.parametrize("shift_m", [0, 300])
def test_moscow_region_districts_topology_in_square_metres(tmp_path, shift_m):
    """The real dissolved districts (near Kaluga, not Sofia: a catalog of their own) are a clean set;
    district 2 moved 300 m east overlaps its neighbours by the area an independent measure gives."""
    import geopandas as gpd

    paths = write_city(tmp_path, KALUGA, {"electoral_districts": ELECTORAL})
    shutil.copy(MOSCOW / "data.csv", paths.sample_dir / "data.csv")
    zones = gpd.read_file(MOSCOW / "electoral_districts_orig.geojson")
    if shift_m:
        metric = zones.to_crs(6933)  # equal-area, metres
        moved = metric.geometry.where(metric.electoral_district != "2", metric.geometry.translate(xoff=shift_m))
        zones = gpd.GeoDataFrame(zones.drop(columns="geometry"), geometry=moved, crs=6933).to_crs(4326)
    zones[["electoral_district", "geometry"]].to_file(
        paths.sample_dir / "electoral_districts.geojson", driver="GeoJSON"
    )
    result = materialize(paths)
    assert result.success, failures(result)
    frame = published(paths, "electoral_districts")
    assert sorted(frame.district_no) == [1, 2, 3, 4] and sorted(frame.note) == ["text1", "text2", "text3", "text4"]
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "zone_topology"]
    found = {key: value.value for key, value in check.metadata.items()}
    metric = zones.to_crs(6933).geometry.tolist()
    overlap_m2 = sum(
        metric[i].intersection(metric[j]).area for i in range(len(metric)) for j in range(i + 1, len(metric))
    )
    if not shift_m:
        assert check.passed and found["overlapping_pairs"] == 0 and found["gaps"] == 0
    else:
        assert not check.passed and found["overlapping_pairs"] >= 1 and found["gaps"] >= 1
        assert found["overlap_m2"] == pytest.approx(overlap_m2, rel=0.02)
