"""Cached public vector tiles answered in front of the middleware stack, byte for byte as the tile routes answer.

A map asks dozens of tiles per view, most of them already rendered. Through CORS, the body limit, the access
dispatcher (a stat per published file and the site check) and Starlette's router, a cached tile cost ~10x what
reading it from the cache costs (the "Scale out" issue measured 0.06x nginx serving the same bytes). Only what
needs no decision is answered here: GET of `/tiles/{z}/{x}/{y}.pbf` or `/tiles/<public layer>/{z}/{x}/{y}.pbf`,
without a key and without a query string, whose tile is in the cache; everything else (misses, keys, datetime=,
internal layers, errors) goes down the stack as before. The headers are the ones the stack adds: the tile's,
`Vary` of the access dispatcher and of CORS, and CORS's allow-origin and expose headers for a request with Origin.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from server.tiles.vector import accepts_gzip, etag_matches

TILE_PATH = re.compile(r"^/tiles/(?:(?P<layer>[^/]+)/)?(?P<z>[0-9]+)/(?P<x>[0-9]+)/(?P<y>[0-9]+)\.pbf$")
KEY_HEADERS = (b"x-api-key", b"authorization")
# What server.app.AccessDispatcher and CORSMiddleware add to every answer (the latter with allow_origins=["*"]).
VARY = "X-API-Key, Authorization"


class CachedTileHits:
    def __init__(self, app: ASGIApp, expose_headers: tuple[str, ...] = ()):
        self.app = app
        self.cors = [(b"access-control-allow-origin", b"*")]
        if expose_headers:
            self.cors.append((b"access-control-expose-headers", ", ".join(expose_headers).encode("latin-1")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope.get("query_string")
            or not scope["path"].startswith("/tiles/")
            or not await self._answered(scope, send)
        ):
            await self.app(scope, receive, send)

    async def _answered(self, scope: Scope, send: Send) -> bool:
        match = TILE_PATH.match(scope["path"])
        if match is None:
            return False
        request: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in KEY_HEADERS:
                return False  # the dispatcher decides what a key sees
            request[name] = value
        app = scope["app"]
        layer = match["layer"]
        if layer is not None:
            spec = app.state.catalog.get(layer)
            if spec is None or spec.access != "public":
                return False
        try:
            tile = app.state.tiles.cached_tile(
                int(match["z"]),
                int(match["x"]),
                int(match["y"]),
                None if layer is None else [layer],
                staff=False,
                datetime=None,
                gzip=accepts_gzip(request.get(b"accept-encoding", b"").decode("latin-1")),
            )
        except Exception:  # noqa: BLE001 - whatever it is, the tile route answers it (with its error mapping)
            return False
        if tile is None:
            return False
        not_modified = etag_matches(request.get(b"if-none-match", b"").decode("latin-1") or None, tile.etag)
        headers = []
        vary = []
        for name, value in tile.headers.items():
            if name.lower() == "vary":
                vary.append(value)
            else:
                headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        body = b"" if not_modified else tile.body
        if not not_modified:
            headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"vary", ", ".join([*vary, VARY, "Origin"]).encode("latin-1")))
        if b"origin" in request:
            headers.extend(self.cors)
        await send({"type": "http.response.start", "status": 304 if not_modified else 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
