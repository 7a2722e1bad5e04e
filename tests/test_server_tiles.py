"""Tiles, styles and the raster over HTTP: the same access levels as the features, never stale."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import mapbox_vector_tile
import morecantile
import pyogrio
import rasterio
from rasterio.io import MemoryFile

from assets.publish import publish_geopackage
from layers.catalog import load_catalog
from tests.server_fixtures import (  # noqa: F401 - fixtures
    STAFF_KEY,
    anonymous,
    private_server,
    server,
    staff,
)

GRID = morecantile.tms.get("WebMercatorQuad")
CATALOG = load_catalog()


def first_repair(paths):
    frame = pyogrio.read_dataframe(paths.published_path("repairs"))
    return frame, frame.iloc[0]


def tile_of(point, zoom: int = 15):
    return GRID.tile(point.x, point.y, zoom)


def decode(content: bytes) -> dict:
    return mapbox_vector_tile.decode(content) if content else {}


def test_combined_tile_holds_public_layers_and_staff_sees_more(server, anonymous, staff):  # noqa: F811
    _, repair = first_repair(server.paths)
    t = tile_of(repair.geometry)
    public = decode(anonymous.get(f"/tiles/{t.z}/{t.x}/{t.y}.pbf").content)
    assert repair.permit_id in {f["properties"]["permit_id"] for f in public["repairs"]["features"]}
    assert "addresses" not in public
    assert all("contractor_phone" not in f["properties"] for f in public["repairs"]["features"])
    internal = decode(staff.get(f"/tiles/{t.z}/{t.x}/{t.y}.pbf").content)
    assert "addresses" in internal
    assert any("contractor_phone" in f["properties"] for f in internal["repairs"]["features"])


def test_internal_layer_tiles_need_a_key(server, anonymous, staff):  # noqa: F811
    t = tile_of(pyogrio.read_dataframe(server.paths.published_path("addresses")).geometry.iloc[0])
    assert anonymous.get(f"/tiles/addresses/{t.z}/{t.x}/{t.y}.pbf").status_code == 404
    assert anonymous.get("/collections/addresses/tiles").status_code == 404
    assert staff.get(f"/tiles/addresses/{t.z}/{t.x}/{t.y}.pbf").status_code == 200
    assert "addresses" in decode(staff.get(f"/tiles/addresses/{t.z}/{t.x}/{t.y}.pbf").content)


def test_ogc_api_tiles_tileset_and_tile(server, anonymous):  # noqa: F811
    _, repair = first_repair(server.paths)
    tileset = anonymous.get("/collections/repairs/tiles/WebMercatorQuad").json()
    template = next(link["href"] for link in tileset["links"] if link["rel"] == "item")
    t = tile_of(repair.geometry)
    url = template.replace("{tileMatrix}", str(t.z)).replace("{tileRow}", str(t.y)).replace("{tileCol}", str(t.x))
    response = anonymous.get(url)
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert repair.permit_id in {f["properties"]["permit_id"] for f in decode(response.content)["repairs"]["features"]}
    conformance = anonymous.get("/conformance").json()["conformsTo"]
    assert any("ogcapi-tiles-1" in c for c in conformance)


def test_tilejson_and_styles_are_linked_from_each_collection(anonymous):  # noqa: F811
    collection = anonymous.get("/collections/road_closures").json()
    hrefs = {link["type"]: link["href"] for link in collection["links"]}
    style = anonymous.get(hrefs["application/vnd.mapbox.style+json"]).json()
    assert style["version"] == 8 and style["sources"]["geoportal"]["tiles"][0].endswith("/tiles/{z}/{x}/{y}.pbf")
    qml = ET.fromstring(anonymous.get(hrefs["application/vnd.qgis.qml"]).content)
    assert qml.tag == "qgis" and qml.find("renderer-v2").get("attr") == "closure_type"
    tilejson = anonymous.get("/tiles/tilejson.json").json()
    assert tilejson["tilejson"] == "3.0.0"
    assert {layer["id"] for layer in tilejson["vector_layers"]} == {s.id for s in CATALOG.public()}


def test_a_publication_shows_in_the_tiles_once_they_switch(private_server):  # noqa: F811
    """Tiles of the version before are answered until the new version's are prepared (server/tiles/vector.py):
    within GEOPORTAL_SERVER_TILE_SWITCH_SECONDS (30 s) of the publication, waited for here with a deadline."""
    frame, repair = first_repair(private_server.paths)
    t = tile_of(repair.geometry)
    with private_server.client() as client:
        before = decode(client.get(f"/tiles/{t.z}/{t.x}/{t.y}.pbf").content)
        assert repair.permit_id in {f["properties"]["permit_id"] for f in before["repairs"]["features"]}
        kept = frame[frame.permit_id != repair.permit_id].reset_index(drop=True)
        kept.insert(
            0,
            "fid",
            pyogrio.read_dataframe(private_server.paths.published_path("repairs"), fid_as_index=True).index[
                frame.permit_id != repair.permit_id
            ],
        )
        publish_geopackage(kept, CATALOG["repairs"], private_server.paths.published_path("repairs"))
        deadline = time.monotonic() + 60
        while True:
            after = decode(client.get(f"/tiles/{t.z}/{t.x}/{t.y}.pbf").content)
            ids = {f["properties"]["permit_id"] for f in after.get("repairs", {"features": []})["features"]}
            if repair.permit_id not in ids:
                break
            assert time.monotonic() < deadline, "the publication never showed in the tiles"


def test_raster_product_through_ogc_api_coverages(anonymous):  # noqa: F811
    collection = anonymous.get("/collections/disruption_load").json()
    assert collection["id"] == "disruption_load"
    response = anonymous.get("/collections/disruption_load/coverage", params={"f": "GTiff"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/tiff"
    with MemoryFile(response.content) as memory, memory.open() as dataset:
        assert dataset.crs.to_epsg() == 3857
        assert dataset.read(1).max() > 0, "something is active at the sample city's moment"
    conformance = anonymous.get("/conformance").json()["conformsTo"]
    assert any("ogcapi-coverages-1" in c for c in conformance)
    png = anonymous.get("/map/raster/disruption_load.png")
    assert png.headers["content-type"] == "image/png"
    with rasterio.MemoryFile(png.content) as memory, memory.open() as image:
        assert image.count == 4
