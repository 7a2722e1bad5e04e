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


QUERY_LIMITER: RunVar[CapacityLimiter] = RunVar("geoportal_query_threads")  # one per event loop, i.e. per worker


def query_limiter(app) -> CapacityLimiter | None:
    """The threads a worker runs pygeoapi handlers on: the store's `query_threads` (None: anyio's default, 40).
    The GeoPackage store's queries run on the worker's own CPU (SQLite in the process): beyond the cores, a thread
    more only waits for the GIL, and each thread that takes it between another's short releases (a SQLite step, a
    GEOS call, a stat) holds that one up."""
    threads = getattr(app.state.store, "query_threads", None)
    return None if threads is None else loop_limiter(QUERY_LIMITER, threads)
