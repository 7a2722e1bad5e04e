"""What a route knows of its caller: the View of its access level (put in the scope by the dispatcher), whether
that level sees internal layers, whether it sees a given layer, and the public base URL for links."""

from __future__ import annotations

from starlette.requests import Request

from server.access import sees, sees_internal
from server.ogcapi.site import view_of


def staff(request: Request) -> bool:
    return sees_internal(view_of(request).level)


def base_url(request: Request) -> str:
    """The configured public URL: links never echo the request's Host header."""
    return request.app.state.settings.base_url


def visible(request: Request, layer_id: str) -> bool:
    spec = request.app.state.catalog.get(layer_id)
    return spec is not None and sees(view_of(request).level, spec)
