"""Tiles rendered on demand take turns in a worker, and the pre-rendering gives way to them (server/tiles/turns.py).

Right after a start on a new 1M-point publication, bench_tiles' 932 z12-z14 tiles asked once each at 64 connections
were rendered all at once by the threadpool (40 threads) beside the pre-rendering thread: each took as long as all
of them, p99 7.4-8.1 s with 1-3 time-outs over 10 s on 2 workers, 265 time-outs on 1. Checked in the served app as
`python -m server` builds it (its lifespan pre-renders in the background), counting what its GeoPackage backend
renders and in which thread.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import httpx
import pytest

from server.tiles.turns import RenderTurns
from tests.conftest import city_paths
from tests.test_point_index import TABLE, many_repairs, publish_repairs
from tests.test_single_flight import _tile_of

POINTS = 20_000
MISSES = 12


def deep_tiles(count: int) -> list[tuple[int, int, int]]:
    """`count` distinct z16 tiles over the repairs (deeper than anything pre-rendered), west to east."""
    z, x, y = _tile_of(104.25, 52.3, 16)
    return [(z, x + i, y) for i in range(count)]


def served_app(published_city, tmp_path, **settings):
    from server.app import create_app
    from server.settings import ServerSettings

    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    publish_repairs(many_repairs(POINTS), paths.published_path(TABLE))
    return create_app(paths=paths, settings=ServerSettings(cache_dir=tmp_path / "cache", **settings))


class RenderLog:
    """Wraps the app's tile backend's `render`: who rendered what, in order, and the most request renderings at
    once (the pre-rendering runs in the lifespan's `tile-refresh` thread, requests in the threadpool)."""

    def __init__(self, backend, hold_prerendering=None):
        self.events: list[tuple[str, str, tuple[int, int, int]]] = []  # (start|end, who, tile)
        self.most_at_once = 0
        self._now = 0
        self._lock = threading.Lock()
        self._render = backend.render
        self._hold = hold_prerendering  # called as a pre-rendered tile starts, before it is rendered
        backend.render = self

    def __call__(self, sources, z, x, y, **options):
        who = "pre" if threading.current_thread().name == "tile-refresh" else "request"
        with self._lock:
            self.events.append(("start", who, (z, x, y)))
            if who == "request":
                self._now += 1
                self.most_at_once = max(self.most_at_once, self._now)
        try:
            if who == "pre" and self._hold is not None:
                self._hold((z, x, y))
            return self._render(sources, z, x, y, **options)
        finally:
            with self._lock:
                self.events.append(("end", who, (z, x, y)))
                if who == "request":
                    self._now -= 1


async def ask(app, paths: list[str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
        return await asyncio.gather(*(client.get(path) for path in paths))


@pytest.mark.parametrize("renders", [1, None], ids=["one at a time", "the store's choice"])
def test_misses_asked_at_once_take_turns_in_the_order_they_came(published_city, tmp_path, renders) -> None:
    app = served_app(published_city, tmp_path, tile_prerender_zoom=0, tile_renders=renders)
    at_once = app.state.tiles.turns.at_once
    assert at_once == (renders or 2)  # GeoPackage: two, so that one slow tile does not hold every other
    tiles = deep_tiles(MISSES)

    async def serve() -> tuple[RenderLog, list[httpx.Response]]:
        async with app.router.lifespan_context(app):
            log = RenderLog(app.state.tiles.backend)
            answers = await ask(app, [f"/tiles/{TABLE}/{z}/{x}/{y}.pbf" for z, x, y in tiles])
            return log, answers

    log, answers = asyncio.run(serve())
    assert [a.status_code for a in answers] == [200] * MISSES
    assert sum(bool(a.content) for a in answers) >= MISSES // 2  # tiles with features: real renderings
    assert 1 <= log.most_at_once <= at_once, f"{log.most_at_once} tiles rendered at once"
    started = [tile for kind, who, tile in log.events if kind == "start" and who == "request"]
    if at_once == 1:  # first come, first served (with two, which of two threads let go together starts first is open)
        assert started == tiles


def test_a_worker_renders_as_many_at_once_as_it_is_told(published_city, tmp_path) -> None:
    app = served_app(published_city, tmp_path, tile_prerender_zoom=0, tile_renders=3)
    assert app.state.tiles.turns.at_once == 3


def test_the_prerendering_gives_way_to_requests_waiting_for_a_tile(published_city, tmp_path) -> None:
    """The pre-rendering is held on its third tile until the requests wait for their turn (or render); once that
    tile is done, it starts no other until every request's tile is rendered."""
    app = served_app(published_city, tmp_path, tile_prerender_zoom=12)
    tiles = deep_tiles(MISSES)
    third, fourth = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def hold(tile: tuple[int, int, int]) -> None:
        seen.append(tile)
        if len(seen) == 4:
            fourth.set()
        if len(seen) != 3:
            return
        third.set()
        deadline = time.monotonic() + 60
        while app.state.tiles.turns.asked < MISSES and time.monotonic() < deadline:
            time.sleep(0.001)  # polling: the requests arrive within milliseconds

    async def serve() -> tuple[RenderLog, list[httpx.Response]]:
        async with app.router.lifespan_context(app):
            log = RenderLog(app.state.tiles.backend, hold)
            app.state.tiles.noticed.set()  # look at the publication now, not in REFRESH_SECONDS
            assert await asyncio.to_thread(third.wait, 60), "the pre-rendering never reached its third tile"
            answers = await ask(app, [f"/tiles/{TABLE}/{z}/{x}/{y}.pbf" for z, x, y in tiles])
            assert await asyncio.to_thread(fourth.wait, 60), "the pre-rendering did not go on"
            return log, answers

    log, answers = asyncio.run(serve())
    assert [a.status_code for a in answers] == [200] * MISSES
    order = [(kind, who) for kind, who, _ in log.events]
    last_request = max(i for i, (kind, who) in enumerate(order) if who == "request")
    first_request = order.index(("start", "request"))
    during = [event for event in order[first_request:last_request] if event == ("start", "pre")]
    assert not during, f"the pre-rendering started {len(during)} tiles while requests waited for theirs"


def test_the_prerendering_reads_tiles_already_there_without_waiting_for_requests(published_city, tmp_path) -> None:
    """After a republication most tiles are carried over: the pre-rendering's pass reads them, renders nothing, and
    must not wait for requests rendering meanwhile (up to GIVE_WAY_SECONDS a tile: minutes over a city's pyramid)."""
    from layers.catalog import load_catalog
    from server.tiles.vector import VectorTiles

    tiles = VectorTiles(load_catalog(), published_city.published_path, shared_dir=tmp_path / "tiles")
    count = tiles.warm(12, gzip=True)  # every tile into the shared store
    assert count > 20  # enough tiles for their waits to outlast the deadline below
    rendering, release = threading.Event(), threading.Event()

    def held() -> None:  # a request's rendering, in its turn, until released
        rendering.set()
        release.wait(300)

    request = threading.Thread(target=lambda: asyncio.run(tiles.turns.render(held)))
    request.start()
    try:
        assert rendering.wait(60)
        passed = threading.Event()
        threading.Thread(target=lambda: (tiles.warm(12, gzip=True), passed.set()), daemon=True).start()
        assert passed.wait(60), "the pass over tiles already in the store waited for the request"
    finally:
        release.set()
        request.join(60)


# ---------------------------------------------------------------------- the turns themselves


@pytest.mark.parametrize("at_once", [1, 2])
def test_turns_let_as_many_render_at_once_as_they_allow_and_the_rest_wait_in_order(at_once: int) -> None:
    turns = RenderTurns(at_once)
    now, most, order = 0, 0, []
    lock = threading.Lock()

    def render(i: int) -> int:
        nonlocal now, most
        with lock:
            now += 1
            most = max(most, now)
            order.append(i)
        time.sleep(0.01)  # the renderings overlap if the turns let them
        with lock:
            now -= 1
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*(turns.render(lambda i=i: render(i)) for i in range(10)))

    assert asyncio.run(main()) == list(range(10))
    assert most == at_once
    if at_once == 1:  # in the order they came (with two, which of two threads let go together starts first is open)
        assert order == list(range(10))
    assert turns.asked == 0


def test_giving_way_waits_while_a_request_renders_and_not_longer() -> None:
    turns = RenderTurns(1)
    assert turns.give_way(0) is True  # nobody asked: at once
    rendering, release = threading.Event(), threading.Event()

    def render() -> str:
        rendering.set()
        release.wait(60)
        return "tile"

    gave_way: list[bool] = []

    async def main() -> str:
        task = asyncio.ensure_future(turns.render(render))
        await asyncio.to_thread(rendering.wait, 60)
        gave_way.append(await asyncio.to_thread(turns.give_way, 0.05))  # still rendering: gives up waiting
        waiter = asyncio.ensure_future(asyncio.to_thread(turns.give_way, 60))
        release.set()
        gave_way.append(await waiter)  # quiet once the rendering is done
        return await task

    assert asyncio.run(main()) == "tile"
    assert gave_way == [False, True]


def test_turns_serve_several_event_loops_at_once() -> None:
    """One app's turns used from two event loops at once (tests run servers in threads, a test client opens loops
    one after the other): each loop's requests wait for their turn among themselves."""
    turns = RenderTurns(1)
    results: dict[str, list[int]] = {}

    def render(i: int) -> int:
        time.sleep(0.005)  # long enough for the others to wait
        return i

    def serve(name: str) -> None:
        async def main() -> list[int]:
            return await asyncio.gather(*(turns.render(lambda i=i: render(i)) for i in range(6)))

        results[name] = asyncio.run(main())

    for _ in range(2):
        # daemons: a loop left waiting for a turn another loop's limiter gave must fail the test, not hang pytest
        threads = [threading.Thread(target=serve, args=(name,), daemon=True) for name in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == {"a": list(range(6)), "b": list(range(6))}
        results.clear()
    assert turns.asked == 0


def test_at_least_one_rendering_at_a_time() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RenderTurns(0)
