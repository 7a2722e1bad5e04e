"""Geometry is judged as delivered: a repair that leaves nothing is a reject with GEOS's reason (even
when reprojection would have made a valid sliver of it), and a curve is refused by name."""

from __future__ import annotations

from tests.test_bad_input import build, make_city

ZONES_CSV_YAML = """
title: {ru: Зоны, en: Zones}
description: {ru: Тестовые зоны, en: Test zones}
domain: zones
geometry_type: MultiPolygon
id_field: zone_no
fields:
  - {name: zone_no, type: integer, required: true, title: {ru: Номер, en: Number}}
sources:
  - path: zones.csv
    format: csv
    delimiter: ";"
    crs: msk38-3
    columns: {Номер: zone_no}
    geometry: {wkt: WKT}
"""
SQUARE = "POLYGON ((3335000 384000, 3335100 384000, 3335100 384100, 3335000 384100, 3335000 384000))"
# three collinear points: no area in МСК; reprojected to degrees they are no longer exactly in line
COLLINEAR = "POLYGON ((3335000 384000, 3335100 384000, 3335200 384000, 3335000 384000))"
CURVE = "CURVEPOLYGON (CIRCULARSTRING (3335000 384000, 3335100 384100, 3335000 384000))"


def zones(tmp_path, rows: list[str]):
    paths = make_city(tmp_path, {"works": ZONES_CSV_YAML})
    (paths.sample_dir / "zones.csv").write_text("\n".join(["Номер;WKT", *rows]), encoding="utf-8")
    return build(paths)


def test_a_zero_area_polygon_is_refused_as_delivered_not_published_as_a_sliver(tmp_path):
    result = zones(tmp_path, [f"1;{SQUARE}", f"2;{COLLINEAR}"])
    assert list(result.frame.zone_no) == [1]
    assert [(r.record, r.field) for r in result.rejects] == [("line 3", "geometry")]
    assert result.rejects[0].reason.startswith("repair left nothing: Self-intersection")
    assert result.counts.repaired == 0


def test_a_curve_is_refused_by_name_and_the_rest_publish(tmp_path):
    result = zones(tmp_path, [f"1;{SQUARE}", f"2;{CURVE}", "3;POLYGON ((1 2"])
    assert list(result.frame.zone_no) == [1]
    found = {r.record: r.reason for r in result.rejects}
    assert found["line 3"].startswith("curved geometry (CURVEPOLYGON) is not supported")
    assert found["line 4"] == "not valid WKT"
