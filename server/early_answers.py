"""Answers already known (a cached public tile, a cached public item page) given in front of the middleware stack,
byte for byte as the routes behind it answer them.

A map asks dozens of tiles per view and QGIS the same pages again and again, most of them already in a cache.
Through CORS, the body limit, the access dispatcher and Starlette's router, a cached answer cost ~10x what reading
it from the cache costs (the "Scale out" issue measured tiles at 0.06x nginx serving the same bytes). Only what
needs no decision is answered here: GET without a key of a public layer's tile or item page that is cached, and a
plain public item page (bbox, limit, offset: server/ogcapi/plain_items.py) that is not; the rest (misses, keys,
internal layers, other queries, errors) goes down the stack as before. The headers are the ones the stack
adds: the answer's own, `Vary` of the access dispatcher and of CORS, and CORS's allow-origin and expose headers
for a request with Origin (server.app configures CORS with allow_origins=["*"]). A tile of the shared store is sent
from its file where the server can (server/zero_copy.py): the page cache's bytes straight to the socket.
"""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from layers.catalog import Catalog
from server.ogcapi.page_cache import PAGES, Page
from server.ogcapi.plain_reads import plain_page_of
from server.ogcapi.routes import page_key
from server.ogcapi.site import SITE, LiveSite
from server.published.files import FileIdentity
from server.published.layer import LruCache
from server.tiles.vector import accepts_gzip, etag_matches
from server.zero_copy import ZERO_COPY_SEND, sends_files

TILE_PATH = re.compile(r"^/tiles/(?:(?P<layer>[^/]+)/)?(?P<z>[0-9]+)/(?P<x>[0-9]+)/(?P<y>[0-9]+)\.pbf$")
ITEMS_PATH = re.compile(r"^/collections/(?P<layer>[^/]+)/items$")
KEY_HEADERS = (b"x-api-key", b"authorization")
VARY = "X-API-Key, Authorization"  # what server.app.AccessDispatcher adds; CORS then adds Origin
TILE_VARY = (b"vary", f"Accept-Encoding, {VARY}, Origin".encode())  # a tile's own Vary, then the stack's


class EarlyAnswers:
    def __init__(
        self,
        app: ASGIApp,
        live: LiveSite,
        catalog: Catalog,
        expose_headers: tuple[str, ...] = (),
        plain_pages: bool = True,
    ):
        self.app = app
        # the app's own (server.app), given here as to the access dispatcher: Starlette's app.state finds each
        # attribute only after a failed lookup has made an AttributeError (~0.4 µs each, three per page)
        self.live, self.catalog = live, catalog
        self.plain_pages = plain_pages
        self.cors = [(b"access-control-allow-origin", b"*")]
        if expose_headers:
            self.cors.append((b"access-control-expose-headers", ", ".join(expose_headers).encode("latin-1")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not await self._answered(scope, send):
            await self.app(scope, receive, send)

    async def _answered(self, scope: Scope, send: Send) -> bool:
        path = scope["path"]
        if path.startswith("/tiles/") and not scope.get("query_string"):
            match = TILE_PATH.match(path)
            kind = "tile"
        elif path.startswith("/collections/"):
            match = ITEMS_PATH.match(path)
            kind = "items"
        else:
            return False
        if match is None:
            return False
        request: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in KEY_HEADERS:
                return False  # the dispatcher decides what a key sees
            request.setdefault(name, value)
        app = scope["app"]
        layer = match["layer"]
        if layer is not None:
            spec = self.catalog.get(layer)
            if spec is None or spec.access != "public":
                return False
        if kind == "tile":
            return await self._tile(app, match, request, send, sends_files(scope))
        return await self._page(app, layer, scope, request, send)

    async def _tile(self, app, match: re.Match, request: dict[bytes, bytes], send: Send, as_file: bool) -> bool:
        """A cached tile; from the shared store as its file, sent from the page cache, where the server can
        (`as_file`, server/zero_copy.py)."""
        layer = match["layer"]
        try:
            tile = app.state.tiles.cached_tile(
                int(match["z"]),
                int(match["x"]),
                int(match["y"]),
                None if layer is None else [layer],
                staff=False,
                datetime=None,
                gzip=accepts_gzip(request.get(b"accept-encoding", b"").decode("latin-1")),
                as_file=as_file,
            )
        except Exception:  # noqa: BLE001 - whatever it is, the tile route answers it (with its error mapping)
            return False
        if tile is None:
            return False
        try:
            matches = b"if-none-match" in request and etag_matches(
                request[b"if-none-match"].decode("latin-1"), tile.etag
            )
            headers = [*tile.raw_headers, TILE_VARY]  # what `_send` makes of tile.headers, made once per tile
            if not matches:
                length = tile.file.size if tile.file is not None else len(tile.body)
                headers.append((b"content-length", str(length).encode()))
            if b"origin" in request:
                headers.extend(self.cors)
            await send({"type": "http.response.start", "status": 304 if matches else 200, "headers": headers})
            if matches:
                await send({"type": "http.response.body", "body": b""})
            elif tile.file is not None:
                await send({"type": ZERO_COPY_SEND, "file": tile.file.fd, "count": tile.file.size})
            else:
                await send({"type": "http.response.body", "body": tile.body})
        finally:
            if tile.file is not None:
                os.close(tile.file.fd)
        return True

    async def _page(self, app, layer: str, scope: Scope, request: dict[bytes, bytes], send: Send) -> bool:
        site = await self.live.current()  # the same check of the published version as the dispatcher's
        scope[SITE] = site  # which the dispatcher then takes instead of checking again
        versions = self.live.file_versions()  # the files that check found: an instant page's, without a stat
        view = site.views["public"]
        accept, language = (request.get(name) for name in (b"accept", b"accept-language"))
        key = page_key(layer, scope["query_string"], *(v.decode("latin-1") if v else None for v in (accept, language)))
        # Every page not kept goes through a flight, an instant page too (which nothing can join: it never awaits).
        # Left so on purpose: its own task lets the loop serve other sockets before it. Small bbox, 1M points, 1
        # worker, 8 connections, two fresh servers each, 2 x 10 s: p95 4.1-5.7 ms against 7.1-7.9 ms with instant
        # pages read inline outside any flight, at the same 1,810-2,236 req/s.
        page = await PAGES.kept_or_made(
            view, key, "early answers", lambda: self._plain_page(app, view, key, scope, versions)
        )
        if page is None:
            return False
        await self._send(send, page.status, _raw_headers(page.headers), page.body, request)
        return True

    async def _plain_page(self, app, view, key: tuple, scope: Scope, versions: dict[str, FileIdentity]) -> Page | None:
        """A plain public page (server.ogcapi.plain_items) read now, kept in PAGES as the items route keeps it."""
        if not self.plain_pages:
            return None
        return await plain_page_of(app, view, key, scope, versions)

    async def _send(
        self, send: Send, status: int, raw: tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]], body: bytes, request
    ) -> None:
        """The answer: its headers as `_raw_headers` made them, its length and, for a request with Origin, CORS's."""
        headers, vary = raw
        headers = [*headers, (b"content-length", str(len(body)).encode()), vary]
        if b"origin" in request:
            headers.extend(self.cors)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_raw = LruCache(256)  # a page's headers dict -> its raw headers (a plain page's are its layer's: one for all)


def _raw_headers(answer_headers: dict[str, str]) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
    """A page's headers as `_send` writes them, without content-length, and its `Vary` with the stack's names
    added: made once per headers dict (a plain page's are its layer's; encoding them was ~1 % of a small bbox)."""

    def make() -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in answer_headers.items()
            if name.lower() != "vary"
        ]
        vary = [value for name, value in answer_headers.items() if name.lower() == "vary"]
        return headers, (b"vary", ", ".join([*vary, VARY, "Origin"]).encode("latin-1"))

    return _raw.owned(answer_headers, (), make)
