"""Vector tiles: what a tile at a known z/x/y holds, who sees what, time filtering, generalisation, freshness."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import geopandas as gpd
import jsonschema
import mapbox_vector_tile
import morecantile
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from assets.publish import publish_geopackage, stable_fid
from layers.catalog import load_catalog
from server.tiles.render import TilePolicy
from server.tiles.vector import (
    LayerAccessError,
    TileNotFoundError,
    TileRequestError,
    VectorTiles,
    accepts_gzip,
    etag_matches,
    parse_datetime,
)

CATALOG = load_catalog()
TMS = morecantile.tms.get("WebMercatorQuad")
POINT_A = (104.2800, 52.2900)  # repair R-1, heat, 10-20 January 2025
POINT_B = (104.2810, 52.2905)  # repair R-2, water, from 1 February 2025, open-ended
CLUSTER = (104.3500, 52.2600, 104.3560, 52.2640)  # 5000 repairs in ~400 m x 450 m
CLUSTER_SIZE = 5000
# TileJSON 3.0.0 (github.com/mapbox/tilejson-spec, 3.0.0/schema.json): the required members and types.
TILEJSON_SCHEMA = {
    "type": "object",
    "required": ["tilejson", "tiles", "vector_layers"],
    "properties": {
        "tilejson": {"type": "string", "pattern": r"^\d+\.\d+\.\d+\w?[\w\d]*$"},
        "tiles": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "vector_layers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "fields"],
                "properties": {
                    "id": {"type": "string"},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                    "description": {"type": "string"},
                    "minzoom": {"type": "integer"},
                    "maxzoom": {"type": "integer"},
                },
            },
        },
        "bounds": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        "center": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
        "minzoom": {"type": "integer", "minimum": 0, "maximum": 30},
        "maxzoom": {"type": "integer", "minimum": 0, "maximum": 30},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "attribution": {"type": "string"},
        "scheme": {"enum": ["xyz", "tms"]},
    },
}


def frame_for(layer_id: str, rows: list[dict], geometries: list) -> gpd.GeoDataFrame:
    """A frame as the pipeline hands it to publish_geopackage: every field, UTC timestamps, stable fids."""
    spec = CATALOG[layer_id]
    data = {f.name: [row.get(f.name) for row in rows] for f in spec.fields}
    for f in spec.fields:
        if f.type == "datetime":
            data[f.name] = pd.to_datetime(pd.Series(data[f.name], dtype=object), utc=True)
    frame = gpd.GeoDataFrame(data, geometry=geometries, crs=4326)
    frame.insert(0, "fid", [stable_fid(layer_id, row[spec.id_field]) for row in rows])
    return frame


def repair(permit_id: str, network: str, start: str, end: str | None = None) -> dict:
    return {
        "permit_id": permit_id,
        "network": network,
        "work_kind": "planned",
        "status": "active",
        "address": "ул. Ленина, 1",
        "start_time": start,
        "end_time": end,
        "contractor_phone": "+7 3952 000000",
        "notes": "only for staff",
    }


def publish_repairs(folder: Path, network_of_a: str = "heat") -> None:
    rng = np.random.default_rng(7)
    rows = [
        repair("R-1", network_of_a, "2025-01-10T08:00:00Z", "2025-01-20T18:00:00Z"),
        repair("R-2", "water", "2025-02-01T00:00:00Z"),
    ]
    points = [shapely.Point(POINT_A), shapely.Point(POINT_B)]
    west, south, east, north = CLUSTER
    rows += [repair(f"D-{n}", "gas", "2025-01-01T00:00:00Z") for n in range(CLUSTER_SIZE)]
    points += list(shapely.points(rng.uniform(west, east, CLUSTER_SIZE), rng.uniform(south, north, CLUSTER_SIZE)))
    publish_geopackage(frame_for("repairs", rows, points), CATALOG["repairs"], folder / "repairs.gpkg")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("published")
    publish_repairs(folder)
    closure = {
        "closure_id": "C-1",
        "road_name": "ул. Ленина",
        "closure_type": "partial",
        "feed": "municipal",
        "start_time": "2025-01-01T00:00:00Z",
        "end_time": "2025-03-01T00:00:00Z",
        "has_detour": True,
    }
    line = shapely.LineString([(104.270, 52.285), (104.2805, 52.2901), (104.290, 52.295)])
    publish_geopackage(
        frame_for("road_closures", [closure], [line]), CATALOG["road_closures"], folder / "road_closures.gpkg"
    )
    district = {"district_no": 7, "name": "Округ №7"}
    zone = shapely.MultiPolygon([shapely.box(104.20, 52.25, 104.32, 52.33)])
    publish_geopackage(
        frame_for("election_districts", [district], [zone]),
        CATALOG["election_districts"],
        folder / "election_districts.gpkg",
    )
    address = {"address_id": "A-1", "street": "ул. Ленина", "house": "1"}
    publish_geopackage(
        frame_for("addresses", [address], [shapely.Point(POINT_A)]), CATALOG["addresses"], folder / "addresses.gpkg"
    )
    return folder


@pytest.fixture
def tiles(published) -> VectorTiles:
    return VectorTiles(CATALOG, lambda layer_id: published / f"{layer_id}.gpkg")


def decode(body: bytes) -> dict:
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})


def features_by_id(body: bytes, layer: str) -> dict[int, dict]:
    return {f["id"]: f for f in decode(body).get(layer, {}).get("features", [])}


def tile_of(point: tuple[float, float], z: int) -> morecantile.Tile:
    return TMS.tile(*point, z)


FID_A, FID_B = stable_fid("repairs", "R-1"), stable_fid("repairs", "R-2")


def test_z16_tile_holds_the_repair_with_its_public_attributes_and_fid(tiles):
    t = tile_of(POINT_A, 16)
    feature = features_by_id(tiles.tile(t.z, t.x, t.y).body, "repairs")[FID_A]
    assert feature["properties"] == {
        "permit_id": "R-1",
        "network": "heat",
        "work_kind": "planned",
        "status": "active",
        "address": "ул. Ленина, 1",
        "start_time": "2025-01-10T08:00:00.000Z",
        "end_time": "2025-01-20T18:00:00.000Z",
    }
    # where the point is: its Web Mercator position in tile units (4096 per tile, y down)
    bounds = TMS.xy_bounds(t)
    x, y = TMS.xy(*POINT_A)
    expected = (
        (x - bounds.left) / (bounds.right - bounds.left) * 4096,
        (bounds.top - y) / (bounds.top - bounds.bottom) * 4096,
    )
    assert feature["geometry"]["coordinates"] == pytest.approx(expected, abs=1)


def test_combined_tile_has_each_public_layer_as_its_own_source_layer(tiles):
    t = tile_of(POINT_A, 14)
    layers = decode(tiles.tile(t.z, t.x, t.y).body)
    assert set(layers) == {"repairs", "road_closures", "election_districts"}  # not the internal address register
    closure = layers["road_closures"]["features"][0]
    assert closure["properties"]["closure_type"] == "partial" and closure["properties"]["has_detour"] is True
    assert closure["geometry"]["type"] == "LineString"
    zone = layers["election_districts"]["features"][0]
    assert zone["geometry"]["type"] == "Polygon" and zone["properties"]["district_no"] == 7
    # clipped to the tile and its buffer, not the whole district
    coordinates = np.array(zone["geometry"]["coordinates"][0])
    assert coordinates.min() >= -64 and coordinates.max() <= 4096 + 64


def test_internal_fields_and_layers_only_for_staff(tiles):
    t = tile_of(POINT_A, 16)
    staff = features_by_id(tiles.tile(t.z, t.x, t.y, staff=True).body, "repairs")[FID_A]["properties"]
    assert staff["contractor_phone"] == "+7 3952 000000" and staff["notes"] == "only for staff"
    with pytest.raises(LayerAccessError) as refused:
        tiles.tile(t.z, t.x, t.y, ["addresses"])
    assert refused.value.status == 404
    assert "addresses" in decode(tiles.tile(t.z, t.x, t.y, ["addresses"], staff=True).body)
    assert "addresses" in decode(tiles.tile(t.z, t.x, t.y, staff=True).body)


def test_explicit_field_list_narrows_attributes_but_never_widens_them(tiles):
    t = tile_of(POINT_A, 16)
    body = tiles.tile(t.z, t.x, t.y, ["repairs"], fields=["network", "start_time"]).body
    assert features_by_id(body, "repairs")[FID_A]["properties"] == {
        "network": "heat",
        "start_time": "2025-01-10T08:00:00.000Z",
    }
    with pytest.raises(TileRequestError):
        tiles.tile(t.z, t.x, t.y, ["repairs"], fields=["notes"])  # internal: unknown to the public


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2025-01-15T12:00:00Z", {FID_A}),
        ("2025-01-15", {FID_A}),
        ("2025-01-21", {FID_A}),  # a date is the city's day (Irkutsk, UTC+8): A ends 02:00 local on the 21st
        ("2025-01", {FID_A}),
        ("2025-02-10T00:00:00+08:00", {FID_B}),
        ("2025-01-15/2025-02-05", {FID_A, FID_B}),
        ("2025-01-20T18:00:00Z/..", {FID_A, FID_B}),  # A ends exactly then: still active
        ("../2025-01-05", set()),
        (None, {FID_A, FID_B}),
    ],
)
def test_datetime_filter_keeps_features_active_in_the_instant_or_interval(tiles, moment, expected):
    t = tile_of(POINT_A, 16)
    found = set(features_by_id(tiles.tile(t.z, t.x, t.y, ["repairs"], datetime=moment).body, "repairs"))
    assert found & {FID_A, FID_B} == expected


def test_datetime_is_read_as_the_features_api_reads_it(tiles):
    from layers.timewindow import parse_datetime_parameter

    for text in ["2025-01-21", "2025-01-15T10:00:00/..", "../2025-02", "2025-01-10T08:00:00Z"]:
        ours, api = parse_datetime(text, tiles.local), parse_datetime_parameter(text, tiles.local)
        assert (ours.start, ours.end) == (api.start, api.end)
    assert parse_datetime("2025-01-21", tiles.local).start == "2025-01-20T16:00:00.000Z"


def test_bad_datetime_is_a_request_error():
    for text in ["yesterday", "2025-02-01/2025-01-01", "../..", "2025-01-01/2025-01-02/2025-01-03"]:
        with pytest.raises(TileRequestError):
            parse_datetime(text)


def test_points_are_thinned_at_z10_and_all_kept_at_z16(tiles):
    t10 = tile_of(CLUSTER[:2], 10)
    body = tiles.tile(t10.z, t10.x, t10.y, ["repairs"]).body
    cluster = [f for f in decode(body)["repairs"]["features"] if f["properties"]["permit_id"].startswith("D-")]
    assert len(cluster) < 30 and len(body) < 5_000
    assert sum(f["properties"]["point_count"] for f in cluster) == CLUSTER_SIZE  # nothing silently lost
    seen: set[int] = set()
    for t in TMS.tiles(*CLUSTER, zooms=[16]):
        features = decode(tiles.tile(t.z, t.x, t.y, ["repairs"]).body)["repairs"]["features"]
        assert all("point_count" not in f["properties"] for f in features)
        seen |= {f["id"] for f in features}
    assert len(seen) == CLUSTER_SIZE


def test_size_budget_coarsens_thinned_tiles(published):
    fine = TilePolicy(thin_cell_px=1)
    t = tile_of(CLUSTER[:2], 13)
    sizes = {}
    for budget in (10**9, 8_000):
        service = VectorTiles(
            CATALOG,
            lambda layer_id: published / f"{layer_id}.gpkg",
            policy=TilePolicy(thin_cell_px=fine.thin_cell_px, budget_bytes=budget),
        )
        sizes[budget] = len(service.tile(t.z, t.x, t.y, ["repairs"]).body)
    assert sizes[10**9] > 8_000 >= sizes[8_000]


def test_a_republished_file_is_in_the_next_tile(tmp_path):
    publish_repairs(tmp_path, network_of_a="heat")
    service = VectorTiles(CATALOG, lambda layer_id: tmp_path / f"{layer_id}.gpkg")
    t = tile_of(POINT_A, 16)
    assert service.cached_tile(t.z, t.x, t.y, ["repairs"]) is None  # a miss is left to the threadpool
    first = service.tile(t.z, t.x, t.y, ["repairs"])
    again = service.cached_tile(t.z, t.x, t.y, ["repairs"])
    assert again is not None and again.etag == first.etag and again.body == first.body
    publish_repairs(tmp_path, network_of_a="water")  # atomic rename, same size, maybe the same mtime
    after = service.tile(t.z, t.x, t.y, ["repairs"])
    assert after.etag != first.etag and service.cached_tile(t.z, t.x, t.y, ["repairs"]) == after
    assert features_by_id(after.body, "repairs")[FID_A]["properties"]["network"] == "water"


def test_gzip_headers_and_validators(tiles):
    t = tile_of(POINT_A, 14)
    plain, packed = tiles.tile(t.z, t.x, t.y), tiles.tile(t.z, t.x, t.y, gzip=True)
    assert packed.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert gzip.decompress(packed.body) == plain.body and len(packed.body) < len(plain.body)
    assert plain.headers["Content-Type"] == "application/vnd.mapbox-vector-tile"
    assert plain.etag != packed.etag and etag_matches(f'W/{plain.etag}, "other"', plain.etag)
    assert accepts_gzip("br, gzip;q=0.8") and not accepts_gzip("identity") and not accepts_gzip(None)


def test_tiles_outside_the_matrix_or_unknown_layers_are_not_found(tiles):
    for z, x, y in [(-1, 0, 0), (3, 8, 0), (3, 0, -1), (25, 0, 0)]:
        with pytest.raises(TileNotFoundError):
            tiles.tile(z, x, y)
    with pytest.raises(TileNotFoundError):
        tiles.tile(0, 0, 0, ["no_such_layer"])


def test_empty_tile_and_unpublished_layer(tiles, tmp_path):
    assert tiles.tile(5, 0, 0).body == b""  # the Atlantic: a valid tile with no layers
    nothing = VectorTiles(CATALOG, lambda layer_id: tmp_path / f"{layer_id}.gpkg")
    assert nothing.tile(0, 0, 0).body == b"" and nothing.bounds() == tuple(CATALOG.city.extent)


def test_xyz_folder_opens_in_gdal_mvt_reader(tiles, tmp_path):
    area = (POINT_A[0] - 0.02, POINT_A[1] - 0.01, POINT_A[0] + 0.02, POINT_A[1] + 0.01)
    for t in TMS.tiles(*area, zooms=[14]):
        target = tmp_path / f"{t.z}/{t.x}/{t.y}.pbf"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tiles.tile(t.z, t.x, t.y).body)
    assert {name for name, _ in pyogrio.list_layers(f"MVT:{tmp_path / '14'}")} == {
        "repairs",
        "road_closures",
        "election_districts",
    }
    repairs = pyogrio.read_dataframe(f"MVT:{tmp_path / '14'}", layer="repairs")
    a = repairs[repairs["mvt_id"] == FID_A].to_crs(4326)
    assert a["network"].tolist() == ["heat"]
    assert a.geometry.iloc[0].distance(shapely.Point(POINT_A)) < 1e-4
    single = next(tmp_path.glob("14/*/*.pbf"))
    assert len(pyogrio.list_layers(f"MVT:{single}")) >= 1


def test_tilejson_validates_and_describes_the_public_layers(tiles):
    document = tiles.tilejson("https://maps.example/tiles/{z}/{x}/{y}.pbf")
    jsonschema.validate(document, TILEJSON_SCHEMA)
    layers = {layer["id"]: layer for layer in document["vector_layers"]}
    assert set(layers) == {spec.id for spec in CATALOG.public()}
    assert "contractor_phone" not in layers["repairs"]["fields"] and layers["repairs"]["fields"]["network"] == "String"
    west, south, east, north = document["bounds"]
    assert west <= POINT_A[0] <= east and south <= CLUSTER[1] <= north
    staff = tiles.tilejson("https://maps.example/tiles/{z}/{x}/{y}.pbf", staff=True)
    assert "addresses" in {layer["id"] for layer in staff["vector_layers"]}


def test_ogc_tileset_metadata_links_the_templated_tiles(tiles):
    href = "https://maps.example/collections/repairs/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}?f=mvt"
    document = tiles.ogc_tileset(
        "repairs",
        title="Repairs",
        tiles_href=href,
        tiling_scheme_href="https://maps.example/TileMatrixSets/WebMercatorQuad",
    )
    assert document["tileMatrixSetURI"] == "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
    assert document["dataType"] == "vector"
    item = next(link for link in document["links"] if link["rel"] == "item")
    assert item["href"] == href and item["templated"] is True and item["type"] == "application/vnd.mapbox-vector-tile"
    assert [layer["id"] for layer in document["layers"]] == ["repairs"]
    assert "notes" not in document["layers"][0]["propertiesSchema"]["properties"]
    t = tile_of(POINT_A, 16)
    limit = next(lim for lim in document["tileMatrixSetLimits"] if lim["tileMatrix"] == "16")
    assert limit["minTileCol"] <= t.x <= limit["maxTileCol"] and limit["minTileRow"] <= t.y <= limit["maxTileRow"]


def test_sample_city_tiles(published_city):
    service = VectorTiles(CATALOG, published_city.published_path)
    west, south, east, north = service.bounds()
    t = TMS.tile((west + east) / 2, (south + north) / 2, 12)
    layers = decode(service.tile(t.z, t.x, t.y).body)
    assert {"repairs", "road_closures", "outages"} <= set(layers) and "addresses" not in layers
    assert json.dumps(service.tilejson("/tiles/{z}/{x}/{y}.pbf"))


def test_low_zoom_thinning_respects_the_datetime_filter(tiles):
    t = tile_of(POINT_A, 10)

    def near_a(moment: str | None) -> list[dict]:
        features = decode(tiles.tile(t.z, t.x, t.y, ["repairs"], datetime=moment).body)["repairs"]["features"]
        return [f for f in features if f["properties"]["permit_id"] in ("R-1", "R-2")]

    assert [(f["id"], f["properties"]["point_count"]) for f in near_a("2025-01-15")] == [(FID_A, 1)]
    assert [(f["id"], f["properties"]["point_count"]) for f in near_a("2025-02-10")] == [(FID_B, 1)]
    assert [f["properties"]["point_count"] for f in near_a(None)] == [2]  # A and B share a cell at z10


def test_world_tile_shows_the_city(tiles):
    layers = decode(tiles.tile(0, 0, 0).body)
    assert sum(f["properties"]["point_count"] for f in layers["repairs"]["features"]) == CLUSTER_SIZE + 2


QGIS_VECTOR_TILES = r"""
import json, sys
from qgis.core import (QgsApplication, QgsVectorTileLayer, QgsMapSettings, QgsMapRendererSequentialJob,
                       QgsRectangle, QgsMapBoxGlStyleConverter, QgsCoordinateReferenceSystem)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def check(template, style_path, box, png):
    layer = QgsVectorTileLayer(f"type=xyz&url={template}&zmin=14&zmax=14", "geoportal")
    converter = QgsMapBoxGlStyleConverter()
    converted = converter.convert(json.load(open(style_path, encoding="utf-8")))
    layer.setRenderer(converter.renderer())
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    settings.setExtent(QgsRectangle(*box))
    settings.setOutputSize(QSize(200, 200))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(png)
    colours = {image.pixelColor(x, y).name() for x in range(200) for y in range(200)}
    return {"valid": layer.isValid(), "converted": converted == 0, "colours": sorted(colours)}


app = QgsApplication([], False)
app.initQgis()
print(json.dumps(check(*json.loads(sys.argv[1]))), flush=True)
app.exitQgis()
"""


def qgis_available() -> bool:
    import subprocess

    if not Path("/usr/bin/python3").exists():
        return False
    probe = subprocess.run(["/usr/bin/python3", "-c", "import qgis.core"], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.skipif(not qgis_available(), reason="Debian's python3-qgis (QGIS 3.22) is not installed")
def test_qgis_reads_the_xyz_template_as_a_vector_tile_layer_with_our_style(tiles, tmp_path):
    """What a GIS specialist does: a vector tile connection to the XYZ template, styled from our style JSON."""
    import os
    import subprocess

    from server.styles.maplibre import maplibre_style

    for t in TMS.tiles(POINT_A[0] - 0.01, POINT_A[1] - 0.005, POINT_A[0] + 0.01, POINT_A[1] + 0.005, zooms=[14]):
        target = tmp_path / f"{t.z}/{t.x}/{t.y}.pbf"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tiles.tile(t.z, t.x, t.y).body)
    template = f"file://{tmp_path}/{{z}}/{{x}}/{{y}}.pbf"
    style = tmp_path / "style.json"
    style.write_text(json.dumps(maplibre_style(CATALOG.public(), tiles_url=template)), encoding="utf-8")
    x, y = TMS.xy(*POINT_A)
    box = [x - 60, y - 60, x + 60, y + 60]  # around repair R-1 and the partial closure C-1 beside it
    arguments = json.dumps([template, str(style), box, str(tmp_path / "qgis.png")])
    run = subprocess.run(
        ["/usr/bin/python3", "-c", QGIS_VECTOR_TILES, arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["valid"] and report["converted"]
    # The partial closure in its amber: QGIS 3.22 translates our colour `match` for lines and fills (its
    # converter has no data-driven circle colours, so points keep the layer colour: the QML covers those).
    amber = [
        c
        for c in report["colours"]
        if int(c[1:3], 16) > 0xD0 and 0x70 < int(c[3:5], 16) < 0xC0 and int(c[5:7], 16) < 0x70
    ]  # #f59e0b, blended by the line's 0.8 opacity
    assert amber, report["colours"]


def test_refresh_warms_once_per_publication(tmp_path):
    publish_repairs(tmp_path)
    service = VectorTiles(CATALOG, lambda layer_id: tmp_path / f"{layer_id}.gpkg")
    assert service.refresh(max_zoom=6) and not service.refresh(max_zoom=6)
    assert service.cached_tile(0, 0, 0) is not None  # the world tile is ready before anyone asks
    publish_repairs(tmp_path, network_of_a="water")
    assert service.cached_tile(0, 0, 0) is None and service.refresh(max_zoom=6)


def test_a_point_the_r_tree_finds_just_beyond_the_buffer_leaves_no_empty_layer(tmp_path):
    """The R-tree's float32 boxes reach a few metres beyond the tile's buffer; a point there is not in the tile, and
    a layer left without features is left out of it (not written empty)."""
    from server.tiles.render import TileFrame

    t = tile_of(POINT_A, 14)
    frame = TileFrame.of(t.z, t.x, t.y, 4096)
    west, south, east, north = frame.lonlat_box(TilePolicy().buffer)
    beyond = shapely.Point(east + 1e-9, (south + north) / 2)  # within a float32 step of the edge
    row = repair("R-9", "heat", "2025-01-10T08:00:00Z")
    publish_geopackage(frame_for("repairs", [row], [beyond]), CATALOG["repairs"], tmp_path / "repairs.gpkg")
    service = VectorTiles(CATALOG, lambda layer_id: tmp_path / f"{layer_id}.gpkg")
    assert service.tile(t.z, t.x, t.y, ["repairs"]).body == b""
    inside = service.tile(t.z, t.x + 1, t.y, ["repairs"])  # the tile it is in has it
    assert list(features_by_id(inside.body, "repairs")) == [stable_fid("repairs", "R-9")]
