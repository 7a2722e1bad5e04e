"""Capacity limiters kept per event loop: anyio's limiters belong to the loop they were first used in, and a worker
process runs one loop (tests run several, one after the other or at once in threads)."""

from __future__ import annotations

from anyio import CapacityLimiter
from anyio.lowlevel import RunVar


def loop_limiter(kept: RunVar[CapacityLimiter], threads: int) -> CapacityLimiter:
    """The limiter `kept` holds for the running event loop (a worker's), made with `threads` on first use."""
    try:
        return kept.get()
    except LookupError:
        limiter = CapacityLimiter(threads)
        kept.set(limiter)
        return limiter
