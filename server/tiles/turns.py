"""Tiles rendered on demand take turns in each worker process, and the background pre-rendering gives way to them.

Right after a start on a new publication (or after the tile cache folder was emptied) every tile a map asks for is
rendered on demand while one worker pre-renders the combined tileset. Rendering from GeoPackages runs in this
process, mostly under its GIL: N renderings at once each take about N times as long, and the pre-rendering thread
takes its share of the GIL too. Measured on bench_tiles' 1M points + 200k lines, each of the 932 z12-z14 tiles
asked once at 64 connections right after a start (`/tmp`-style fresh cache, 2 cores): with as many renderings at
once as the threadpool has threads (40), 2 workers answered 31.8-35.8 req/s, p99 7.4-8.1 s, 1-3 requests over 10 s;
1 worker 6.0 req/s with 265 over 10 s. One or two renderings at a time, first come first served, and the
pre-rendering waiting while any request waits for a rendering: 2 workers 39.0-46.0 req/s, p99 2.5-3.0 s; 1 worker
19.3-23.0 req/s, p99 4.5-5.1 s; none over 10 s (benchmarks/README.md, "Rendering on demand"). How many at a time
is the store's to say (server/tiles/backend.py, server/tiles/postgis_render.py).

A request waits for its turn on the event loop (an anyio capacity limiter), not in a thread: a tile already kept,
a page or anything else the threadpool serves never waits behind renderings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar

from server.loop_limits import loop_limiter

T = TypeVar("T")

# The longest the pre-rendering waits for a quiet moment before each tile: a stream of misses that are never
# pre-rendered (datetime windows, a field list) slows it down but never stops it.
GIVE_WAY_SECONDS = 5.0


class RenderTurns:
    """At most `at_once` renderings on demand at a time in this process; the others wait in order of arrival."""

    def __init__(self, at_once: int):
        if at_once < 1:
            raise ValueError(f"at least one rendering at a time, got {at_once}")
        self.at_once = at_once
        self._limiter: RunVar[CapacityLimiter] = RunVar("geoportal_tile_turns")  # this object's, per event loop
        self._asked = 0  # requests rendering or waiting to render
        self._quiet = threading.Condition()

    async def render(self, render: Callable[[], T]) -> T:
        """`render()` in a worker thread once it is this request's turn."""
        limiter = loop_limiter(self._limiter, self.at_once)
        with self._quiet:
            self._asked += 1
        try:
            return await anyio.to_thread.run_sync(render, limiter=limiter)
        finally:
            with self._quiet:
                self._asked -= 1
                if not self._asked:
                    self._quiet.notify_all()

    @property
    def asked(self) -> int:
        """Requests rendering or waiting to render now."""
        return self._asked

    def give_way(self, longest: float = GIVE_WAY_SECONDS) -> bool:
        """For the background thread, before each tile it renders: return once no request renders or waits to
        render (True), or after `longest` seconds all the same (False)."""
        with self._quiet:
            return self._quiet.wait_for(lambda: not self._asked, timeout=longest)
