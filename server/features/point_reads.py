"""Each published version's points read into an index (server.features.point_index) in the background.

A layer's index is read once per version, by the first lone bbox that could use it or by the read-ahead after a
publication, on a connection of its own, by the first worker that asks: the others, and the server started again,
map the arrays it stored (server.published.stored_arrays). Until it is held, bboxes are answered in SQL as before,
so no request waits for a read (1M points: ~1 s; a PostGIS layer's from the store's local copy of the version).
One index per layer is held (its current version's), and all of them within the worker's budget
(`GEOPORTAL_SERVER_POINT_INDEX_MB`, 32 bytes a point): the layer read longest ago gives way, and a layer alone larger
than the budget is never read.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

from server.features.background import BackgroundReads
from server.features.connections import POOL
from server.features.point_index import BAND_DIVISOR, BYTES_PER_POINT, PointIndex
from server.memory import LARGE_BUILDS, release_free_memory
from server.published.gpkg import PLAIN_POINT_BYTES, GeometryBlobError, is_empty, point_xy
from server.published.layer import LayerFileError, LayerMeta
from server.published.sql import quote_identifier
from server.published.stored_arrays import derived
from server.settings import get_server_settings

LOGGER = logging.getLogger(__name__)
# Below this many features a store's own index answers a bbox about as fast as ours (~0.1 ms): not read.
FEW_POINTS = 10_000
CHUNK = 4_096
WKB_POINT_HEADER = np.array([1, 1, 0, 0, 0], np.uint8)  # little-endian, type 1 (Point)


class PointIndexes:
    """The indexes this worker holds: layer key -> (version, index, or False when the version has no index)."""

    def __init__(self, budget_bytes: int | None = None):
        self._budget = budget_bytes
        self._held: OrderedDict[Hashable, tuple[Hashable, PointIndex | bool]] = OrderedDict()
        self._lock = threading.Lock()
        self._reads = BackgroundReads("point-index")

    @property
    def budget(self) -> int:
        if self._budget is None:  # the server's setting, read on first use (tests and the CLI set it first)
            self._budget = get_server_settings().point_index_mb * 2**20
        return self._budget

    def held(self, layer: Hashable, version: Hashable) -> PointIndex | None:
        """The index of `version` of `layer` when it has been read (None: not read, being read, or not applicable).
        Asked by every lone bbox: no lock (one dict lookup is atomic), since a contended lock makes request threads
        trade the GIL (measured: 8 threads, twice the context switches of the SQL path)."""
        found = self._held.get(layer)
        if found is None or found[0] != version:
            return None
        return found[1] or None

    def wanted(self, layer: Hashable, version: Hashable, meta: LayerMeta) -> bool:
        """Whether `version` of `layer` should be read: a point layer of many points that fits the budget, and
        neither held, tried nor being read."""
        count = meta.feature_count
        if meta.geometry_type != "POINT" or count is None or count < FEW_POINTS:
            return False
        if count * BYTES_PER_POINT > self.budget:
            return False
        with self._lock:
            found = self._held.get(layer)
            return (found is None or found[0] != version) and not self._reads.running(layer)

    def read_later(self, layer: Hashable, version: Hashable, read: Callable[[], PointIndex | None], name: str) -> None:
        """Read the index of `version` of `layer` (called `name` in the log) in a thread of its own with `read` (None:
        the version has no index, or was published over meanwhile)."""
        self._reads.start(layer, lambda: self._read(layer, version, read, name))

    def _read(self, layer: Hashable, version: Hashable, read: Callable[[], PointIndex | None], name: str) -> None:
        try:
            with LARGE_BUILDS.turn():  # not beside a tile box index build (server.memory)
                index = read()
        except Exception as error:  # noqa: BLE001 - the version's bboxes stay in SQL, as before; said once
            LOGGER.warning(
                "%s: the points of version %s could not be read, bboxes answered in SQL: %s", name, version, error
            )
            index = None
        with self._lock:
            self._held[layer] = (version, index or False)
            self._held.move_to_end(layer)
            self._keep_within_budget()
        release_free_memory()  # the read's transient arrays (3x the index) go back now, not at the next trim

    def _keep_within_budget(self) -> None:
        total = sum(index.nbytes for _, index in self._held.values() if index)
        while total > self.budget and self._held:
            _, (_, index) = self._held.popitem(last=False)
            total -= index.nbytes if index else 0

    def wait_for_reads(self, timeout: float) -> bool:
        """Wait until no index is being read (tests); True when none is left."""
        return self._reads.wait_for_reads(timeout)


POINT_INDEXES = PointIndexes()


def geopackage_points(path: str, version: Hashable, meta: LayerMeta) -> PointIndex | None:
    """The index of the file `version` of `path` (None when the file was replaced meanwhile, or a geometry is not a
    plain 2D point: those the SQL path tests with GEOS), read by the first worker that asks and kept on disk for the
    others and the next start (server.published.stored_arrays). Each worker read it on its own before, at every
    start: on 1M points ~1 s of CPU each, which halved the tiles a restarted server answered in its first seconds."""
    stored = derived(
        "points",
        (path, meta.table),
        (version, BAND_DIVISOR),  # the version and how the index is cut
        lambda: None if (index := _read_geopackage_points(path, version, meta)) is None else index.stored(),
    )
    return None if stored is None else PointIndex.from_stored(*stored)


def _read_geopackage_points(path: str, version: Hashable, meta: LayerMeta) -> PointIndex | None:
    try:
        with POOL.connection(path) as (connection, current):
            if current != version:
                return None
            return _geopackage_index(connection, meta)
    except (LayerFileError, sqlite3.DatabaseError, GeometryBlobError) as error:
        LOGGER.warning("%s: the points of %s could not be read: %s", meta.table, path, error)
        return None


def _geopackage_index(connection: sqlite3.Connection, meta: LayerMeta) -> PointIndex | None:
    geometry, fid = quote_identifier(meta.geometry_column), quote_identifier(meta.fid_column)
    rows = connection.execute(
        f"SELECT {fid}, {geometry} FROM {quote_identifier(meta.table)} WHERE {geometry} IS NOT NULL"
    )
    # Filled a chunk at a time into arrays of the layer's size: the read's peak holds the points once, not twice
    # (the chunks' arrays and their concatenation). Small chunks keep the rows alive at once (a tuple, an int and a
    # blob each) to a few hundred KB, at the same speed (1M points: 0.81 s with 4,096 rows, 0.86 s with 65,536).
    columns = _Columns(meta.feature_count or CHUNK)
    while chunk := rows.fetchmany(CHUNK):
        keys = np.fromiter((row[0] for row in chunk), np.int64, len(chunk))
        blobs = [row[1] for row in chunk]
        points = _plain_points(blobs) or _points_one_by_one(blobs)
        if points is None:
            return None
        kept, xs, ys = points
        columns.append(keys[kept], xs, ys)
    return PointIndex.of(*columns.filled())


class _Columns:
    """fid, x and y of the points read so far, in arrays grown (doubled) when a layer has more than it said."""

    def __init__(self, capacity: int):
        self.arrays = (np.empty(capacity, np.int64), np.empty(capacity), np.empty(capacity))
        self.count = 0

    def append(self, *values: np.ndarray) -> None:
        end = self.count + len(values[0])
        if end > len(self.arrays[0]):
            self.arrays = tuple(np.resize(array, max(end, 2 * len(array))) for array in self.arrays)
        for array, part in zip(self.arrays, values, strict=True):
            array[self.count : end] = part
        self.count = end

    def filled(self) -> tuple[np.ndarray, ...]:
        return tuple(array[: self.count] for array in self.arrays)


def _plain_points(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every blob a 2D point as GDAL writes one (no envelope, little-endian WKB): parsed as one array, without a
    Python object per point (1M points: ~3M fewer short-lived objects, which, made beside the tiles' pre-rendering,
    left the worker's memory fragmented); None for anything else (`_points_one_by_one` reads it)."""
    if any(len(blob) != PLAIN_POINT_BYTES for blob in blobs):
        return None
    raw = np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, PLAIN_POINT_BYTES)
    if not ((raw[:, 3] & 0b1111_1110) == 0).all() or not (raw[:, 8:13] == WKB_POINT_HEADER).all():
        return None  # an envelope, an empty or extended geometry, big-endian WKB, another type
    kept = np.ones(len(blobs), bool)
    return kept, raw[:, 13:21].copy().view("<f8").ravel(), raw[:, 21:29].copy().view("<f8").ravel()


def _points_one_by_one(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(blobs holding a point, x, y), empty points left out; None when a blob is not a plain 2D point."""
    kept, xs, ys = np.zeros(len(blobs), bool), [], []
    for position, blob in enumerate(blobs):
        if is_empty(blob):
            continue  # an empty point is in no rectangle
        xy = point_xy(blob)
        if xy is None:
            return None
        kept[position] = True
        xs.append(xy[0])
        ys.append(xy[1])
    return kept, np.array(xs, np.float64), np.array(ys, np.float64)
