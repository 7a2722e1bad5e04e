"""Routes of the web map: its page and static files, its configuration, the raster overlay, vendored packages."""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from layers.rasters import PRODUCT
from server.caller import base_url, staff
from server.errors import NotFound
from server.styles.routes import combined_style
from server.webmap.config import map_config, raster_png

STATIC = Path(__file__).resolve().parent.parent / "static"


async def web_map_config(request: Request) -> Response:
    state = request.app.state
    config = await run_in_threadpool(
        map_config,
        state.catalog,
        state.store.layer_path,
        state.store.raster_path(PRODUCT),
        base_url(request),
        staff(request),
    )
    return JSONResponse(config)


async def web_map_raster(request: Request) -> Response:
    path = request.app.state.store.raster_path(request.path_params["product"])
    if not path.exists():
        raise NotFound("the raster product is not published yet")
    return Response(
        await run_in_threadpool(raster_png, path), media_type="image/png", headers={"Cache-Control": "no-cache"}
    )


async def web_map_page(request: Request) -> Response:
    return RedirectResponse(f"{base_url(request)}/map/")


def map_routes() -> list[BaseRoute]:
    return [
        Route("/map", web_map_page),
        Route("/map/config.json", web_map_config),
        Route("/map/style.json", combined_style),
        Route("/map/raster/{product}.png", web_map_raster),
        Mount("/map", StaticFiles(directory=STATIC / "map", html=True), name="map"),
        Mount("/vendor", StaticFiles(directory=STATIC / "vendor", check_dir=False), name="vendor"),
    ]
