"""Box index of a published layer: low-zoom tiles are thinned from it without scanning the R-tree. Built once per
publication and kept on disk, memory-mapped by every worker (`stored_index`)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from layers.catalog import LayerSpec
from server.memory import LARGE_BUILDS, collector_paused
from server.published.sql import quote_identifier
from server.published.stored_arrays import read_stored_arrays, stored_arrays
from server.tiles.blobs import point_coordinates, shapely_geometries
from server.tiles.grid import MAX_LATITUDE

NEVER = np.iinfo(np.int64).max  # the end of an open-ended feature
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class LayerIndex:
    """Every feature's Web Mercator box and validity in epoch milliseconds, sorted largest-first then by fid,
    so a stable sort by cell keeps, per cell, the same representative in every tile that sees the cell."""

    ids: np.ndarray
    left: np.ndarray
    bottom: np.ndarray
    right: np.ndarray
    top: np.ndarray
    start: np.ndarray | None  # None: the layer has no temporal fields
    end: np.ndarray | None  # None: no end field (features are instants)
    dates: bool = False  # temporal fields are dates: filter bounds are compared as (local) days

    @property
    def nbytes(self) -> int:
        arrays = [self.ids, self.left, self.bottom, self.right, self.top, self.start, self.end]
        return sum(a.nbytes for a in arrays if a is not None)

    def select(self, box: tuple[float, float, float, float], when: tuple[int | None, int | None] | None) -> np.ndarray:
        """Positions of features meeting the Mercator `box` and active in `when` (epoch-ms bounds, None open)."""
        left, bottom, right, top = box
        mask = (self.right >= left) & (self.left <= right) & (self.top >= bottom) & (self.bottom <= top)
        if when is not None and self.start is not None:
            begin, finish = when
            if finish is not None:
                mask &= self.start <= finish
            if begin is not None:
                mask &= (self.end if self.end is not None else self.start) >= begin
        return np.flatnonzero(mask)


def epoch_ms(texts: Sequence[str | None], date_end: bool = False) -> np.ndarray:
    """Stored dates/datetimes (the contract's UTC text, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS.sssZ`) as epoch ms; a
    date as its first (or, for an end, last) millisecond; NULL as NEVER. Parsed by numpy, not pandas: pandas (with
    pyarrow) would be ~100 MB resident in every worker for this alone; same values, 1M texts in 0.2 s instead of 0.8."""
    parsed = np.array([t[:-1] if t and t[-1] == "Z" else t for t in texts], dtype="datetime64[ms]")  # Z: UTC
    values = parsed.astype(np.int64)
    if date_end:
        values = values + _DAY_MS - 1
    values[np.isnat(parsed)] = NEVER
    return values


def mercator_bounds(west, south, east, north) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lon/lat boxes as Web Mercator boxes, by the spherical formulas PostGIS evaluates too (bit for bit the same
    as PROJ's EPSG:3857), so both tile renderers put a feature in the same thinning cell."""
    radius = 6378137.0
    clip = lambda lat: np.radians(np.clip(lat, -MAX_LATITUDE, MAX_LATITUDE))  # noqa: E731 - the grid's edge
    return (
        radius * np.radians(west),
        radius * np.arcsinh(np.tan(clip(south))),
        radius * np.radians(east),
        radius * np.arcsinh(np.tan(clip(north))),
    )


def load_index(db: sqlite3.Connection, spec: LayerSpec, batch: int = 100_000) -> LayerIndex:
    """One sequential scan of the table (fid, geometry, temporal columns) in batches. Boxes are the exact
    geometry bounds, not the R-tree's (float32, rounded outwards by a few ulps): the size order and cells of
    points would otherwise follow rounding noise, which the PostGIS renderer cannot reproduce."""
    names = temporal_columns(spec)
    columns = "".join(f", {quote_identifier(name)}" for name in names)
    cursor = db.execute(f"SELECT fid, geom{columns} FROM {quote_identifier(spec.id)}")
    ids, boxes, times = [], [], [[] for _ in names]
    # millions of row tuples and texts, none in a cycle: a collector left on would walk them again and again as they
    # pile up (a third of a 1M-row scan's time)
    with LARGE_BUILDS.turn(), collector_paused():
        while rows := cursor.fetchmany(batch):
            part_ids, part_boxes, part_times = index_rows(rows)
            ids.append(part_ids)
            boxes.append(part_boxes)
            for column, part in zip(times, part_times, strict=True):
                column.extend(part)
    ids_all = np.concatenate(ids) if ids else np.empty(0, np.int64)
    return index_of(spec, ids_all, np.concatenate(boxes) if boxes else np.empty((0, 4)), times)


def temporal_columns(spec: LayerSpec) -> list[str]:
    """The columns the index keeps besides fid and geometry: the temporal start and end fields."""
    return [spec.temporal.start, *([spec.temporal.end] if spec.temporal.end else [])] if spec.temporal else []


def index_rows(rows: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """Rows (fid, GeoPackage geometry, temporal columns...) as fids, lon/lat bounds and temporal texts, leaving out
    the features without a geometry (no tile shows them)."""
    if not rows:
        return np.empty(0, np.int64), np.empty((0, 4)), []
    fids, blobs, *columns = zip(*rows, strict=True)
    xy = point_coordinates(blobs)
    if xy is not None:  # plain points (a point layer as published): their box is the point, read from the bytes
        return np.array(fids, dtype=np.int64), np.column_stack([xy, xy]), [list(column) for column in columns]
    geometries = shapely_geometries(blobs)
    present = ~shapely.is_missing(geometries)
    ids = np.array(fids, dtype=np.int64)[present]
    kept = np.flatnonzero(present).tolist()
    times = [[column[i] for i in kept] for column in columns]
    return ids, shapely.bounds(geometries[present]).reshape(-1, 4), times


def index_of(spec: LayerSpec, ids: np.ndarray, bounds: np.ndarray, times: list[list]) -> LayerIndex:
    """The index of features given by fid, lon/lat bounds and temporal texts, in any order."""
    left, bottom, right, top = mercator_bounds(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    times = times or [[] for _ in temporal_columns(spec)]  # no rows at all
    start = end = None
    if spec.temporal:
        start = epoch_ms(times[0])
        if spec.temporal.end:
            end = epoch_ms(times[1], date_end=spec.field(spec.temporal.end).type == "date")
    dates = bool(spec.temporal) and spec.field(spec.temporal.start).type == "date"
    return _sorted(ids, left, bottom, right, top, start, end, dates)


def _sorted(ids, left, bottom, right, top, start, end, dates: bool) -> LayerIndex:
    order = np.lexsort((ids, -((right - left) + (top - bottom))))
    pick = lambda a: None if a is None else np.ascontiguousarray(a[order])  # noqa: E731
    return LayerIndex(pick(ids), pick(left), pick(bottom), pick(right), pick(top), pick(start), pick(end), dates)


def replaced(index: LayerIndex, removed: np.ndarray, added: LayerIndex) -> LayerIndex:
    """The index of the next version of a layer from this one: the features of fids `removed` (ended or changed)
    taken out, `added` (appeared or changed, as they are now) put in. The same arrays as `load_index` over the new
    version (the order is a total one: size, then the unique fid), at the cost of a sort instead of a scan."""
    keep = ~np.isin(index.ids, removed)
    join = lambda a, b: None if a is None else np.concatenate([np.asarray(a)[keep], b])  # noqa: E731
    arrays = [join(getattr(index, name), getattr(added, name)) for name in ARRAYS]
    return _sorted(*arrays, dates=index.dates)


ARRAYS = ("ids", "left", "bottom", "right", "top", "start", "end")


def stored_index(folder: Path, name: str, version: str, build: Callable[[], LayerIndex]) -> LayerIndex:
    """The index of `name` (a published file) at `version` from `folder`, built by the first process that asks and
    memory-mapped by every one (server.published.stored_arrays)."""

    def built() -> tuple[dict, dict]:
        index = build()
        return {array: getattr(index, array) for array in ARRAYS}, {"dates": index.dates}

    stored = stored_arrays(folder, name, version, built)
    assert stored is not None  # `built` always has arrays to keep
    return _layer_index(*stored)


def read_stored(folder: Path, name: str, version: str) -> LayerIndex | None:
    """The index `stored_index` kept of `name` at `version`, memory-mapped; None when it is not there (any more)."""
    stored = read_stored_arrays(folder, name, version)
    return None if stored is None else _layer_index(*stored)


def _layer_index(arrays: dict, values: dict) -> LayerIndex:
    return LayerIndex(**{array: arrays.get(array) for array in ARRAYS}, dates=values["dates"])


class IndexCache:
    """One index per published file identity; building it (seconds for a million features) happens once per
    publication, under a lock so concurrent tile requests wait instead of building it twice."""

    def __init__(self) -> None:
        self._indexes: dict[str, tuple[object, LayerIndex]] = {}  # path -> (identity, index): old files drop out
        self._lock = threading.Lock()
        self._building: dict[object, threading.Lock] = {}

    def get(self, identity: tuple, build: Callable[[], LayerIndex]) -> LayerIndex:
        path = identity[0]
        with self._lock:
            held = self._indexes.get(path)
            if held and held[0] == identity:
                return held[1]
            lock = self._building.setdefault(identity, threading.Lock())
        with lock:
            with self._lock:
                held = self._indexes.get(path)
                if held and held[0] == identity:
                    return held[1]
            index = build()
            with self._lock:
                self._indexes[path] = (identity, index)
                self._building.pop(identity, None)
            return index
