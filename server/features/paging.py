"""Paging state shared by requests: exact match counts and keyset checkpoints, per file version and query.

A checkpoint (k, key) says: in this query's order, the row at position k-1 has sort key `key` (the
sort values then the fid). A page at offset O seeks past the nearest checkpoint k <= O and skips only
O-k rows, so a client walking the pages (QGIS, GDAL: offset 0, 1000, 2000, ...) pays O(limit) per page
at any depth, and a cold jump to offset O pays one O(O) scan that later pages reuse.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Hashable

from server.published.layer import LruCache

MAX_CHECKPOINTS = 2048  # per query: beyond that, thin out (every other one) rather than grow

_counts = LruCache(1024)
_checkpoints = LruCache(256)


class Checkpoints:
    """Sorted offsets of one query with the sort key of the row just before each offset."""

    def __init__(self) -> None:
        self._offsets: list[int] = []
        self._keys: list[tuple] = []
        self._lock = threading.Lock()

    def nearest(self, offset: int) -> tuple[int, tuple | None]:
        with self._lock:
            index = bisect.bisect_right(self._offsets, offset) - 1
            if index < 0:
                return 0, None
            return self._offsets[index], self._keys[index]

    def remember(self, offset: int, key: tuple) -> None:
        if offset <= 0:
            return
        with self._lock:
            index = bisect.bisect_left(self._offsets, offset)
            if index < len(self._offsets) and self._offsets[index] == offset:
                return
            self._offsets.insert(index, offset)
            self._keys.insert(index, key)
            if len(self._offsets) > MAX_CHECKPOINTS:
                self._offsets = self._offsets[::2]
                self._keys = self._keys[::2]


def checkpoints(query_key: Hashable) -> Checkpoints:
    found = _checkpoints.get(query_key)
    if found is None:
        # two threads may race to create it; losing one's checkpoints costs a re-scan, not correctness
        found = Checkpoints()
        _checkpoints.put(query_key, found)
    return found


def count(query_key: Hashable, compute: Callable[[], int]) -> int:
    """numberMatched, computed once per file version and filter: deep pages must not recount."""
    cached = _counts.get(query_key)
    if cached is None:
        cached = compute()
        _counts.put(query_key, cached)
    return cached


def known_count(query_key: Hashable) -> int | None:
    """numberMatched if already computed (a provider that can learn it from a short last page asks first)."""
    return _counts.get(query_key)


def remember_count(query_key: Hashable, matched: int) -> None:
    _counts.put(query_key, matched)


def clear() -> None:
    _counts.clear()
    _checkpoints.clear()
