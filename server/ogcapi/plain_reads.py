"""Reading a plain item page (server/ogcapi/plain_items.py) for whichever caller answers it: the early answers for
a request without a key, the items route for one with a key (after the access dispatcher chose its View).

Where it is read: an instant page (from the point index held) on the event loop; a light page on the worker's lane
of 2 threads; any other on the items route's threads. A light page never waits behind a heavy one, and fewer
threads hand the GIL over less. Small bbox, 1M points, 1 worker, 8 connections, scratch wrk runs of 8 s: on the
route's 3 threads 722-860 req/s, p95 14-17 ms, CPU 1.65-2.0 ms per request; on the event loop 853-855 req/s, p95
16-17 ms, CPU 1.2 ms (one core at most); lane of 1 thread 605-940 req/s, p95 10.5-17.6 ms, CPU 1.1-1.7 ms (one core
at most); lane of 2: 777-1,143 req/s, p95 9-15 ms, CPU 1.2-1.75 ms (1.4 cores). An instant page: ~0.3 ms here; 1M
points, 1 worker, small bbox, 8 connections, two fresh servers each, 2 x 10 s: 2,034-2,242 req/s (p95 6.8-6.9 ms)
against 1,294-1,455 (p95 7.2-7.4) on the lane.
"""

from __future__ import annotations

import contextlib
import functools

from anyio import CapacityLimiter, to_thread
from anyio.lowlevel import RunVar
from starlette.types import Scope

from server.features.provider import NotInstant
from server.loop_limits import loop_limiter, query_limiter
from server.ogcapi.page_cache import PAGES, Page
from server.ogcapi.plain_items import (
    PlainLayer,
    PlainQuery,
    plain_layer,
    plain_limit,
    plain_page,
    plain_request,
    storage_bbox,
)
from server.published.files import FileIdentity

LIGHT_LANE: RunVar[CapacityLimiter] = RunVar("geoportal_light_lane")  # one per event loop, i.e. per worker
LIGHT_LANE_THREADS = 2


def _light_lane() -> CapacityLimiter:
    return loop_limiter(LIGHT_LANE, LIGHT_LANE_THREADS)


async def plain_page_of(app, view, key: tuple, scope: Scope, versions: dict[str, FileIdentity]) -> Page | None:
    """The plain page `key` (server.ogcapi.routes.page_key) names for `view`, read now and kept in PAGES as the items
    route keeps a page (an instant one is not kept); None when the request or the layer is not plain, or reading it
    failed (the items route then answers it, with its error mapping)."""
    query = plain_request(scope["headers"], scope["query_string"])
    layer = plain_layer(view, key[0]) if query is not None else None
    if layer is None:
        return None
    try:
        body, instant = await _read(app, layer, query, versions)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - whatever it is, the items route answers it (with its error mapping)
        return None
    page = Page(view, 200, layer.headers, body)
    if not instant:
        # An instant page is made again for about what finding it kept costs, and a map asks new ones at such a
        # rate that kept they would push out the pages worth keeping (the first page of 1,000: ~15 ms). Small
        # bbox, 1M points, 1 worker, fresh servers, runs 2-4 of 10 s: 2,559-2,575 req/s against 2,402-2,481.
        PAGES.put(view, key, page)
    return page


async def _read(app, layer: PlainLayer, query: PlainQuery, versions: dict[str, FileIdentity]) -> tuple[bytes, bool]:
    """The page, and whether it was answered on the event loop (instant)."""
    limit = plain_limit(layer, query)
    bbox = storage_bbox(layer, query)
    work = functools.partial(plain_page, layer, query, limit, bbox)
    instant = layer.provider.instant_page(bbox, query.offset, limit, versions)  # a light page too
    if instant is not None:
        with contextlib.suppress(NotInstant):  # the file changed since: read on the lane, never SQL here
            return work(instant=instant), True
        return await to_thread.run_sync(work, limiter=_light_lane()), False
    if layer.provider.light_page(bbox, query.offset, limit):
        return await to_thread.run_sync(work, limiter=_light_lane()), False
    return await to_thread.run_sync(work, limiter=query_limiter(app)), False
