"""`GET /affects`: what affects an address or a point, as JSON or HTML, for the caller's access level."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.affects.answer import build_answer
from server.affects.page import render_page
from server.affects.params import read_query
from server.caller import base_url
from server.ogcapi.site import view_of


async def affects(request: Request) -> Response:
    state = request.app.state
    query = read_query(
        request.query_params,
        state.catalog,
        request.headers.get("accept", ""),
        request.headers.get("accept-language", ""),
    )
    level = view_of(request).level
    answer = await run_in_threadpool(
        build_answer, query, state.catalog, state.store.layer_path, level, base_url(request)
    )
    headers = {"Content-Language": query.language, "Vary": "Accept, Accept-Language"}
    if query.format == "html":
        page = await run_in_threadpool(render_page, answer, state.catalog, query.language, base_url(request))
        return HTMLResponse(page, headers=headers)
    return JSONResponse(answer, headers=headers)


def affects_routes() -> list[BaseRoute]:
    return [Route("/affects", affects)]
