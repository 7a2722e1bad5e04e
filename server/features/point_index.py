"""A lone `bbox=` over a point layer, answered from the layer's points held in memory.

A small bbox over 1M points costs the database ~0.6 ms of CPU (PostGIS: a GiST bitmap scan of the ~550 matches, each
row's heap visited for the exact count; the GeoPackage: an R-tree walk and its candidates' blobs), and on two cores
shared with the server that is most of the request's price. Held here instead (fid, x, y: 24 bytes a point), the
matches are found in memory and only the page's rows are read, by fid through the primary key (~0.15 ms).

The points are cut into horizontal bands of about √n points each, sorted by x within a band. A rectangle's matches in
a band are then one slice between two binary searches on x; only in its first and last band is y tested, point by
point: in the bands between, every point lies within the rectangle's y range, because a point's band comes from the
same arithmetic as the rectangle's (IEEE subtraction, multiplication and truncation are monotonic). The test is the
one both stores make for a point: inside the rectangle, edges included (server.features.pg_sql.top_level_spatial, the
GeoPackage's exact test), on the coordinates the store holds, so numberMatched and the page are the same.

Searches (bisect) and slices of memoryviews run holding the GIL. numpy would release and take it back around each of
its ~20 small calls a query makes: with 8 request threads that was 49 context switches and 0.39 ms of system time per
query against 0.06 ms in SQL (1M points, 1 worker: 940 against 1,200 req/s). numpy only builds the index, and gathers
the matches of a large rectangle, where a few calls do much work each.

Pure: no I/O here. server.features.point_reads reads each published version's points in the background and keeps
them within the worker's budget.
"""

from __future__ import annotations

import heapq
import math
import mmap
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.features.query import Conditions, Ordering
from server.published.layer import LayerMeta
from server.published.sql import TRUE

BYTES_PER_POINT = 24  # fid, x, y
# Matches above this many are gathered by numpy (a few calls, each of much work) rather than slice by slice.
MANY_MATCHES = 20_000


@dataclass(frozen=True)
class PointIndex:
    """Points sorted by band, then by x; band b holds positions starts[b] .. starts[b + 1]. The memoryviews share
    the arrays' memory: indexing them gives Python numbers without a numpy call."""

    fids: np.ndarray  # int64
    xs: np.ndarray  # float64
    ys: np.ndarray  # float64
    starts: list[int]  # bands + 1 entries
    low_y: float
    scale: float  # bands per unit of y

    @classmethod
    def of(cls, fids: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> PointIndex:
        """The index of these points; NULL and empty geometries are left out by the readers, NaN and infinite
        coordinates (in no rectangle) here."""
        fids = np.asarray(fids).astype(np.int64, copy=False)
        xs, ys = np.asarray(xs).astype(np.float64), np.asarray(ys).astype(np.float64)
        finite = np.isfinite(xs) & np.isfinite(ys)
        if not finite.all():
            fids, xs, ys = fids[finite], xs[finite], ys[finite]
        count = len(fids)
        bands = max(1, math.isqrt(count))
        low_y = float(ys.min()) if count else 0.0
        height = float(ys.max()) - low_y if count else 0.0
        scale = bands / height if height > 0 else 0.0
        band = _bands_of(ys, low_y, scale, bands)
        order = np.lexsort((fids, xs, band))
        starts = np.searchsorted(band[order], np.arange(bands + 1)).tolist()
        return cls(_off_heap(fids, order), _off_heap(xs, order), _off_heap(ys, order), starts, low_y, scale)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_views", (memoryview(self.fids), memoryview(self.xs), memoryview(self.ys)))

    @property
    def nbytes(self) -> int:
        return self.fids.nbytes + self.xs.nbytes + self.ys.nbytes

    def __len__(self) -> int:
        return len(self.fids)

    def matching(self, box: tuple[float, float, float, float]) -> list[int] | np.ndarray:
        """The fids of the points inside `box` (minx, miny, maxx, maxy; edges included), in no particular order."""
        minx, miny, maxx, maxy = box
        fids, xs, ys = self._views
        first, last = self._band(miny), self._band(maxy)
        slices = []
        found = 0
        for band in range(first, last + 1):
            start, end = self.starts[band], self.starts[band + 1]
            low = bisect_left(xs, minx, start, end)
            high = bisect_right(xs, maxx, low, end)
            if low < high:
                slices.append((band, low, high))
                found += high - low
        if found > MANY_MATCHES:
            return self._gather(slices, miny, maxy)
        matches: list[int] = []
        for band, low, high in slices:
            if band in (first, last):  # the rectangle's y edges cross these bands: test each point
                matches.extend(fids[i] for i in range(low, high) if miny <= ys[i] <= maxy)
            else:
                matches.extend(fids[low:high].tolist())
        return matches

    def _gather(self, slices: list[tuple[int, int, int]], miny: float, maxy: float) -> np.ndarray:
        positions = np.concatenate([np.arange(low, high) for _, low, high in slices])
        ys = self.ys[positions]
        inside = (ys >= miny) & (ys <= maxy)  # inner bands pass anyway; one test over all is fewer calls
        return self.fids[positions[inside]]

    def _band(self, y: float) -> int:
        """The band of y, by the points' own arithmetic (_bands_of)."""
        bands = len(self.starts) - 1
        scaled = (y - self.low_y) * self.scale
        if not math.isfinite(scaled):
            return 0 if scaled < 0 else bands - 1
        return min(max(int(scaled), 0), bands - 1)


def _off_heap(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """values[order] in memory mapped for it alone, outside malloc's heap: an index lives as long as its version,
    and inside the heap it pinned the freed memory around it (the tiles rendered beside its read), which malloc_trim
    could then not give back (1M points, 1 worker, steady RSS: 312 MB against 254 MB without an index)."""
    kept = np.frombuffer(mmap.mmap(-1, max(values.nbytes, 1)), values.dtype, count=len(values))
    np.take(values, order, out=kept)
    return kept


def _bands_of(ys: np.ndarray, low: float, scale: float, bands: int) -> np.ndarray:
    return np.clip(((ys - low) * scale).astype(np.int64), 0, bands - 1)


def page(matches: list[int] | np.ndarray, offset: int, limit: int) -> list[int]:
    """matches[offset : offset + limit] in fid order (the page order of a lone bbox). Many matches (numpy's) are
    partitioned first rather than sorted whole when the page is near the front; from a list, a page near its front
    is picked with heapq (550 matches, a page of 10: 17 µs against 30 to sort them all)."""
    wanted = offset + limit
    if isinstance(matches, np.ndarray):
        if wanted < len(matches):
            matches = np.partition(matches, wanted - 1)[:wanted]
        return np.sort(matches)[offset:wanted].tolist()
    if wanted * 8 < len(matches):
        return heapq.nsmallest(wanted, matches)[offset:]
    return sorted(matches)[offset:wanted]


def may_be_lone_box(query: Mapping[str, Any]) -> bool:
    """Whether a provider query's arguments may ask a lone bbox (lone_box decides, from the conditions they build):
    a bbox and no other condition or order. Asked before building anything, where building costs a second store."""
    others = ("datetime_", "properties", "sortby", "q", "filterq")
    return bool(query.get("bbox")) and not any(query.get(name) for name in others)


def lone_box(meta: LayerMeta, found: Conditions, order: Ordering) -> tuple[float, float, float, float] | None:
    """The rectangle of a query an index answers (one bbox test on a point layer, nothing else, pages in fid order);
    None for every other query. A rectangle without area is left to the stores, which find nothing in it."""
    if meta.geometry_type != "POINT" or found.where != TRUE or len(found.spatial) != 1:
        return None
    if len(order.expressions) != 1 or order.expressions[0][1]:  # only the fid, ascending
        return None
    test = found.spatial[0]
    if not test.box or test.operation != "intersects":
        return None
    minx, miny, maxx, maxy = test.bounds
    return (minx, miny, maxx, maxy) if minx < maxx and miny < maxy else None
