"""What a worker process holds in memory: glibc's malloc tuned for a threaded server, and freed memory handed back.

Building a tile index or a local copy of a large layer allocates hundreds of MB that are freed at the end; glibc
keeps most of that freed memory in its heap for reuse instead of returning it, so the worker's resident size stays
at the peak. Measured on 1M points: the tile index build leaves +157 MB resident (the index itself is 53 MB of
arrays); `malloc_trim` gives back 96 MB of it in 8 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Iterator
from functools import lru_cache

M_ARENA_MAX = -8  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_SECONDS = 30.0  # how often the tile refresh thread hands freed memory back (server.app's lifespan)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None  # not glibc: nothing to tune


def few_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread its own malloc arena (up to 8 per core); the request threads' pages of 1,000 features
    then leave memory spread over many arenas that is never returned. Measured on 1M features: +71 MB resident after
    a minute of random pages with the default, +16 MB with two arenas, at the same speed."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)
        # A fixed threshold: blocks of 1 MB and more are mapped and unmapped on their own. glibc raises it to the
        # largest block freed so far (up to 32 MB) by default, and after the tile index build the arrays of every
        # later build (a point index, a local copy) came from the heap, where the long-lived ones among them pinned
        # freed memory no trim could give back.
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_free_memory() -> None:
    """Return the heap's free pages to the system (glibc `malloc_trim`): milliseconds, whatever was built before."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class LargeBuilds:
    """One build of many objects at a time in a worker: a tile box index (it scans a layer's rows: 1M rows' tuples
    and texts alive at once), a point index read and a time ranks read take turns. An object kept for long, made
    while another build's objects are alive, lands in pymalloc's fullest arenas, among them, and keeps its arena
    (1 MiB) resident after they are gone. Measured on 1M points, the worker that pre-renders the tiles, 60 s after
    start: 275-287 MB resident with the reads beside the box index build, 190-191 MB taking turns (24 MB of it the
    point index). Only background work takes a turn: requests never wait for one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            yield


LARGE_BUILDS = LargeBuilds()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a bulk build; the caller collects at its own boundaries
    (`collect_young`). Shapely geometries are tracked objects, and each automatic full collection walks every
    one alive: making 1M points took 0.72 s with it on and 0.33 s off, and a 1M-record layer spent ~2 s of
    its ingest in the collector. Turned back on afterwards only if it was on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collect_young() -> None:
    """Collect what was made since the last call (the young generation): one chunk's cycles, not the whole heap."""
    gc.collect(0)


# A young collection after this many new containers, not Python's 700: a small bbox makes ~300 (dicts, lists, tuples)
# and leaves nearly none alive, so a collection every two or three requests walked the few in flight for nothing.
# Small bbox, 1M points, fresh 1-worker servers, two each way, 3 x 10 s: 3,758-3,817 against 3,442-3,742 req/s.
YOUNG_COLLECTION_AFTER = 20_000


def freeze_long_lived() -> None:
    """Leave the objects alive now (imports, the catalog, the built API: ~110k) out of every later collection.
    A full collection walks every tracked object while holding the GIL, so each one paused the event loop and every
    request thread for 60–270 ms (measured on a worker after start); a worker makes few cycles after start, and the
    ones among these objects stay as long as the worker anyway. Called once, when the worker has started; young
    collections from then on come every YOUNG_COLLECTION_AFTER new containers."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, *gc.get_threshold()[1:])
