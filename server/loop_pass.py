"""Values looked up at most once per pass of the event loop: every request a worker answers in one pass shares them.

A warm tile answered on the event loop asked each layer's file for its identity (a stat per layer: eight on the
sample catalog) on every request, ~10 % of its time on 1M points (py-spy) although a loaded worker answers dozens
of tiles in one pass of its loop. Within a pass the answers are the same ones a single stat would have given: a
publication that lands during a pass is seen by the next pass (a few milliseconds), as it is by the next request.
Off the event loop (a thread rendering a tile, a test without a loop) nothing is kept: each call looks up anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
_NOT_KEPT = object()


class PerPass(Generic[V]):
    """`look_up(key)`, kept until the running event loop's next pass (a call_soon clears it: callbacks scheduled
    now run after every callback already ready in this pass, before those of the next)."""

    def __init__(self, look_up: Callable[[Hashable], V]):
        self._look_up = look_up
        self._kept: dict[Hashable, V] = {}

    def __call__(self, key: Hashable) -> V:
        kept = self._kept
        value = kept.get(key, _NOT_KEPT)  # one step: a rendering thread may ask while the loop clears it
        if value is not _NOT_KEPT:
            return value  # type: ignore[return-value]
        value = self._look_up(key)
        loop = asyncio._get_running_loop()  # the running loop of this thread, or None (the public one raises)
        if loop is not None:
            if not kept:
                loop.call_soon(kept.clear)
            kept[key] = value
        return value
