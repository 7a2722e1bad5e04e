"""Serve the published layers: `python -m server` (settings from GEOPORTAL_* and GEOPORTAL_SERVER_* variables)."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layers.catalog import Catalog, CatalogError, load_catalog
from layers.settings import get_paths
from server.app import create_app
from server.listening import bind_for_workers, run_workers
from server.memory import few_malloc_arenas
from server.settings import get_server_settings
from server.zero_copy import ZeroCopyHttpToolsProtocol


def banner(app: Starlette, catalog: Catalog, base_url: str) -> str:
    site = app.state.live.site
    public = site.views["public"].api.config["resources"]
    lines = [
        "",
        f"Geoportal OGC API        {base_url}/",
        f"  collections            {base_url}/collections",
        f"  OpenAPI                {base_url}/openapi  (HTML: {base_url}/openapi?f=html)",
        "  QGIS: Layer > Add Layer > Add WFS / OGC API - Features Layer, URL = the landing page above",
    ]
    for layer_id in (layer_id for layer_id in site.access if layer_id in catalog):
        note = "" if layer_id in public else "  (internal: send X-API-Key)"
        lines.append(f"  {layer_id:22} {base_url}/collections/{layer_id}/items{note}")
    missing = [layer_id for layer_id in catalog if layer_id not in site.access]
    if not site.access:
        lines.append(f"  no layer published yet in {get_paths().published_dir}: run `python -m pipelines`")
    elif missing:
        lines.append(f"  not published yet: {', '.join(missing)}")
    note = getattr(app.state.store, "note", None)
    if note:
        lines.append(f"Store                    {note}")
    lines += [
        f"Web map                  {base_url}/map/",
        f"Vector tiles (XYZ)       {base_url}/tiles/{{z}}/{{x}}/{{y}}.pbf   TileJSON {base_url}/tiles/tilejson.json",
        f"Styles                   {base_url}/styles/geoportal.json (MapLibre), {base_url}/styles/<layer>.qml (QGIS)",
        f"Raster (OGC Coverages)   {base_url}/collections/disruption_load/coverage",
        "Dagster UI (runs, checks)  http://127.0.0.1:3000 with `python3 dev.py run` (or `python3 dev.py ui`)",
        "",
    ]
    return "\n".join(lines)


WORKER_HEALTHCHECK_SECONDS = 120
WORKER_HEADER = b"x-server-worker"


class WorkerHeader:
    """Names the worker process on every response (`X-Server-Worker: <host>:<pid>`): with `--workers N`, or N
    machines, it says which one answered, e.g. which one served something stale."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.value = f"{os.uname().nodename}:{os.getpid()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (WORKER_HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, tagged)


def worker_app() -> ASGIApp:
    """What each of N worker processes serves (uvicorn's factory): its own app, tile cache and connections."""
    few_malloc_arenas()
    app = create_app()
    interval = getattr(app.state.store, "worker_switch_seconds", None)  # the store's choice (server.published)
    if interval:
        sys.setswitchinterval(interval)
    return WorkerHeader(app)


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", help="listening address (GEOPORTAL_SERVER_HOST)")
    parser.add_argument("--port", type=int, help="listening port (GEOPORTAL_SERVER_PORT)")
    parser.add_argument("--workers", type=int, help="server processes (GEOPORTAL_SERVER_WORKERS)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    few_malloc_arenas()
    flags = {name: value for name, value in vars(arguments(argv)).items() if value is not None}
    # Flags go into the environment, so worker processes (which build their own app) read the same settings.
    os.environ.update({f"GEOPORTAL_SERVER_{name.upper()}": str(value) for name, value in flags.items()})
    get_server_settings.cache_clear()
    try:
        settings = get_server_settings()
    except ValidationError as exc:
        print(f"python -m server: {exc}", file=sys.stderr)
        return 2
    paths = get_paths()
    try:
        catalog = load_catalog(paths.catalog_dir)
    except CatalogError as exc:
        print(f"python -m server: catalog error: {exc}", file=sys.stderr)
        return 2
    app = create_app(catalog, paths, settings)
    print(banner(app, catalog, settings.base_url), flush=True)
    common = {"host": settings.host, "port": settings.port, "log_level": "info", "proxy_headers": True}
    common["http"] = ZeroCopyHttpToolsProtocol  # uvicorn's httptools protocol, stored tiles sent with sendfile
    common["access_log"] = settings.access_log
    if settings.workers == 1:
        uvicorn.run(WorkerHeader(app), **common)
    else:
        del app  # each worker builds its own
        # uvicorn kills a worker that does not answer its health check within 5 s by default; a worker copying a
        # 1M-feature layer or building its tile index holds the GIL for longer on a busy machine (seen: every
        # worker killed and restarted, over and over, while starting on a 1M-feature PostGIS layer)
        common["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
        config = uvicorn.Config("server.__main__:worker_app", factory=True, workers=settings.workers, **common)
        try:  # each worker on a listening socket of its own, so connections opened together are spread over them
            sock = bind_for_workers(config)
        except OSError as exc:
            print(
                f"python -m server: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr
            )
            return 2
        run_workers(config, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
