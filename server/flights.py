"""Identical requests that arrive while the first of them is being answered wait for its answer instead of each
computing it again ("single flight").

A publication starts every worker's page and tile caches afresh, and that is the moment a city's map is opened by
many at once (an outage announced, a heating failure at -30 °C). Without this, each of N identical requests that
found the cache empty computed the same answer in its own thread, and the last of them waited for all the others:
measured on a fresh 1-worker server over 1M points, 64 connections asking the first page of 1,000 (556 KB) while
it was not kept yet, the first 27 requests took 0.3-2.4 s (h2load's longest request 2.4-4.7 s in 4 of 4 runs);
with the page kept before the load, 0.1-0.5 s.

The answer is computed in a task of its own: a request that gives up (its client went away) does not cancel it
for the others waiting. Keys are the callers' own (a page cache key with its View, a tile with its identities), so
what decides an answer is still said in one place each; a flight belongs to the event loop that started it (one
per worker; tests run several).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class Flights:
    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task] = {}

    async def shared(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """What `make()` returns (or raises), computed once for every caller with `key` while it runs."""
        loop = asyncio.get_running_loop()
        task = self._running.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(make())
            self._running[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(task)  # which also retrieves the error when every caller gave up

    def _landed(self, key: Hashable, task: asyncio.Task) -> None:
        if self._running.get(key) is task:  # a flight of another loop may hold the key now
            del self._running[key]

    def __len__(self) -> int:
        return len(self._running)
