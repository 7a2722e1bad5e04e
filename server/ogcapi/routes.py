"""pygeoapi's request handlers as Starlette routes, bound per request to the API of the caller's access level.

pygeoapi.starlette_app builds its routes around one API made at import time from PYGEOAPI_CONFIG; this is
the same glue (APIRequest in, headers/status/content out, the work in a thread) taking the API from the
request scope, where the access dispatcher put the View of the caller's level.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import pygeoapi.api as core_api
import pygeoapi.api.coverages as coverages_api
import pygeoapi.api.itemtypes as itemtypes_api
import pygeoapi.api.processes as processes_api
import pygeoapi.api.tiles as tiles_api
import pygeoapi.l10n as l10n
from anyio import to_thread
from pygeoapi.api import API, APIRequest
from pygeoapi.util import render_j2_template, to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.affects.process import PROCESS_ID, check_execute_request
from server.features.filter_parse import parse_filter_json, parse_filter_text
from server.loop_limits import query_limiter
from server.ogcapi import params, speedups
from server.ogcapi.page_cache import PAGES, Page
from server.ogcapi.plain_reads import plain_page_of
from server.ogcapi.site import view_of

# pygeoapi 0.21 accepts only the pre-CQL2 names; the parsers it calls are ours (patch_pygeoapi) and tell
# text from JSON by the expression itself, so the CQL2 names map onto the old ones.
FILTER_LANGS = {"cql2-text": "cql-text", "cql2-json": "cql-json"}


class _NoConfigCache(dict):
    """Stands in for pygeoapi.l10n._cfg_cache, which keeps ONE translated configuration per locale for the
    whole process: with a configuration per access level (and a new one per publication) HTML pages would
    be rendered with whichever came first, the staff one included. Translating per page costs a copy."""

    def get(self, key: object, default: object = None) -> object:
        return default

    def __setitem__(self, key: object, value: object) -> None:
        pass


def patch_pygeoapi() -> None:
    """The two process-wide changes pygeoapi 0.21 leaves no other way to make. Idempotent.
    - `filter` is parsed with its ECQL parser (no S_INTERSECTS, TIMESTAMP(), CASEI): point it at ours;
    - translated configurations are cached per locale only: turn that cache off.
    Plus the speed-ups that keep its answers (server/ogcapi/speedups.py)."""
    itemtypes_api.parse_ecql_text = parse_filter_text
    itemtypes_api.parse_cql2_json = parse_filter_json
    l10n._cfg_cache = _NoConfigCache()
    speedups.install()


def to_response(headers: dict[str, str], status: int, content: str | bytes) -> Response:
    return Response(content, status_code=int(status), headers=headers)


async def call(
    request: Request, handler: Callable[..., tuple], *args: Any, api: API | None = None, check_format: bool = True
) -> Response:
    """Run one pygeoapi handler for `request` against `api` (default: the caller's metadata API)."""
    api = api or view_of(request).api
    api_request = await APIRequest.from_starlette(request, api.locales)
    if check_format and not api_request.is_valid():
        return to_response(*api.get_format_exception(api_request))
    work = functools.partial(handler, api, api_request, *args)
    return to_response(*await to_thread.run_sync(work, limiter=query_limiter(request.app)))


def _as_geojson(response: Response) -> Response:
    """Features are GeoJSON (OGC API Features Part 1 §7.16); pygeoapi labels them plain JSON."""
    if response.status_code == 200 and response.headers.get("content-type") == "application/json":
        response.headers["content-type"] = "application/geo+json"
    return response


def _with_params(request: Request, updates: dict[str, str]) -> Request:
    """The request with some query parameters replaced (what pygeoapi reads from it)."""
    if not updates:
        return request
    pairs = [(k, updates.get(k, v)) for k, v in request.query_params.multi_items()]
    return Request({**request.scope, "query_string": urlencode(pairs).encode()}, request.receive)


def _with_pre_cql2_filter_lang(request: Request) -> Request:
    lang = request.query_params.get("filter-lang")
    return _with_params(request, {"filter-lang": FILTER_LANGS[lang]} if lang in FILTER_LANGS else {})


def _checked_item_query(request: Request) -> None:
    """What pygeoapi would answer with a 500 (an empty sortby, a NaN bbox) is a 400 here."""
    if (text := request.query_params.get("bbox")) is not None:
        params.bbox(text)
    if (text := request.query_params.get("sortby")) is not None:
        params.sortby(text)


async def landing_page(request: Request) -> Response:
    return await call(request, core_api.landing_page)


async def openapi(request: Request) -> Response:
    return await call(request, core_api.openapi_)


def _conformance(api: API, request: APIRequest, classes: tuple[str, ...]) -> tuple:
    headers = request.get_response_headers(**api.api_headers)
    body = {"conformsTo": list(classes)}
    if request.format == core_api.F_HTML:
        content = render_j2_template(
            api.tpl_config, api.config["server"]["templates"], "conformance.html", body, request.locale
        )
        return headers, HTTPStatus.OK, content
    return headers, HTTPStatus.OK, to_json(body, api.pretty_print)


async def conformance(request: Request) -> Response:
    """Our own: pygeoapi's grows a module-level list per call and declares editing we do not offer."""
    return await call(request, _conformance, view_of(request).conformance)


async def collections(request: Request) -> Response:
    return await call(request, core_api.describe_collections, request.path_params.get("collection_id"))


def _with_interval_roles(request: Request, response: Response) -> Response:
    """pygeoapi marks the time field `primary-instant`; our features are intervals (start, end), and a
    client reading `primary-instant` (GDAL) would turn `end_time >= X` into datetime= with other semantics."""
    if response.status_code != 200 or not response.headers.get("content-type", "").startswith("application/schema"):
        return response
    resource = view_of(request).api.config["resources"][request.path_params["collection_id"]]
    provider = next(p for p in resource["providers"] if p["type"] == "feature")
    start, end = provider.get("time_field"), provider.get("time_end_field")
    if not (start and end):
        return response
    document = json.loads(response.body)
    for name, role in ((start, "primary-interval-start"), (end, "primary-interval-end")):
        if name in document.get("properties", {}):
            document["properties"][name]["x-ogc-role"] = role
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(json.dumps(document, ensure_ascii=False), status_code=200, headers=headers)


async def queryables(request: Request) -> Response:
    response = await call(request, itemtypes_api.get_collection_queryables, request.path_params["collection_id"])
    return _with_interval_roles(request, response)


async def schema(request: Request) -> Response:
    response = await call(request, core_api.get_collection_schema, request.path_params["collection_id"])
    return _with_interval_roles(request, response)


def page_key(layer_id: str, query_string: bytes, accept: str | None, language: str | None) -> tuple:
    """What decides an item page besides the View: the collection, the query and the negotiated format and language."""
    return (layer_id, query_string, accept, language)


async def items(request: Request) -> Response:
    """GET: query parameters; POST: a CQL2 JSON filter in the body (the collections are read-only). A GET asked
    before for the same View (level and published version) is answered from PAGES, and identical GETs asked while
    it is being read share that one reading. A plain page (server/ogcapi/plain_items.py) of the caller's View is read
    without pygeoapi's handler, as the early answers read a public one: here for a request with a key, whose View
    the access dispatcher chose (staff's small bbox went through pygeoapi at ~1,000 req/s)."""
    view = view_of(request)
    if request.method != "GET":
        return await _items_read(request, view)
    headers = request.headers
    key = page_key(
        request.path_params["collection_id"],
        request.scope["query_string"],
        headers.get("accept"),
        headers.get("accept-language"),
    )
    answered: list[Response] = []

    async def make() -> Page | None:
        if request.app.state.settings.plain_pages:
            live = request.app.state.live
            plain = await plain_page_of(request.app, view, key, request.scope, live.file_versions())
            if plain is not None:
                return plain
        response = await _items_read(request, view)
        answered.append(response)
        if response.status_code != 200:
            return None  # not kept, not shared: whoever waited for it reads its own
        kept = {name: value for name, value in response.headers.items() if name != "content-length"}
        page = Page(view, response.status_code, kept, response.body)
        PAGES.put(view, key, page)
        return page

    page = await PAGES.kept_or_made(view, key, "items route", make)
    if page is not None:
        return Response(page.body, status_code=page.status, headers=page.headers)
    return answered[0] if answered else await _items_read(request, view)


async def _items_read(request: Request, view) -> Response:
    _checked_item_query(request)
    response = await call(
        _with_pre_cql2_filter_lang(request),
        itemtypes_api.get_collection_items,
        request.path_params["collection_id"],
        api=view.query_api,
        check_format=False,
    )
    return _as_geojson(response)


async def item(request: Request) -> Response:
    params = request.path_params
    return _as_geojson(
        await call(request, itemtypes_api.get_collection_item, params["collection_id"], params["item_id"])
    )


async def coverage(request: Request) -> Response:
    """OGC API Coverages: the raster product, through pygeoapi's rasterio provider."""
    collection_id = request.path_params["collection_id"]
    resource = view_of(request).api.config["resources"].get(collection_id)
    if resource is not None and any(p["type"] == "coverage" for p in resource.get("providers", [])):
        extent = resource["extents"]["spatial"]["bbox"]
        request = _with_params(request, params.coverage_bbox(request.query_params, extent))
    return await call(request, coverages_api.get_collection_coverage, collection_id, check_format=False)


async def tile_matrix_sets(request: Request) -> Response:
    if "tile_matrix_set_id" in request.path_params:
        return await call(request, tiles_api.tilematrixset, request.path_params["tile_matrix_set_id"])
    return await call(request, tiles_api.tilematrixsets)


async def processes(request: Request) -> Response:
    return await call(request, processes_api.describe_processes, None)


async def process(request: Request) -> Response:
    return await call(request, processes_api.describe_processes, request.path_params["process_id"])


async def execution(request: Request) -> Response:
    """Synchronous execution (pygeoapi's Dummy manager): the answer, or a 400 saying why the inputs failed."""
    if request.path_params["process_id"] == PROCESS_ID:
        check_execute_request(await request.body(), request.app.state.catalog)
    return await call(request, processes_api.execute_process, request.path_params["process_id"])


async def jobs(request: Request) -> Response:
    return await call(request, processes_api.get_jobs, None)


def api_routes() -> list[BaseRoute]:
    """The OGC API endpoints; issue 4 adds its tile routes beside these."""
    return [
        # the routes asked most first: Starlette tries each route's pattern in turn (no two of these overlap)
        Route("/collections/{collection_id}/items", items, methods=["GET", "POST"]),
        Route("/collections/{collection_id}/items/{item_id:path}", item),
        Route("/", landing_page),
        Route("/openapi", openapi),
        Route("/conformance", conformance),
        Route("/collections", collections),
        Route("/collections/{collection_id}", collections),
        Route("/collections/{collection_id}/queryables", queryables),
        Route("/collections/{collection_id}/schema", schema),
        Route("/collections/{collection_id}/coverage", coverage),
        Route("/TileMatrixSets", tile_matrix_sets),
        Route("/TileMatrixSets/{tile_matrix_set_id}", tile_matrix_sets),
        # the one process is /affects (server/affects/process.py); jobs are synchronous and not kept
        Route("/processes", processes),
        Route("/processes/{process_id}", process),
        Route("/processes/{process_id}/execution", execution, methods=["POST"]),
        Route("/jobs", jobs),
    ]
