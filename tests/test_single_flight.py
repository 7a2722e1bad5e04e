"""Identical requests arriving while the first is answered share its answer (server/flights.py).

A fresh publication empties every worker's page and tile caches, and that is when a city's map is opened by many at
once. Before server.flights each of N identical requests that found the cache empty read and rendered the same page
on its own (a fresh 1-worker server over 1M points, 64 connections on the first page of 1,000: the first 27 requests
took 0.3-2.4 s). The pages are checked through `python -m server` over either store with a real client: a page
read once carries one `timeStamp` (microseconds), so N readings show up as N different ones. The tiles are checked
in the served app as `python -m server` builds it, counting what its backend renders.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from server.flights import Flights
from tests import pg
from tests.conftest import city_paths
from tests.server_fixtures import start_server, stop_server
from tests.test_point_index import TABLE, catalog_repairs, many_repairs, publish_repairs

AT_ONCE = 24
POINTS = 20_000  # a page of 1,000 takes long enough (~20 ms) for the requests to overlap


postgres_cluster = pg.postgres_cluster


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def server(request, published_city, tmp_path_factory):
    """`python -m server` (1 worker) over the sample city with POINTS repairs, in either store (PostGIS: a database
    of its own holding the repairs alone)."""
    folder = tmp_path_factory.mktemp(f"single_flight_{request.param}")
    paths = city_paths(folder / "city")
    env = {"GEOPORTAL_SERVER_ACCESS_LOG": "false"}
    if request.param == "geopackage":
        shutil.copytree(published_city.published_dir, paths.published_dir)
        publish_repairs(many_repairs(POINTS), paths.published_path(TABLE))
    else:
        from assets.stores.postgis import publish_postgis

        url = request.getfixturevalue("postgres_cluster").create_database(f"geoportal_flights_{os.getpid()}")
        spec, frame = catalog_repairs(many_repairs(POINTS))
        publish_postgis(frame, spec, url)
        paths.published_dir.mkdir(parents=True)
        env["GEOPORTAL_STORE_URL"] = url
    running = start_server(paths, folder / "server.log", env)
    yield running
    stop_server(running)


def at_once(url: str, params: dict, count: int = AT_ONCE) -> list[httpx.Response]:
    """`count` identical GETs released together, each on its own connection."""
    start = threading.Barrier(count)

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            start.wait()
            return client.get(url, params=params)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": "1000", "offset": "3"}, id="plain page (answered in front of the stack)"),
        pytest.param({"limit": "1000", "offset": "5", "skipGeometry": "true"}, id="page through pygeoapi"),
    ],
)
def test_identical_requests_of_a_page_not_kept_yet_read_it_once(server, params) -> None:
    answers = at_once(f"{server.url}/collections/{TABLE}/items", params)
    assert {a.status_code for a in answers} == {200}
    assert len(answers[0].json()["features"]) == 1000
    stamps = {a.json()["timeStamp"] for a in answers}
    assert len(stamps) == 1, f"{len(stamps)} readings of one page for {AT_ONCE} identical requests"
    assert len({a.content for a in answers}) == 1
    assert len({a.headers["content-length"] for a in answers}) == 1


def test_requests_that_differ_are_read_each_and_a_request_after_the_flight_gets_the_kept_page(server) -> None:
    url = f"{server.url}/collections/{TABLE}/items"
    english = at_once(url, {"limit": "1000", "offset": "7", "lang": "en"}, 8)
    other = at_once(url, {"limit": "1000", "offset": "8"}, 8)
    assert english[0].json()["timeStamp"] != other[0].json()["timeStamp"]
    assert english[0].json()["features"][0]["id"] != other[0].json()["features"][0]["id"]
    again = httpx.get(url, params={"limit": "1000", "offset": "8"}, timeout=60)
    assert again.content == other[0].content  # the page kept by the flight


def test_a_failing_page_is_answered_with_its_error_to_each_identical_request(server) -> None:
    answers = at_once(f"{server.url}/collections/{TABLE}/items", {"limit": "1000", "bbox": "1,2,3"}, 8)
    assert {a.status_code for a in answers} == {400}
    assert all(a.json()["code"] for a in answers)


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, x, y


def test_identical_requests_of_a_tile_not_kept_yet_render_it_once(published_city, tmp_path) -> None:
    from server.app import create_app
    from server.settings import ServerSettings

    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    publish_repairs(many_repairs(POINTS), paths.published_path(TABLE))
    app = create_app(paths=paths, settings=ServerSettings(cache_dir=tmp_path / "cache"))  # no tile kept from before
    z, x, y = _tile_of(104.3, 52.3, 16)  # deeper than the pre-rendered zooms
    rendered: list[tuple[int, int, int]] = []

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            backend = app.state.tiles.backend
            render = backend.render

            def counted(sources, z_, x_, y_, **options):
                rendered.append((z_, x_, y_))
                return render(sources, z_, x_, y_, **options)

            backend.render = counted
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
                paths_asked = [f"/tiles/{TABLE}/{z}/{x}/{y}.pbf"] * AT_ONCE + [f"/tiles/{TABLE}/{z}/{x + 1}/{y}.pbf"]
                answers = await asyncio.gather(*(client.get(path) for path in paths_asked))
        assert {a.status_code for a in answers} == {200}
        assert len({a.content for a in answers[:AT_ONCE]}) == 1
        assert answers[0].content  # the tile holds features
        assert rendered.count((z, x, y)) == 1, f"rendered {rendered.count((z, x, y))} times for {AT_ONCE} requests"
        assert rendered.count((z, x + 1, y)) == 1

    asyncio.run(serve())


# ---------------------------------------------------------------------- the helper itself


def test_a_flight_is_computed_once_for_every_caller_while_it_runs_and_again_after() -> None:
    async def run() -> None:
        flights, made = Flights(), []
        gate = asyncio.Event()

        async def make() -> int:
            made.append(1)
            await gate.wait()
            return len(made)

        waiting = [asyncio.create_task(flights.shared("k", make)) for _ in range(5)]
        await asyncio.sleep(0)
        assert len(flights) == 1
        gate.set()
        assert await asyncio.gather(*waiting) == [1] * 5
        assert len(flights) == 0
        assert await flights.shared("k", make) == 2  # nothing is kept: that is the caches' job

    asyncio.run(run())


def test_a_caller_that_gives_up_does_not_cancel_the_flight_for_the_others() -> None:
    async def run() -> None:
        flights = Flights()
        gate = asyncio.Event()

        async def make() -> str:
            await gate.wait()
            return "page"

        first = asyncio.create_task(flights.shared("k", make))
        second = asyncio.create_task(flights.shared("k", make))
        await asyncio.sleep(0)
        first.cancel()  # the client that started it went away
        await asyncio.sleep(0)
        gate.set()
        assert await second == "page"
        assert first.cancelled()

    asyncio.run(run())


def failing(gate: asyncio.Event):
    """A flight's work that fails once `gate` is set."""

    async def make() -> str:
        await gate.wait()
        raise ValueError("bad page")

    return make


def test_an_error_reaches_every_caller() -> None:
    async def run() -> None:
        flights, gate = Flights(), asyncio.Event()
        callers = [asyncio.create_task(flights.shared("k", failing(gate))) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert [type(r) for r in results] == [ValueError] * 3
        assert len(flights) == 0

    asyncio.run(run())


def test_a_flight_every_caller_gave_up_on_fails_without_an_asyncio_error_in_the_log(caplog) -> None:
    async def run() -> None:
        flights, gate = Flights(), asyncio.Event()
        callers = [asyncio.create_task(flights.shared("k", failing(gate))) for _ in range(3)]
        await asyncio.sleep(0)
        for caller in callers:
            caller.cancel()  # every client went away
        gate.set()
        for _ in range(100):  # loop iterations until the flight's task is done
            if not len(flights):
                break
            await asyncio.sleep(0)
        assert len(flights) == 0

    asyncio.run(run())
    gc.collect()  # a task whose error nobody retrieved is logged when it is collected (shield retrieves it)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
