"""One answer per access level on every route family: an internal layer walked without a key, with a public-level
key and with a staff key. Without a key it does not exist (404), a public-level key is refused (403), staff see it."""

from __future__ import annotations

import mapbox_vector_tile
import morecantile
import pytest

from tests.server_fixtures import STAFF_KEY, VISITOR_KEY, published_frame, server  # noqa: F401 - fixture

LAYER = "addresses"  # internal in the catalog
EXPECTED = {"anonymous": 404, "public key": 403, "staff key": 200}
KEYS = {"anonymous": None, "public key": VISITOR_KEY, "staff key": STAFF_KEY}


@pytest.fixture(scope="module")
def routes(server):  # noqa: F811
    """Every route family that names the layer, with a real item and a tile over a real feature."""
    frame = published_frame(server.paths, LAYER)
    fid, point = int(frame.index[0]), frame.geometry.iloc[0]
    t = morecantile.tms.get("WebMercatorQuad").tile(point.x, point.y, 15)
    collection = f"/collections/{LAYER}"
    return {
        "collection": f"{collection}?f=json",
        "collection html": f"{collection}?f=html",
        "items": f"{collection}/items?f=json&limit=5",
        "items html": f"{collection}/items?f=html&limit=5",
        "items POST": ("POST", f"{collection}/items"),
        "item": f"{collection}/items/{fid}?f=json",
        "item html": f"{collection}/items/{fid}?f=html",
        "queryables": f"{collection}/queryables",
        "schema": f"{collection}/schema",
        "OGC tilesets": f"{collection}/tiles",
        "OGC tileset": f"{collection}/tiles/WebMercatorQuad",
        "OGC tile": f"{collection}/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}?f=mvt",
        "XYZ tile": f"/tiles/{LAYER}/{t.z}/{t.x}/{t.y}.pbf",
        "TileJSON": f"/tiles/{LAYER}/tilejson.json",
        "QML style": f"/styles/{LAYER}.qml",
        "download": f"/downloads/{LAYER}.gpkg",
    }, t


@pytest.mark.parametrize("caller", list(EXPECTED))
def test_the_same_answer_for_a_level_on_every_route(server, routes, caller):  # noqa: F811
    urls, t = routes
    expected = EXPECTED[caller]
    with server.client(KEYS[caller]) as client:
        answers = {}
        for family, url in urls.items():
            if isinstance(url, tuple):
                response = client.post(url[1], json={"op": "isNull", "args": [{"property": "house"}]})
            else:
                response = client.get(url)
            answers[family] = response.status_code
            if expected != 200:
                assert response.json()["code"] == ("NotFound" if expected == 404 else "Forbidden"), family
        assert answers == dict.fromkeys(urls, expected)

        # the routes that list layers instead of naming one: the layer is there for staff only
        sees = expected == 200
        assert (LAYER in {c["id"] for c in client.get("/collections").json()["collections"]}) == sees
        assert (f"/collections/{LAYER}" in str(client.get("/openapi?f=json").json()["paths"])) == sees
        assert (LAYER in {layer["id"] for layer in client.get("/map/config.json").json()["layers"]}) == sees
        assert (LAYER in {layer["id"] for layer in client.get("/tiles/tilejson.json").json()["vector_layers"]}) == sees
        style_layers = client.get("/styles/geoportal.json").json()["layers"]
        assert any(layer.get("source-layer") == LAYER for layer in style_layers) == sees
        combined = client.get(f"/tiles/{t.z}/{t.x}/{t.y}.pbf").content
        assert (LAYER in (mapbox_vector_tile.decode(combined) if combined else {})) == sees
