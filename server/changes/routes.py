"""`GET /changes` (JSON, for the caller's level), `/feeds/<layer>.atom` and `/feeds/wzdx.geojson` (always public).

The change log is the ingest's (assets.changes, which brings pandas, GeoPandas and GDAL): it is imported by the
first request here, never by a worker that only serves features and tiles (tests/test_lazy_imports.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from layers.timewindow import TimeQueryError, zone
from server.access import refusal, sees, sees_internal, visible_fields, visible_layers
from server.auth import presented_key
from server.caller import base_url
from server.errors import BadRequest, NotFound
from server.ogcapi.site import view_of

if TYPE_CHECKING:
    from assets.changes import Change

DEFAULT_DAYS = 1  # `since` left out: the last day
MAX_CHANGES = 10_000
ATOM_ENTRIES = 200
GEOJSON = "application/geo+json"


def read_since(text: str | None, timezone: str, now: datetime) -> str:
    """`since` as the log's UTC text; an ISO date or time, zone-less ones in the city's zone."""
    from assets.changes import stamp

    if text is None:
        return stamp(now - timedelta(days=DEFAULT_DAYS))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"since: not an ISO 8601 date or time: {text!r}") from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=zone(timezone))
        except TimeQueryError as error:
            raise BadRequest(str(error)) from None
    return stamp(moment)


def _count(text: str | None, name: str, default: int, largest: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 0 < int(text) <= largest:
        raise BadRequest(f"{name}: a whole number from 1 to {largest}, got {text!r}")
    return int(text)


def _as_json(change: Change, fields: list[str]) -> dict:
    return {
        "seq": change.seq,
        "at": change.at,
        "layer": change.layer,
        "id": change.id,
        "kind": change.kind,
        "properties": {name: change.properties[name] for name in fields if name in change.properties},
    }


async def changes(request: Request) -> Response:
    state, params = request.app.state, request.query_params
    unknown = sorted(set(params) - {"since", "layer", "limit", "after", "f"})
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(unknown)}")
    from assets.changes import read_changes

    level = view_of(request).level
    since = read_since(params.get("since"), state.catalog.city.timezone, datetime.now(UTC))
    limit = _count(params.get("limit"), "limit", MAX_CHANGES, MAX_CHANGES)
    after = _count(params.get("after"), "after", 0, 2**62) if params.get("after") else 0
    layer_id = params.get("layer")
    if layer_id is not None:
        spec = state.catalog.get(layer_id)
        if spec is None:
            raise NotFound(f"no collection {layer_id!r}")
        refused = refusal(state.catalog, layer_id, level, keyed=presented_key(request.headers) is not None)
        if refused:
            raise refused
        specs = [spec]
    else:
        specs = visible_layers(state.catalog, level)
    public = not sees_internal(level)  # staff also see the changes of internal-only fields
    found = await run_in_threadpool(
        read_changes, state.paths.changes_path(), [s.id for s in specs], since, public, limit, after
    )
    fields = {s.id: [f.name for f in visible_fields(s, level)] for s in specs}
    body = {
        "since": since,
        "layers": [s.id for s in specs],
        "changes": [_as_json(change, fields[change.layer]) for change in found],
    }
    if len(found) == limit:
        query = urlencode(
            {"since": since, "limit": limit, "after": found[-1].seq, **({"layer": layer_id} if layer_id else {})}
        )
        body["links"] = [{"rel": "next", "type": "application/json", "href": f"{base_url(request)}/changes?{query}"}]
    return JSONResponse(body, headers={"Vary": "X-API-Key, Authorization"})


def _public_layer(request: Request, layer_id: str):
    """Feeds are public whoever asks: a layer the public does not see has no feed."""
    spec = request.app.state.catalog.get(layer_id)
    if spec is None or not sees("public", spec):
        raise NotFound(f"no feed for {layer_id!r}")
    return spec


async def layer_feed(request: Request) -> Response:
    from assets.changes import Change, public_fields, read_changes
    from server.changes.atom import atom_feed

    spec = _public_layer(request, request.path_params["layer_id"])
    language = request.query_params.get("lang", "ru")
    if language not in ("ru", "en"):
        raise BadRequest(f"lang: ru or en, got {language!r}")
    now = datetime.now(UTC)
    since = read_since(request.query_params.get("since"), request.app.state.catalog.city.timezone, now - timedelta(30))
    found = await run_in_threadpool(read_changes, request.app.state.paths.changes_path(), [spec.id], since, True)
    shown = set(public_fields(spec))
    latest = [
        Change(c.seq, c.at, c.layer, c.id, c.kind, c.public, {k: v for k, v in c.properties.items() if k in shown})
        for c in found[-ATOM_ENTRIES:]
    ]
    body = atom_feed(spec, latest, base_url(request), language, now)
    return Response(body, media_type="application/atom+xml; charset=utf-8")


def _public_frame(path, spec):
    import pyogrio

    from assets.changes import public_fields

    return pyogrio.read_dataframe(path, columns=public_fields(spec)) if path.exists() else None


def wzdx_document(state) -> tuple[dict, list[str]]:
    from server.changes.wzdx import WzdxSettings, work_zone_feed

    settings = WzdxSettings()
    for layer_id in (settings.closures_layer, settings.detours_layer):
        spec = state.catalog.get(layer_id)
        if spec is None or not sees("public", spec):
            raise NotFound(f"no WZDx feed: {layer_id!r} is not a public layer of the catalog")
    closures_spec, detours_spec = state.catalog[settings.closures_layer], state.catalog[settings.detours_layer]
    closures = _public_frame(state.store.layer_path(closures_spec.id), closures_spec)
    detours = _public_frame(state.store.layer_path(detours_spec.id), detours_spec)
    if closures is None:
        raise NotFound(f"no WZDx feed: {closures_spec.id} is not published")
    if detours is None:
        detours = closures.iloc[0:0].assign(closure_id=[], sequence=[])
    return work_zone_feed(state.catalog, closures, detours, datetime.now(UTC), settings)


async def wzdx_feed(request: Request) -> Response:
    document, left_out = await run_in_threadpool(wzdx_document, request.app.state)
    headers = {"X-Geoportal-Left-Out": str(len(left_out))}  # the reasons are in the server log and /changes
    return Response(json.dumps(document, ensure_ascii=False).encode(), media_type=GEOJSON, headers=headers)


def change_routes() -> list[BaseRoute]:
    return [
        Route("/changes", changes),
        Route("/feeds/wzdx.geojson", wzdx_feed),
        Route("/feeds/{layer_id}.atom", layer_feed),
    ]
