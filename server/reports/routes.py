"""`GET /reports/` and the files of each day's summary, for the internal level only (the one access rule)."""

from __future__ import annotations

import html
import re

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.access import staff_refusal
from server.auth import presented_key
from server.caller import base_url
from server.errors import NotFound
from server.ogcapi.site import view_of

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FILES = {
    "summary.html": "text/html; charset=utf-8",
    "summary.pdf": "application/pdf",
    "summary.png": "image/png",
    "summary.json": "application/json",
}


def _staff_only(request: Request) -> None:
    refused = staff_refusal(view_of(request).level, presented_key(request.headers) is not None, "/reports/")
    if refused:
        raise refused


def _days(request: Request) -> list[str]:
    folder = request.app.state.paths.reports_dir
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if DAY.match(p.name) and p.is_dir()), reverse=True)


async def report_index(request: Request) -> Response:
    _staff_only(request)
    root = f"{base_url(request)}/reports"
    days = _days(request)
    listing = {
        day: {
            name: f"{root}/{day}/{name}"
            for name in FILES
            if (request.app.state.paths.reports_dir / day / name).exists()
        }
        for day in days
    }
    headers = {"Vary": "X-API-Key, Authorization"}
    if request.query_params.get("f") == "json":
        return JSONResponse(
            {"reports": [{"day": day, "files": files} for day, files in listing.items()]}, headers=headers
        )
    rows = "".join(
        f"<li>{day}: "
        + " · ".join(f"<a href='{html.escape(url)}'>{name.split('.')[1]}</a>" for name, url in files.items())
        + "</li>"
        for day, files in listing.items()
    )
    page = (
        "<!doctype html><html lang='ru'><head><meta charset='utf-8'><title>Сводки — Daily summaries</title></head>"
        f"<body><h1>Сводки — Daily summaries</h1><ul>{rows or '<li>—</li>'}</ul></body></html>"
    )
    return HTMLResponse(page, headers=headers)


async def report_file(request: Request) -> Response:
    _staff_only(request)
    day, name = request.path_params["day"], request.path_params["name"]
    path = request.app.state.paths.reports_dir / day / name
    if not DAY.match(day) or name not in FILES or not path.is_file():
        raise NotFound(f"no report {day}/{name}")
    return FileResponse(path, media_type=FILES[name], headers={"Vary": "X-API-Key, Authorization"})


def report_routes() -> list[BaseRoute]:
    return [Route("/reports/", report_index), Route("/reports/{day}/{name}", report_file)]
