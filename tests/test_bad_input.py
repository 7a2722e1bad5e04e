"""Bad input is normal: every broken file or record gives a clear message or a reject with its reason,
never a traceback, and the good records still publish."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import fiona
import pyogrio
import pytest
import shapely

from assets.ingest import build_layer, publish_layer
from assets.records import SourceError
from layers.catalog import CatalogError, load_catalog
from layers.settings import REPO_ROOT, PathSettings
from pipelines.factory import layer_asset
from pipelines.resources import GeoportalResource

HEADER = "Номер;Вид сетей;Начало;Окончание;WKT"
# A point in central Irkutsk in МСК-38 zone 3 (easting, northing) and one with the axes swapped.
GOOD_POINT = "POINT (3335093.2 384985.6)"
SWAPPED_POINT = "POINT (384985.6 3335093.2)"

WORKS_YAML = """
title: {ru: Работы, en: Works}
description: {ru: Тестовый слой, en: Test layer}
domain: repairs
geometry_type: Point
id_field: work_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: work_id, type: string, required: true, title: {ru: Номер, en: Number}}
  - {name: network, type: string, allowed: [heat, water], title: {ru: Сети, en: Network}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
sources:
  - path: works.csv
    format: csv
    encoding: cp1251
    delimiter: ";"
    crs: {crs}
    columns: {Номер: work_id, Вид сетей: network, Начало: start_time, Окончание: end_time}
    values: {network: {Теплосеть: heat, Водопровод: water}}
    geometry: {wkt: WKT}
"""

ZONES_YAML = """
title: {ru: Зоны, en: Zones}
description: {ru: Тестовые зоны, en: Test zones}
domain: zones
geometry_type: MultiPolygon
id_field: zone_no
zone_topology: true
fields:
  - {name: zone_no, type: integer, required: true, title: {ru: Номер, en: Number}}
  - {name: name, type: string, title: {ru: Имя, en: Name}}
sources:
  - path: zones.shp
    format: shapefile
    encoding: cp1251
    crs: msk38-3
    columns: {NO: zone_no, NAME: name}
"""


def make_city(tmp_path: Path, layers: dict[str, str]) -> PathSettings:
    """A temporary city with Irkutsk's city file and these layers (tests.any_city.make_city)."""
    from tests.any_city import make_city as city_with

    return city_with(tmp_path, (REPO_ROOT / "layers" / "_city.yaml").read_text(encoding="utf-8"), layers)


def works_city(tmp_path: Path, rows: list[str], encoding: str = "cp1251", crs: str = "msk38-3") -> PathSettings:
    paths = make_city(tmp_path, {"works": WORKS_YAML.replace("{crs}", crs)})
    (paths.sample_dir / "works.csv").write_bytes("\n".join([HEADER, *rows]).encode(encoding))
    return paths


def build(paths: PathSettings, layer: str = "works"):
    catalog = load_catalog(paths.catalog_dir)
    return build_layer(catalog[layer], catalog, paths)


def reasons(result) -> dict[str, str]:
    return {r.record: f"{r.field}: {r.reason}" for r in result.rejects}


def test_broken_quoting_rejects_only_that_row(tmp_path):
    result = build(
        works_city(
            tmp_path,
            [
                f"W-1;Теплосеть;01.11.2026;10.11.2026;{GOOD_POINT}",
                f'W-2;"Теплосеть;01.11.2026;10.11.2026;{GOOD_POINT}',
                f"W-3;Водопровод;02.11.2026;;{GOOD_POINT}",
            ],
        )
    )
    assert sorted(result.frame.work_id) == ["W-1", "W-3"]
    assert "unbalanced quotes" in reasons(result)["line 3"]


def test_a_stray_delimiter_is_named(tmp_path):
    result = build(works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;10.11.2026;{GOOD_POINT};лишнее"]))
    assert "expected 5 columns, found 6" in reasons(result)["line 2"]


@pytest.mark.parametrize("written_as", ["utf-8", "utf-8-sig"])
def test_wrong_encoding_is_detected_and_reported(tmp_path, written_as):
    result = build(works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;10.11.2026;{GOOD_POINT}"], encoding=written_as))
    assert list(result.frame.network) == ["heat"]
    assert any("declared encoding cp1251 does not fit" in w for w in result.warnings)


def test_unknown_crs_fails_when_the_catalog_loads(tmp_path):
    paths = works_city(tmp_path, [], crs="МСК-38")
    with pytest.raises(CatalogError, match=r"works.yaml: sources.0.crs: unknown CRS 'МСК-38'"):
        load_catalog(paths.catalog_dir)


def test_unknown_catalog_key_is_named(tmp_path):
    paths = works_city(tmp_path, [])
    path = paths.catalog_dir / "works.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "colour: red\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"works.yaml: colour: Extra inputs are not permitted"):
        load_catalog(paths.catalog_dir)


def test_invalid_empty_and_unreadable_geometries(tmp_path):
    result = build(
        works_city(
            tmp_path,
            [
                f"W-1;Теплосеть;01.11.2026;10.11.2026;{GOOD_POINT}",
                "W-2;Теплосеть;01.11.2026;10.11.2026;POINT EMPTY",
                "W-3;Теплосеть;01.11.2026;10.11.2026;POINT (3335093 зеро)",
                f"W-4;Теплосеть;01.11.2026;10.11.2026;{SWAPPED_POINT}",
                "W-5;Теплосеть;01.11.2026;10.11.2026;",
            ],
        )
    )
    assert list(result.frame.work_id) == ["W-1"]
    found = reasons(result)
    assert "empty geometry" in found["line 3"]
    assert "WKT: not valid WKT" in found["line 4"]
    assert "outside the city extent" in found["line 5"]
    assert "no geometry" in found["line 6"]


def test_self_intersecting_polygon_is_repaired_and_counted(tmp_path):
    paths = make_city(tmp_path, {"zones": ZONES_YAML})
    bowtie = shapely.Polygon([(3335000, 384900), (3335200, 385100), (3335200, 384900), (3335000, 385100)])
    square = shapely.box(3336000, 384000, 3336500, 384500)
    _write_shapefile(paths.sample_dir / "zones.shp", [(1, "Бантик", bowtie), (2, "Квадрат", square)])
    result = build(paths, "zones")
    assert result.counts.repaired == 1
    assert result.frame.geometry.is_valid.all() and len(result.frame) == 2


def test_end_before_start_and_bad_dates_and_values(tmp_path):
    result = build(
        works_city(
            tmp_path,
            [
                f"W-1;Теплосеть;10.11.2026;01.11.2026;{GOOD_POINT}",
                f"W-2;Теплосеть;31.02.2026;;{GOOD_POINT}",
                f"W-3;Ливнёвка;01.11.2026;;{GOOD_POINT}",
                f"W-4;Водопровод;01.11.2026;;{GOOD_POINT}",
            ],
        )
    )
    assert list(result.frame.work_id) == ["W-4"]
    found = reasons(result)
    assert found["line 2"].startswith("end_time: ends before it starts")
    assert found["line 3"].startswith("start_time: not a date/time")
    assert "not one of the allowed values" in found["line 4"]


def test_duplicate_ids_keep_the_first(tmp_path):
    result = build(
        works_city(
            tmp_path,
            [
                f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}",
                f"W-1;Водопровод;02.11.2026;;{GOOD_POINT}",
            ],
        )
    )
    assert list(result.frame.network) == ["heat"]
    assert "duplicate work_id 'W-1': first seen in works.csv line 2" in reasons(result)["line 3"]


def test_truncated_shapefile_keeps_the_readable_features(tmp_path):
    paths = make_city(tmp_path, {"zones": ZONES_YAML})
    boxes = [(n, f"Зона {n}", shapely.box(3335000 + n * 600, 384000, 3335500 + n * 600, 384500)) for n in range(1, 6)]
    shp = paths.sample_dir / "zones.shp"
    _write_shapefile(shp, boxes)
    with open(shp, "r+b") as handle:
        handle.truncate(100 + 3 * 136 + 60)  # header, three 136-byte polygon records, a cut fourth
    result = build(paths, "zones")
    assert sorted(result.frame.zone_no) == [1, 2, 3]
    assert {r.record for r in result.rejects} == {"feature 4", "feature 5"}


def test_shapefile_without_its_dbf_is_a_clear_error(tmp_path):
    paths = make_city(tmp_path, {"zones": ZONES_YAML})
    _write_shapefile(paths.sample_dir / "zones.shp", [(1, "Зона", shapely.box(3335000, 384000, 3335500, 384500))])
    (paths.sample_dir / "zones.dbf").unlink()
    with pytest.raises(SourceError, match=r"zones.shp: incomplete Shapefile: missing zones.dbf"):
        build(paths, "zones")


def test_empty_file_fails_the_asset_with_a_message_and_keeps_the_last_good_file(tmp_path):
    paths = works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}"])
    catalog = load_catalog(paths.catalog_dir)
    publish_layer(build_layer(catalog["works"], catalog, paths), paths)
    (paths.sample_dir / "works.csv").write_bytes(b"")
    resource = GeoportalResource.of(paths)
    result = dg.materialize([layer_asset(catalog["works"])], resources={"geoportal": resource}, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "works: works.csv: the file is empty" in failure.event_specific_data.error.message
    assert len(pyogrio.read_dataframe(paths.published_dir / "works.gpkg")) == 1


def test_not_a_workbook(tmp_path):
    paths = make_city(
        tmp_path,
        {
            "works": WORKS_YAML.replace("{crs}", "msk38-3").replace(
                "path: works.csv\n    format: csv", "path: works.xlsx\n    format: xlsx"
            )
        },
    )
    (paths.sample_dir / "works.xlsx").write_text("это не книга Excel", encoding="utf-8")
    with pytest.raises(SourceError, match=r"works.xlsx: not a readable XLSX workbook"):
        build(paths)


def _write_shapefile(path: Path, rows: list[tuple[int, str, shapely.Geometry]]) -> None:
    schema = {"geometry": "Polygon", "properties": {"NO": "int", "NAME": "str:40"}}
    with fiona.open(path, "w", driver="ESRI Shapefile", schema=schema, encoding="cp1251") as sink:
        for number, name, geometry in rows:
            sink.write({"geometry": shapely.geometry.mapping(geometry), "properties": {"NO": number, "NAME": name}})


def test_undecodable_bytes_reject_only_their_row(tmp_path):
    paths = works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}"])
    with open(paths.sample_dir / "works.csv", "ab") as handle:  # 0x98 is the one byte cp1251 leaves undefined
        handle.write(
            b"\nW-2;\x98;01.11.2026;;"
            + GOOD_POINT.encode()
            + b"\nW-3;"
            + "Водопровод".encode("cp1251")
            + b";02.11.2026;;"
            + GOOD_POINT.encode()
        )
    result = build(paths)
    assert sorted(result.frame.work_id) == ["W-1", "W-3"]
    assert "not cp1251 text" in reasons(result)["line 3"]


def test_a_quoted_note_may_span_lines(tmp_path):
    result = build(
        works_city(
            tmp_path, [f'W-1;"Тепло\nсеть";01.11.2026;;{GOOD_POINT}', f"W-2;Водопровод;01.11.2026;;{GOOD_POINT}"]
        )
    )
    assert sorted(result.frame.work_id) == ["W-2"]  # "Тепло\nсеть" is read whole, then rejected as a value
    assert "not one of the allowed values" in reasons(result)["line 2"]
