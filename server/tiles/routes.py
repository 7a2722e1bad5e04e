"""Routes of the vector tiles: XYZ (one layer or all combined), OGC API Tiles, TileJSON.

Every route answers for the caller's access level: the public level never sees internal layers or fields,
exactly as in the features API.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from server.caller import base_url, staff, visible
from server.errors import BadRequest, NotFound
from server.flights import Flights
from server.tiles.shared import StoredTile
from server.tiles.vector import Tile, accepts_gzip, etag_matches, ogc_tilesets
from server.zero_copy import ZERO_COPY_SEND, sends_files

WEB_MERCATOR = "WebMercatorQuad"
RENDERINGS = Flights()  # per worker process; a key holds its VectorTiles' id, alive with the flight's task
_TILE_PATH = re.compile(r"/(tiles/|collections/[^/]+/tiles(/|$))")


def is_tile_path(path: str) -> bool:
    """A path these routes answer. They read the store's versions per request themselves (server/tiles/vector.py),
    so they need the caller's level and not the Site rebuilt after a publication (downloads copied, seconds at 1M
    features): the access dispatcher does not hold them back for it."""
    return _TILE_PATH.match(path) is not None


async def _tile(request: Request, z: int, x: int, y: int, layers: list[str] | None) -> Response:
    tiles = request.app.state.tiles
    options = {
        "staff": staff(request),
        "datetime": request.query_params.get("datetime"),
        "gzip": accepts_gzip(request.headers.get("accept-encoding")),
    }
    # a tile of the shared store comes as its open file where the server sends files (server/zero_copy.py)
    tile, identity = tiles.looked_up(z, x, y, layers, **options, as_file=sends_files(request.scope))
    if tile is None:  # rendered once for every identical request arriving meanwhile (after a publication: many)
        render = functools.partial(tiles.tile, z, x, y, layers, **options)  # in the worker's turn (turns.py)
        tile = await RENDERINGS.shared((id(tiles), identity), lambda: tiles.turns.render(render))
    if tile.file is not None:
        return StoredTileResponse(tile, not_modified=etag_matches(request.headers.get("if-none-match"), tile.etag))
    if etag_matches(request.headers.get("if-none-match"), tile.etag):
        return Response(status_code=304, headers=tile.headers)
    # 204 for an empty tile would make some clients stop asking deeper; an empty MVT body is valid
    return Response(tile.body, headers=tile.headers)


class StoredTileResponse(Response):
    """A tile of the shared store answered from its open file (Tile.file), sent from the page cache; the file is
    closed once sent, or when the answer is a 304."""

    def __init__(self, tile: Tile, not_modified: bool):
        assert tile.file is not None
        self.file: StoredTile | None = tile.file
        if not_modified:
            super().__init__(status_code=304, headers=tile.headers)
        else:
            super().__init__(headers={**tile.headers, "Content-Length": str(tile.file.size)})
        self.not_modified = not_modified

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        file, self.file = self.file, None  # closed here, whatever happens
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self.not_modified:
                await send({"type": "http.response.body", "body": b""})
            else:
                await send({"type": ZERO_COPY_SEND, "file": file.fd, "count": file.size})
        finally:
            os.close(file.fd)

    def __del__(self) -> None:
        if self.file is not None:  # never sent (an error on the way): its descriptor is not left open
            with contextlib.suppress(OSError):
                os.close(self.file.fd)


async def xyz_combined(request: Request) -> Response:
    p = request.path_params
    return await _tile(request, p["z"], p["x"], p["y"], None)


async def xyz_layer(request: Request) -> Response:
    p = request.path_params
    return await _tile(request, p["z"], p["x"], p["y"], [p["layer_id"]])


async def ogc_tile(request: Request) -> Response:
    p = request.path_params
    if p["tms"] != WEB_MERCATOR:
        raise NotFound(f"tile matrix set {p['tms']!r} is not offered; use {WEB_MERCATOR}")
    if request.query_params.get("f", "mvt") != "mvt":
        raise BadRequest("tiles are offered as f=mvt only")
    return await _tile(request, p["z"], p["col"], p["row"], [p["collection_id"]])


async def tilejson(request: Request) -> Response:
    base, layer_id = base_url(request), request.path_params.get("layer_id")
    if layer_id is not None and not visible(request, layer_id):
        raise NotFound(f"no layer {layer_id!r}")
    template = f"{base}/tiles/{layer_id}/{{z}}/{{x}}/{{y}}.pbf" if layer_id else f"{base}/tiles/{{z}}/{{x}}/{{y}}.pbf"
    document = await run_in_threadpool(
        request.app.state.tiles.tilejson, template, [layer_id] if layer_id else None, staff=staff(request)
    )
    return JSONResponse(document)


async def collection_tilesets(request: Request) -> Response:
    layer_id, base = request.path_params["collection_id"], base_url(request)
    if not visible(request, layer_id):
        raise NotFound(f"no collection {layer_id!r}")
    spec = request.app.state.catalog[layer_id]
    return JSONResponse(
        ogc_tilesets(
            title=spec.title.en,
            tileset_href=f"{base}/collections/{layer_id}/tiles/{WEB_MERCATOR}",
            tiling_scheme_href=f"{base}/TileMatrixSets/{WEB_MERCATOR}",
        )
    )


async def collection_tileset(request: Request) -> Response:
    layer_id, base = request.path_params["collection_id"], base_url(request)
    if not visible(request, layer_id) or request.path_params["tms"] != WEB_MERCATOR:
        raise NotFound(f"no tileset {request.url.path}")
    spec = request.app.state.catalog[layer_id]
    document = await run_in_threadpool(
        request.app.state.tiles.ogc_tileset,
        layer_id,
        title=spec.title.en,
        staff=staff(request),
        tiles_href=f"{base}/collections/{layer_id}/tiles/{WEB_MERCATOR}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}?f=mvt",
        tiling_scheme_href=f"{base}/TileMatrixSets/{WEB_MERCATOR}",
        self_href=f"{base}/collections/{layer_id}/tiles/{WEB_MERCATOR}",
    )
    return JSONResponse(document)


def tile_routes() -> list[BaseRoute]:
    """Registered before pygeoapi's routes, so `/collections/{id}/tiles…` is ours."""
    return [
        Route("/tiles/tilejson.json", tilejson),
        Route("/tiles/{z:int}/{x:int}/{y:int}.pbf", xyz_combined),
        Route("/tiles/{layer_id}/tilejson.json", tilejson),
        Route("/tiles/{layer_id}/{z:int}/{x:int}/{y:int}.pbf", xyz_layer),
        Route("/collections/{collection_id}/tiles", collection_tilesets),
        Route("/collections/{collection_id}/tiles/{tms}", collection_tileset),
        Route("/collections/{collection_id}/tiles/{tms}/{z:int}/{row:int}/{col:int}", ogc_tile),
    ]
