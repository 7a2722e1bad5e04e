"""The ASGI application: the access dispatcher in front of per-level pygeoapi routes, downloads and static files."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layers.catalog import Catalog, load_catalog
from layers.settings import PathSettings, get_paths
from server.access import Level, layer_in_path, refusal
from server.affects.routes import affects_routes
from server.auth import LiveKeyRing, presented_key
from server.changes.routes import change_routes
from server.early_answers import EarlyAnswers
from server.errors import (
    GeoportalError,
    NotAuthorized,
    NotFound,
    PayloadTooLarge,
    error_response,
    geoportal_error,
    http_exception,
    server_error,
)
from server.features.crs import install_city_crs
from server.memory import TRIM_SECONDS, freeze_long_lived, release_free_memory
from server.ogcapi.config import PYGEOAPI_STATIC
from server.ogcapi.downloads import file_response
from server.ogcapi.read_ahead import read_ahead
from server.ogcapi.routes import api_routes, patch_pygeoapi
from server.ogcapi.site import SITE, VIEW, LiveSite, build_site, view_of
from server.published.store import open_store
from server.reports.routes import report_routes
from server.settings import ServerSettings, get_server_settings
from server.styles.routes import style_routes
from server.tiles.routes import is_tile_path, tile_routes
from server.tiles.vector import VectorTiles
from server.webmap.routes import map_routes

STATIC = Path(__file__).resolve().parent / "static"
EXPOSED_HEADERS = ("Content-Crs", "Content-Language", "ETag")  # to scripts of other origins (CORS)


class AccessDispatcher:
    """Resolves the caller's level from the key, asks the access rule about the layer the path names, then
    hands the request to that level's View. Without a key everything runs against the public View, which has
    never heard of internal layers or fields."""

    def __init__(self, app: ASGIApp, live: LiveSite, keys: LiveKeyRing, catalog: Catalog):
        self.app = app
        self.live = live
        self.keys = keys
        self.catalog = catalog

    async def level_of(self, key: str) -> Level | None:
        """The level of a presented key; None for a key that is not valid."""
        keyring = self.keys.current()
        known, api_key = keyring.cached(key)
        if not known:
            api_key = await run_in_threadpool(keyring.lookup, key)  # scrypt: not on the event loop
        return api_key.level if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        site = scope.get(SITE) or (
            self.live.site if is_tile_path(scope["path"]) else await self.live.current()  # checked once per request
        )
        key = presented_key(Headers(scope=scope))
        level = "public" if key is None else await self.level_of(key)
        if level is None:
            await error_response(NotAuthorized("the API key is not valid"))(scope, receive, send)
            return
        layer_id = layer_in_path(scope["path"])
        refused = layer_id and refusal(self.catalog, layer_id, level, keyed=key is not None)
        if refused:
            await error_response(refused)(scope, receive, send)
            return

        async def send_varying(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"vary", b"X-API-Key, Authorization")]
            await send(message)

        await self.app({**scope, VIEW: site.views[level]}, receive, send_varying)


class BodyLimit:
    """Refuses a request body above `limit` bytes: by its Content-Length before reading, else as it streams."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            too_large = PayloadTooLarge(f"the request body exceeds {self.limit} bytes")
            await error_response(too_large)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise PayloadTooLarge(f"the request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, counted, send)


def slash_redirect(base_url: str, router: Router) -> ASGIApp:
    """Starlette's redirect between `/x/` and `/x` builds its Location from the request's Host header (link
    poisoning); this one builds it from the configured public URL. Anything else is an OGC 404."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] == "http" and path != "/":
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            if any(route.matches({**scope, "path": other})[0] is not Match.NONE for route in router.routes):
                query = scope.get("query_string", b"").decode("latin-1")
                location = base_url + other + (f"?{query}" if query else "")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await error_response(NotFound(f"no resource at {path}"))(scope, receive, send)

    return app


async def download(request: Request) -> Response:
    """/downloads/<layer>.gpkg: the caller's level decides which file, and whether the layer exists at all."""
    layer_id = request.path_params["layer_id"]
    path = view_of(request).downloads.get(layer_id)
    if path is None:
        raise NotFound(f"no layer {layer_id!r} to download")
    return await run_in_threadpool(file_response, request, path, f"{layer_id}.gpkg")


REFRESH_SECONDS = 5.0


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    """After each publication, in the background: read ahead the new versions' window data
    (server.ogcapi.read_ahead), and pre-render the combined tileset (z0..tile_prerender_zoom) into the tile store the
    workers share (one worker renders, the others read): a tile of a large new file costs tens of ms to seconds, which
    no visitor should wait for. The same thread hands the memory freed by such one-off work (tile indexes,
    pre-rendering, a rebuilt site, PostGIS copies) back to the system (server.memory). What the worker holds once
    started is left out of the garbage collector's full collections (`freeze_long_lived`)."""
    stop = threading.Event()

    def warm() -> None:
        trimmed = time.monotonic()
        while not stop.is_set():
            # every few seconds, or at once when a tile request saw a new version (its tiles are prepared meanwhile)
            app.state.tiles.noticed.wait(REFRESH_SECONDS)
            app.state.tiles.noticed.clear()
            if stop.is_set():
                break
            rendered = False
            try:
                read_ahead(app.state.live.site)  # starts reads in threads of their own: no wait for the tiles
                rendered = app.state.tiles.refresh()
            except (OSError, sqlite3.Error) as error:  # a file replaced mid-read: next round
                logging.getLogger(__name__).warning("tile pre-rendering skipped: %s", error)
            if rendered or time.monotonic() - trimmed >= TRIM_SECONDS:
                release_free_memory()
                trimmed = time.monotonic()

    worker = threading.Thread(target=warm, name="tile-refresh", daemon=True)
    freeze_long_lived()
    worker.start()
    yield
    stop.set()


def create_app(
    catalog: Catalog | None = None,
    paths: PathSettings | None = None,
    settings: ServerSettings | None = None,
    keyring: LiveKeyRing | None = None,
) -> Starlette:
    """The server for the published files of `paths`; everything defaults to the environment."""
    paths = paths or get_paths()
    catalog = catalog or load_catalog(paths.catalog_dir)
    settings = settings or get_server_settings()
    if keyring is None:
        secret = settings.api_keys.get_secret_value() if settings.api_keys else None
        keyring = LiveKeyRing(settings.api_keys_file, secret)
    patch_pygeoapi()
    install_city_crs({crs_id: d.proj4 for crs_id, d in catalog.city.crs.items()})
    store = open_store(catalog, paths, settings.cache_path, settings.workers)
    live = LiveSite(lambda: build_site(catalog, store, settings), store.signature)
    app = Starlette(
        lifespan=lifespan,
        routes=[
            *api_routes(),  # first: items are asked most, and Starlette tries the routes in order (no path is in two)
            Route("/downloads/{layer_id}.gpkg", download),
            Mount("/static", StaticFiles(directory=PYGEOAPI_STATIC), name="static"),
            Mount("/pages", StaticFiles(directory=STATIC / "pages"), name="pages"),
            *tile_routes(),
            *style_routes(),
            *map_routes(),
            *affects_routes(),
            *change_routes(),
            *report_routes(),
        ],
        middleware=[
            # cached public tiles and pages, and plain public pages, first
            Middleware(
                EarlyAnswers,
                live=live,
                catalog=catalog,
                expose_headers=EXPOSED_HEADERS,
                plain_pages=settings.plain_pages,
            ),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "HEAD", "OPTIONS"],
                allow_headers=["X-API-Key", "Authorization", "Content-Type", "Accept-Language"],
                expose_headers=EXPOSED_HEADERS,
            ),
            Middleware(BodyLimit, limit=settings.max_body_bytes),
            Middleware(AccessDispatcher, live=live, keys=keyring, catalog=catalog),
        ],
        exception_handlers={GeoportalError: geoportal_error, HTTPException: http_exception, Exception: server_error},
    )
    app.router.redirect_slashes = False
    app.router.default = slash_redirect(settings.base_url, app.router)
    app.state.live = live
    app.state.catalog, app.state.paths, app.state.settings, app.state.store = catalog, paths, settings, store
    # owns the tile cache for the process
    app.state.tiles = VectorTiles(
        catalog,
        backend=store.tile_backend(),
        cache_bytes=settings.tile_cache_mb * 2**20,
        shared_dir=settings.cache_path / "tiles",  # the encoded tiles all workers read, rendered once per publication
        prerender_zoom=settings.tile_prerender_zoom,
        switch_seconds=settings.tile_switch_seconds,  # tiles of the version before while the new one's are prepared
        renders_at_once=settings.tile_renders,
    )
    return app
