"""Routes of the tile publisher: XYZ and OGC API Tiles vector tiles, TileJSON, styles, the web map.

Every route answers for the caller's access level (the dispatcher put its View in the scope): the public
level never sees internal layers or fields, exactly as in the features API.
"""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from assets.raster import PRODUCT
from server.access import sees, sees_internal
from server.errors import GeoportalError, error_response, ogc_exception
from server.site import view_of
from server.styles import qgis_style
from server.tiles import accepts_gzip, etag_matches, ogc_tilesets
from server.webmap import map_config, map_style, raster_png

STATIC = Path(__file__).resolve().parent / "static"
WEB_MERCATOR = "WebMercatorQuad"
QML_MEDIA_TYPE = "application/vnd.qgis.qml"
STYLE_MEDIA_TYPE = "application/vnd.mapbox.style+json"


def _staff(request: Request) -> bool:
    return sees_internal(view_of(request).level)


def _base(request: Request) -> str:
    return request.app.state.settings.base_url


def _visible(request: Request, layer_id: str) -> bool:
    spec = request.app.state.catalog.get(layer_id)
    return spec is not None and sees(view_of(request).level, spec)


async def _tile(request: Request, z: int, x: int, y: int, layers: list[str] | None) -> Response:
    tiles = request.app.state.tiles
    options = {
        "staff": _staff(request),
        "datetime": request.query_params.get("datetime"),
        "gzip": accepts_gzip(request.headers.get("accept-encoding")),
    }
    try:
        tile = tiles.cached_tile(z, x, y, layers, **options) or await run_in_threadpool(
            tiles.tile, z, x, y, layers, **options
        )
    except GeoportalError as error:
        return error_response(error)
    if etag_matches(request.headers.get("if-none-match"), tile.etag):
        return Response(status_code=304, headers=tile.headers)
    # 204 for an empty tile would make some clients stop asking deeper; an empty MVT body is valid
    return Response(tile.body, headers=tile.headers)


async def xyz_combined(request: Request) -> Response:
    p = request.path_params
    return await _tile(request, p["z"], p["x"], p["y"], None)


async def xyz_layer(request: Request) -> Response:
    p = request.path_params
    return await _tile(request, p["z"], p["x"], p["y"], [p["layer_id"]])


async def ogc_tile(request: Request) -> Response:
    p = request.path_params
    if p["tms"] != WEB_MERCATOR:
        return ogc_exception(404, f"tile matrix set {p['tms']!r} is not offered; use {WEB_MERCATOR}")
    if request.query_params.get("f", "mvt") != "mvt":
        return ogc_exception(400, "tiles are offered as f=mvt only")
    return await _tile(request, p["z"], p["col"], p["row"], [p["collection_id"]])


async def tilejson(request: Request) -> Response:
    base, layer_id = _base(request), request.path_params.get("layer_id")
    if layer_id is not None and not _visible(request, layer_id):
        return ogc_exception(404, f"no layer {layer_id!r}")
    template = f"{base}/tiles/{layer_id}/{{z}}/{{x}}/{{y}}.pbf" if layer_id else f"{base}/tiles/{{z}}/{{x}}/{{y}}.pbf"
    document = await run_in_threadpool(
        request.app.state.tiles.tilejson, template, [layer_id] if layer_id else None, staff=_staff(request)
    )
    return JSONResponse(document)


async def collection_tilesets(request: Request) -> Response:
    layer_id, base = request.path_params["collection_id"], _base(request)
    if not _visible(request, layer_id):
        return ogc_exception(404, f"no collection {layer_id!r}")
    spec = request.app.state.catalog[layer_id]
    return JSONResponse(
        ogc_tilesets(
            title=spec.title.en,
            tileset_href=f"{base}/collections/{layer_id}/tiles/{WEB_MERCATOR}",
            tiling_scheme_href=f"{base}/TileMatrixSets/{WEB_MERCATOR}",
        )
    )


async def collection_tileset(request: Request) -> Response:
    layer_id, base = request.path_params["collection_id"], _base(request)
    if not _visible(request, layer_id) or request.path_params["tms"] != WEB_MERCATOR:
        return ogc_exception(404, f"no tileset {request.url.path}")
    spec = request.app.state.catalog[layer_id]
    document = await run_in_threadpool(
        request.app.state.tiles.ogc_tileset,
        layer_id,
        title=spec.title.en,
        staff=_staff(request),
        tiles_href=f"{base}/collections/{layer_id}/tiles/{WEB_MERCATOR}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}?f=mvt",
        tiling_scheme_href=f"{base}/TileMatrixSets/{WEB_MERCATOR}",
        self_href=f"{base}/collections/{layer_id}/tiles/{WEB_MERCATOR}",
    )
    return JSONResponse(document)


async def combined_style(request: Request) -> Response:
    """The MapLibre style of the combined tileset; the web map loads the same document."""
    state = request.app.state
    style = map_style(state.catalog, _base(request), _staff(request), state.settings.basemap_url)
    return JSONResponse(style, media_type=STYLE_MEDIA_TYPE)


async def layer_qml(request: Request) -> Response:
    layer_id = request.path_params["layer_id"]
    if not _visible(request, layer_id):
        return ogc_exception(404, f"no layer {layer_id!r}")
    qml = qgis_style(request.app.state.catalog[layer_id])
    return Response(
        qml, media_type=QML_MEDIA_TYPE, headers={"Content-Disposition": f'attachment; filename="{layer_id}.qml"'}
    )


async def web_map_config(request: Request) -> Response:
    state = request.app.state
    config = await run_in_threadpool(
        map_config,
        state.catalog,
        state.paths.published_path,
        state.paths.raster_path(PRODUCT),
        _base(request),
        _staff(request),
    )
    return JSONResponse(config)


async def web_map_raster(request: Request) -> Response:
    path = request.app.state.paths.raster_path(request.path_params["product"])
    if not path.exists():
        return ogc_exception(404, "the raster product is not published yet")
    return Response(
        await run_in_threadpool(raster_png, path), media_type="image/png", headers={"Cache-Control": "no-cache"}
    )


async def web_map_page(request: Request) -> Response:
    return RedirectResponse(f"{_base(request)}/map/")


def map_routes() -> list[BaseRoute]:
    """Registered before pygeoapi's routes, so `/collections/{id}/tiles…` is ours."""
    return [
        Route("/tiles/tilejson.json", tilejson),
        Route("/tiles/{z:int}/{x:int}/{y:int}.pbf", xyz_combined),
        Route("/tiles/{layer_id}/tilejson.json", tilejson),
        Route("/tiles/{layer_id}/{z:int}/{x:int}/{y:int}.pbf", xyz_layer),
        Route("/collections/{collection_id}/tiles", collection_tilesets),
        Route("/collections/{collection_id}/tiles/{tms}", collection_tileset),
        Route("/collections/{collection_id}/tiles/{tms}/{z:int}/{row:int}/{col:int}", ogc_tile),
        Route("/styles/geoportal.json", combined_style),
        Route("/styles/{layer_id}.qml", layer_qml),
        Route("/map", web_map_page),
        Route("/map/config.json", web_map_config),
        Route("/map/style.json", combined_style),
        Route("/map/raster/{product}.png", web_map_raster),
        Mount("/map", StaticFiles(directory=STATIC / "map", html=True), name="map"),
        Mount("/vendor", StaticFiles(directory=STATIC / "vendor", check_dir=False), name="vendor"),
    ]
