"""A lone `bbox=` over a point layer, answered from the layer's points held in memory.

A small bbox over 1M points costs the database ~0.6 ms of CPU (PostGIS: a GiST bitmap scan of the ~550 matches, each
row's heap visited for the exact count; the GeoPackage: an R-tree walk and its candidates' blobs), and on two cores
shared with the server that is most of the request's price. Held here instead (32 bytes a point), the matches are
found in memory and only the page's rows are read, by fid through the primary key (~0.1 ms).

The points are cut into √n/4 horizontal bands (of about 4√n points each), sorted by x within a band. A rectangle's
matches in a band are then one slice between two binary searches on x, and only the points of the slices, the
rectangle's own x range in the bands its y range crosses, are tested on y. The test is the one both stores make for
a point: inside the rectangle, edges included (server.features.pg_sql.top_level_spatial, the GeoPackage's exact
test), on the coordinates the store holds, so numberMatched and the page are the same.

The searches of all bands are two numpy calls over one array of keys (band, rank of x), the slices' gathering and
the y test a few more: ~15 calls whatever the number of bands. 1M points, 0.01° boxes at random, 555 matches:
35-39 µs a rectangle and its page of 10 with √n bands (26 µs with √n/4: BAND_DIVISOR), against 74-81 µs with a
bisect per band on memoryviews, the ~550 fids made Python ints one by one and the page picked with heapq (the index
as it was at c770b52). numpy releases the GIL in some of these calls: a lone bbox is answered on the event loop
(server.early_answers), where no request thread waits for it, or on a request thread beside the SQL that reads its
page, which releases it too. Staff's small bboxes (a key: pygeoapi's route, on its threads), fresh 1-worker servers,
8 connections, 3 x 10 s: 897-1,050 req/s, p95 11.3-12.9 ms, against 803-1,015 req/s, p95 11.9-14.3 ms with the
bisects.

Pure: no I/O here. server.features.point_reads reads each published version's points in the background and keeps
them within the worker's budget.
"""

from __future__ import annotations

import math
import mmap
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.features.query import Conditions, Ordering
from server.published.layer import LayerMeta
from server.published.sql import TRUE

BYTES_PER_POINT = 32  # fid, key (band and rank of x), y, and x in the ranks' order
# √n / BAND_DIVISOR bands: each band a rectangle crosses costs a slice (its searches, its gathering), each point of
# its slices a test, and fewer, taller bands weigh them better. A rectangle and its page of 10, 3,000 boxes each
# (half the points spread over a city, half around its centre), √n against √n/4 bands: 1M points, 0.01° 49.1 against
# 40.5 µs, 0.005 x 0.02° 54.1 / 42.4, 0.05° (36,000 matches) 546 / 508, 0.002° 17.0 / 16.3; 100k points within
# ±0.3 µs at 0.002° and 0.02 x 0.005°, better at the others; evenly spread 1M, 0.01°: 34.8 against 26.3 µs.
BAND_DIVISOR = 4


@dataclass(frozen=True)
class PointIndex:
    """Points sorted by band, then by x. `keys` says both at once, exactly: a point's band in the high 32 bits and the
    rank of its x among all the points' (how many xs are smaller, from `sorted_xs`) in the low 32, so the points of
    one band with x in [minx, maxx] are the keys from (band, rank of minx) to (band, rank past maxx), and all bands'
    slices are found with two vectorised searches. Ranks compare exactly as the xs do: no rounding at the edges."""

    fids: np.ndarray  # int64, in key order
    keys: np.ndarray  # int64: band << 32 | rank of x
    ys: np.ndarray  # float64, in key order
    sorted_xs: np.ndarray  # float64: every point's x, ascending (the ranks' scale)
    band_keys: np.ndarray  # int64: band << 32 for each band
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
        if count >= 2**32:
            raise ValueError(f"{count} points: a point index holds fewer than 2**32")
        bands = max(1, math.isqrt(count) // BAND_DIVISOR)
        low_y = float(ys.min()) if count else 0.0
        height = float(ys.max()) - low_y if count else 0.0
        scale = bands / height if height > 0 else 0.0
        band = _bands_of(ys, low_y, scale, bands)
        sorted_xs = np.sort(xs)
        keys = (band << 32) | np.searchsorted(sorted_xs, xs, side="left").astype(np.int64)
        order = np.lexsort((fids, keys))
        band_keys = np.arange(bands, dtype=np.int64) << 32
        return cls(
            _off_heap(fids, order),
            _off_heap(keys, order),
            _off_heap(ys, order),
            _off_heap(sorted_xs, None),
            band_keys,
            low_y,
            scale,
        )

    def stored(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Its arrays and values as server.published.stored_arrays keeps them (`from_stored` reads them back)."""
        arrays = {name: getattr(self, name) for name in ("fids", "keys", "ys", "sorted_xs", "band_keys")}
        return arrays, {"low_y": self.low_y, "scale": self.scale}  # JSON writes a float's shortest exact repr

    @classmethod
    def from_stored(cls, arrays: Mapping[str, np.ndarray], values: Mapping[str, float]) -> PointIndex:
        return cls(**arrays, low_y=values["low_y"], scale=values["scale"])

    def __post_init__(self) -> None:
        object.__setattr__(self, "_xs", memoryview(self.sorted_xs))

    @property
    def nbytes(self) -> int:
        return self.fids.nbytes + self.keys.nbytes + self.ys.nbytes + self.sorted_xs.nbytes

    def __len__(self) -> int:
        return len(self.fids)

    def matching(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """The fids of the points inside `box` (minx, miny, maxx, maxy; edges included), in no particular order."""
        minx, miny, maxx, maxy = box
        low, high = bisect_left(self._xs, minx), bisect_right(self._xs, maxx)  # ranks: x >= minx, x <= maxx
        if low >= high:
            return _NONE
        bands = self.band_keys[self._band(miny) : self._band(maxy) + 1]
        starts = self.keys.searchsorted(bands + low)
        lengths = self.keys.searchsorted(bands + high) - starts
        ends = lengths.cumsum()
        found = int(ends[-1])
        if not found:
            return _NONE
        positions = np.repeat(starts - ends + lengths, lengths) + np.arange(found)  # the slices, end to end
        ys = self.ys[positions]
        return self.fids[positions[(ys >= miny) & (ys <= maxy)]]  # the bands between pass anyway: one test for all

    def _band(self, y: float) -> int:
        """The band of y, by the points' own arithmetic (_bands_of)."""
        bands = len(self.band_keys)
        scaled = (y - self.low_y) * self.scale
        if not math.isfinite(scaled):
            return 0 if scaled < 0 else bands - 1
        return min(max(int(scaled), 0), bands - 1)


_NONE = np.empty(0, np.int64)


def _off_heap(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """values[order] (values, without an order) in memory mapped for it alone, outside malloc's heap: an index lives
    as long as its version, and inside the heap it pinned the freed memory around it (the tiles rendered beside its
    read), which malloc_trim could then not give back (1M points, 1 worker, steady RSS: 312 MB against 254 MB without
    an index)."""
    kept = np.frombuffer(mmap.mmap(-1, max(values.nbytes, 1)), values.dtype, count=len(values))
    if order is None:
        kept[:] = values
    else:
        np.take(values, order, out=kept)
    return kept


def _bands_of(ys: np.ndarray, low: float, scale: float, bands: int) -> np.ndarray:
    return np.clip(((ys - low) * scale).astype(np.int64), 0, bands - 1)


def page(matches: np.ndarray, offset: int, limit: int) -> list[int]:
    """matches[offset : offset + limit] in fid order (the page order of a lone bbox), partitioned first rather than
    sorted whole when the page is near the front. `matches` is the caller's own array (PointIndex.matching makes a
    new one): it is reordered in place, by the arrays' methods rather than numpy's functions, which copy first and
    dispatch through Python (555 matches, a page of 10: 6.9 against 8.3 µs)."""
    wanted = offset + limit
    if wanted <= 0:
        return []
    if wanted < len(matches):
        matches.partition(wanted - 1)
        matches = matches[:wanted]
    matches.sort()
    return matches[offset:wanted].tolist()


def may_be_lone_box(query: Mapping[str, Any]) -> bool:
    """Whether a provider query's arguments may ask a lone bbox (lone_box decides, from the conditions they build):
    a bbox and no other condition or order. Asked before building anything, where building costs a second store."""
    others = ("datetime_", "properties", "sortby", "q", "filterq")
    return bool(query.get("bbox")) and not any(query.get(name) for name in others)


def lone_box(meta: LayerMeta, found: Conditions, order: Ordering) -> tuple[float, float, float, float] | None:
    """The rectangle of a query an index answers (one bbox test on a point layer, nothing else, pages in fid order);
    None for every other query. A rectangle without area is left to the stores, which find nothing in it."""
    if found.where != TRUE or len(found.spatial) != 1:
        return None
    if len(order.expressions) != 1 or order.expressions[0][1]:  # only the fid, ascending
        return None
    test = found.spatial[0]
    if not test.box or test.operation != "intersects":
        return None
    return point_rectangle(meta, test.bounds)


def point_rectangle(meta: LayerMeta, bounds: Sequence[float]) -> tuple[float, float, float, float] | None:
    """The rectangle an index answers for a bbox (lon/lat, as the stores test it) over this layer: a point layer's
    and a bbox with area; None for any other. A rectangle without area is left to the stores, which find nothing in
    it (a reversed one is the client's mistake, which they report)."""
    if meta.geometry_type != "POINT":
        return None
    minx, miny, maxx, maxy = bounds
    return (minx, miny, maxx, maxy) if minx < maxx and miny < maxy else None
