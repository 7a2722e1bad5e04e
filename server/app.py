"""The ASGI application: the access dispatcher in front of per-level pygeoapi routes, downloads and static files."""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from pathlib import Path

import pygeoapi
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layers.catalog import Catalog, load_catalog
from layers.settings import PathSettings, get_paths
from server.auth import KeyRing, Level, allows, load_keyring, presented_key
from server.downloads import file_response
from server.errors import forbidden, http_exception, ogc_exception, server_error, unauthorized
from server.map_routes import map_routes
from server.provider_crs import install_city_crs
from server.routes import api_routes, patch_pygeoapi
from server.settings import ServerSettings, get_server_settings
from server.site import VIEW, LiveSite, build_site, view_of, watched_files
from server.tiles import VectorTiles

COLLECTION_PATH = re.compile(r"^/(?:collections|downloads)/([^/]+?)(?:\.gpkg)?(?:/.*)?$")
PYGEOAPI_STATIC = Path(pygeoapi.__file__).parent / "static"


class AccessDispatcher:
    """Resolves the caller's level from the key, then hands the request to that level's View. Without a key
    everything runs against the public View, which has never heard of internal layers or fields."""

    def __init__(self, app: ASGIApp, live: LiveSite, keyring: KeyRing):
        self.app = app
        self.live = live
        self.keyring = keyring

    async def level_of(self, key: str) -> Level | None:
        """The level of a presented key; None for a key that is not valid."""
        known, api_key = self.keyring.cached(key)
        if not known:
            api_key = await run_in_threadpool(self.keyring.lookup, key)  # scrypt: not on the event loop
        return api_key.level if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        site = await self.live.current()
        key = presented_key(Headers(scope=scope))
        level = "public" if key is None else await self.level_of(key)
        if level is None:
            await unauthorized()(scope, receive, send)
            return
        # A valid key learns that a collection exists but is above it; without a key it does not exist (404).
        match = COLLECTION_PATH.match(scope["path"])
        if key is not None and match and match[1] in site.access and not allows(level, site.access[match[1]]):
            await forbidden(match[1])(scope, receive, send)
            return

        async def send_varying(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"vary", b"X-API-Key, Authorization")]
            await send(message)

        await self.app({**scope, VIEW: site.views[level]}, receive, send_varying)


async def download(request: Request) -> Response:
    """/downloads/<layer>.gpkg: the caller's level decides which file, and whether the layer exists at all."""
    layer_id = request.path_params["layer_id"]
    path = view_of(request).downloads.get(layer_id)
    if path is None:
        return ogc_exception(404, f"no layer {layer_id!r} to download")
    return await run_in_threadpool(file_response, request, path, f"{layer_id}.gpkg")


REFRESH_SECONDS = 5.0


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    """Pre-render the low zooms of the combined tileset after each publication, in the background:
    the first low-zoom tile of a large new file costs seconds, which no visitor should wait for."""
    stop = threading.Event()

    def warm() -> None:
        while not stop.wait(REFRESH_SECONDS):
            try:
                app.state.tiles.refresh()
            except (OSError, sqlite3.Error) as error:  # a file replaced mid-read: next round
                logging.getLogger(__name__).warning("tile pre-rendering skipped: %s", error)

    worker = threading.Thread(target=warm, name="tile-refresh", daemon=True)
    worker.start()
    yield
    stop.set()


def create_app(
    catalog: Catalog | None = None,
    paths: PathSettings | None = None,
    settings: ServerSettings | None = None,
    keyring: KeyRing | None = None,
) -> Starlette:
    """The server for the published files of `paths`; everything defaults to the environment."""
    paths = paths or get_paths()
    catalog = catalog or load_catalog(paths.catalog_dir)
    settings = settings or get_server_settings()
    if keyring is None:
        secret = settings.api_keys.get_secret_value() if settings.api_keys else None
        keyring = load_keyring(settings.api_keys_file, secret)
    patch_pygeoapi()
    install_city_crs({crs_id: d.proj4 for crs_id, d in catalog.city.crs.items()})
    live = LiveSite(lambda: build_site(catalog, paths, settings), watched_files(catalog, paths))
    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/downloads/{layer_id}.gpkg", download),
            Mount("/static", StaticFiles(directory=PYGEOAPI_STATIC), name="static"),
            *map_routes(),
            *api_routes(),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "HEAD", "OPTIONS"],
                allow_headers=["X-API-Key", "Authorization", "Content-Type", "Accept-Language"],
                expose_headers=["Content-Crs", "Content-Language", "ETag"],
            ),
            Middleware(AccessDispatcher, live=live, keyring=keyring),
        ],
        exception_handlers={HTTPException: http_exception, Exception: server_error},
    )
    app.state.live = live
    app.state.catalog, app.state.paths, app.state.settings = catalog, paths, settings
    app.state.tiles = VectorTiles(catalog, paths.published_path)  # owns the tile cache for the process
    return app
