"""Routes of the styles: the MapLibre style of the combined tileset and a QGIS QML per layer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.caller import base_url, staff, visible
from server.errors import NotFound
from server.styles.maplibre import qgis_style
from server.webmap.config import map_style

QML_MEDIA_TYPE = "application/vnd.qgis.qml"
STYLE_MEDIA_TYPE = "application/vnd.mapbox.style+json"


async def combined_style(request: Request) -> Response:
    """The MapLibre style of the combined tileset; the web map loads the same document."""
    state = request.app.state
    style = map_style(state.catalog, base_url(request), staff(request), state.settings.basemap_url)
    return JSONResponse(style, media_type=STYLE_MEDIA_TYPE)


async def layer_qml(request: Request) -> Response:
    layer_id = request.path_params["layer_id"]
    if not visible(request, layer_id):
        raise NotFound(f"no layer {layer_id!r}")
    qml = qgis_style(request.app.state.catalog[layer_id])
    return Response(
        qml, media_type=QML_MEDIA_TYPE, headers={"Content-Disposition": f'attachment; filename="{layer_id}.qml"'}
    )


def style_routes() -> list[BaseRoute]:
    return [
        Route("/styles/geoportal.json", combined_style),
        Route("/styles/{layer_id}.qml", layer_qml),
    ]
