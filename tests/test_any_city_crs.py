"""A source's CRS comes from the catalog when it names one, else from the file itself (.prj, GeoJSON
`crs`, GeoPackage srs), else EPSG:4326; a disagreement is a warning naming both."""

from __future__ import annotations

import json
import re

import fiona
import pyogrio
import pyproj
import pytest
import shapely
from shapely.geometry import mapping

from assets.ingest import build_layer, publish_layer
from assets.records import SourceError
from layers.catalog import load_catalog
from tests.any_city import NEW_YORK, build, make_city, reasons
from tests.conftest import city_paths

# Landmarks of New York in lon/lat, written into files in EPSG:2263 (NY Long Island, US feet)
LANDMARKS = {1: ("Times Square", -73.9855, 40.7580), 2: ("City Hall", -74.0060, 40.7128)}
TO_FEET = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:2263", always_xy=True)
TO_UTM = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32618", always_xy=True)

SITES_YAML = """
title: {ru: Объекты, en: Sites}
description: {ru: Тестовый слой, en: Test layer}
domain: reference
geometry_type: Point
id_field: site_no
fields:
  - {name: site_no, type: integer, required: true, title: {ru: Номер, en: Number}}
  - {name: name, type: string, title: {ru: Имя, en: Name}}
sources:
  - path: sites.{ext}
    format: {format}{crs}
    columns: {NO: site_no, NAME: name}
"""


def sites_city(tmp_path, ext: str = "shp", format: str = "shapefile", crs: str | None = None):
    text = SITES_YAML.replace("{ext}", ext).replace("{format}", format)
    return make_city(tmp_path, NEW_YORK, {"sites": text.replace("{crs}", f"\n    crs: {crs}" if crs else "")})


def write_sites(path, crs: str | None, project=TO_FEET, driver: str = "ESRI Shapefile") -> None:
    schema = {"geometry": "Point", "properties": {"NO": "int", "NAME": "str:40"}}
    with fiona.open(path, "w", driver=driver, schema=schema, crs=crs) as sink:
        for number, (name, lon, lat) in LANDMARKS.items():
            point = shapely.Point(*project.transform(lon, lat))
            sink.write({"geometry": mapping(point), "properties": {"NO": number, "NAME": name}})


def assert_at_landmarks(frame) -> None:
    for _, row in frame.iterrows():
        _, lon, lat = LANDMARKS[row.site_no]
        assert row.geometry.x == pytest.approx(lon, abs=1e-6) and row.geometry.y == pytest.approx(lat, abs=1e-6)


def test_a_shapefile_in_us_feet_is_read_in_the_crs_its_prj_names(tmp_path):
    paths = sites_city(tmp_path)  # no crs: in the catalog
    write_sites(paths.sample_dir / "sites.shp", "EPSG:2263")
    assert (paths.sample_dir / "sites.prj").exists()
    result = build(paths, "sites")
    assert result.rejects == []
    assert_at_landmarks(result.frame)
    assert result.source_crs == ["sites.shp: EPSG:2263 (from the file)"]
    assert result.warnings == []
    publish_layer(result, paths)
    published = pyogrio.read_dataframe(paths.published_path("sites"))
    assert published.crs.to_epsg() == 4326
    assert_at_landmarks(published)


@pytest.mark.parametrize(
    "declared", ["EPSG:2263", "http://www.opengis.net/def/crs/EPSG/0/2263", "urn:ogc:def:crs:EPSG::2263"]
)
def test_a_shapefile_without_prj_takes_the_catalogs_crs_in_any_spelling(tmp_path, declared):
    paths = sites_city(tmp_path, crs=declared)
    write_sites(paths.sample_dir / "sites.shp", None)
    assert not (paths.sample_dir / "sites.prj").exists()
    result = build(paths, "sites")
    assert_at_landmarks(result.frame)
    assert result.source_crs == [f"sites.shp: {declared} (catalog)"]
    assert result.warnings == []


def test_a_shapefile_that_states_no_crs_and_no_catalog_crs_warns_and_names_the_bound(tmp_path):
    paths = sites_city(tmp_path)
    write_sites(paths.sample_dir / "sites.shp", None)
    result = build(paths, "sites")
    assert result.warnings == ["sites.shp: the file states no CRS and the catalog names none; read as EPSG:4326"]
    assert len(result.frame) == 0
    feet_x, feet_y = (int(v) for v in TO_FEET.transform(-73.9855, 40.7580))
    assert re.fullmatch(
        rf"geometry: outside the city extent: x {feet_x}\.\d+ is east of -73\.7, y {feet_y}\.\d+ is north of 40\.92 "
        r"\(wrong CRS or swapped X/Y\?\)",
        reasons(result)["feature 1"],
    )


def test_when_the_prj_and_the_catalog_disagree_the_catalog_wins_with_a_warning_naming_both(tmp_path):
    paths = sites_city(tmp_path, crs="EPSG:32618")
    write_sites(paths.sample_dir / "sites.shp", "EPSG:2263", project=TO_UTM)  # UTM coordinates, a wrong .prj
    result = build(paths, "sites")
    assert_at_landmarks(result.frame)
    assert result.warnings == [
        "sites.shp: the file says its CRS is EPSG:2263, the catalog says EPSG:32618; read as EPSG:32618 "
        "(the catalog wins)"
    ]


def test_a_geojson_crs_member_is_honoured(tmp_path):
    paths = sites_city(tmp_path, ext="geojson", format="geojson")
    features = [
        {
            "type": "Feature",
            "properties": {"NO": number, "NAME": name},
            "geometry": mapping(shapely.Point(*TO_FEET.transform(lon, lat))),
        }
        for number, (name, lon, lat) in LANDMARKS.items()
    ]
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2263"}},
        "features": features,
    }
    (paths.sample_dir / "sites.geojson").write_text(json.dumps(collection), encoding="utf-8")
    result = build(paths, "sites")
    assert_at_landmarks(result.frame)
    assert result.source_crs == ["sites.geojson: EPSG:2263 (from the file)"]


def test_a_geojson_without_crs_member_is_crs84(tmp_path):
    paths = sites_city(tmp_path, ext="geojson", format="geojson")
    lon_lat = pyproj.Transformer.from_crs(4326, 4326, always_xy=True)
    write_sites(paths.sample_dir / "sites.geojson", None, project=lon_lat, driver="GeoJSON")
    result = build(paths, "sites")
    assert_at_landmarks(result.frame)
    assert result.source_crs == ["sites.geojson: EPSG:4326 (default)"] and result.warnings == []


def test_a_geopackage_is_read_in_its_srs(tmp_path):
    paths = sites_city(tmp_path, ext="gpkg", format="geopackage")
    write_sites(paths.sample_dir / "sites.gpkg", "EPSG:32618", project=TO_UTM, driver="GPKG")
    result = build(paths, "sites")
    assert_at_landmarks(result.frame)
    assert result.source_crs == ["sites.gpkg: EPSG:32618 (from the file)"]


def test_the_sample_citys_prj_without_datum_shift_agrees_with_its_msk(tmp_path):
    """The .prj of a local system cannot carry towgs84: same projection, no warning, the catalog's
    parameters (with the shift) are used."""
    catalog = load_catalog()
    paths = city_paths(tmp_path)
    for layer in ("election_districts", "police_precincts"):
        result = build_layer(catalog[layer], catalog, paths)
        assert not [w for w in result.warnings if "CRS" in w], result.warnings
        assert all(label.endswith(": msk38-3 (catalog)") for label in result.source_crs)


def test_the_extent_message_names_the_bound_crossed(tmp_path):
    yaml = SITES_YAML.replace("path: sites.{ext}\n    format: {format}{crs}", "path: sites.csv\n    format: csv")
    yaml += "    geometry: {x: LON, y: LAT}\n"
    paths = make_city(tmp_path, NEW_YORK, {"sites": yaml})
    (paths.sample_dir / "sites.csv").write_text(
        "NO,NAME,LON,LAT\n1,Sofia,23.31,42.69\n2,Swapped,40.758,-73.9855\n3,Times Square,-73.9855,40.758\n",
        encoding="utf-8",
    )
    result = build(paths, "sites")
    assert list(result.frame.site_no) == [3]
    found = reasons(result)
    assert found["line 2"] == (
        "geometry: outside the city extent: x 23.31 is east of -73.7, y 42.69 is north of 40.92 "
        "(wrong CRS or swapped X/Y?)"
    )
    assert found["line 3"] == (
        "geometry: outside the city extent: x 40.758 is east of -73.7, y -73.9855 is south of 40.49 "
        "(wrong CRS or swapped X/Y?)"
    )


def test_the_crs_used_and_a_disagreement_reach_the_dagster_metadata(tmp_path):
    import dagster as dg

    from pipelines.factory import layer_asset
    from pipelines.resources import GeoportalResource

    paths = sites_city(tmp_path, crs="EPSG:32618")
    write_sites(paths.sample_dir / "sites.shp", "EPSG:2263", project=TO_UTM)
    catalog = load_catalog(paths.catalog_dir)
    result = dg.materialize([layer_asset(catalog["sites"])], resources={"geoportal": GeoportalResource.of(paths)})
    [materialization] = result.asset_materializations_for_node("sites")
    metadata = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
    assert "sites.shp: EPSG:32618 (catalog)" in str(metadata["source_crs"])
    assert "the file says its CRS is EPSG:2263, the catalog says EPSG:32618" in str(metadata["warnings"])
    assert metadata["published"] == 2


def test_an_unreadable_prj_is_named_and_the_catalogs_crs_can_stand_in(tmp_path):
    paths = sites_city(tmp_path / "no_crs")
    write_sites(paths.sample_dir / "sites.shp", "EPSG:2263")
    (paths.sample_dir / "sites.prj").write_text('PROJCS["NAD83 / New York Long Island (ftUS)', encoding="utf-8")
    with pytest.raises(
        SourceError, match=r"^sites\.shp: the file's CRS cannot be read \('PROJCS.*name it in the catalog"
    ):
        build(paths, "sites")
    paths = sites_city(tmp_path / "catalog_crs", crs="EPSG:2263")
    write_sites(paths.sample_dir / "sites.shp", "EPSG:2263")
    (paths.sample_dir / "sites.prj").write_text('PROJCS["NAD83 / New York Long Island (ftUS)', encoding="utf-8")
    result = build(paths, "sites")
    assert_at_landmarks(result.frame)
    assert len(result.warnings) == 1 and result.warnings[0].startswith("sites.shp: the file's CRS cannot be read")
