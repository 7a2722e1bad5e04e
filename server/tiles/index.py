"""In-memory box index of a published layer: low-zoom tiles are thinned from it without scanning the R-tree."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyproj import Transformer

from layers.catalog import LayerSpec
from server.published.sql import quote_identifier
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


def epoch_ms(texts: pd.Series, date_end: bool = False) -> np.ndarray:
    """Stored dates/datetimes (UTC text) as epoch ms; a date as its first (or, for an end, last) millisecond."""
    parsed = pd.to_datetime(texts, utc=True, format="ISO8601")
    # pandas picks the resolution it parsed at (ns, us, ms...): state the unit rather than assume one.
    values = np.asarray(parsed.dt.tz_localize(None), dtype="datetime64[ms]").astype(np.int64)
    if date_end:
        values = values + _DAY_MS - 1
    values[parsed.isna().to_numpy()] = NEVER
    return values


def load_index(db: sqlite3.Connection, spec: LayerSpec) -> LayerIndex:
    """Two sequential scans (the R-tree, then the temporal columns) aligned by fid: a join by rowid would
    seek once per feature, several times slower on a million rows."""
    rtree = quote_identifier(f"rtree_{spec.id}_geom")
    boxes = np.array(db.execute(f"SELECT id, minx, miny, maxx, maxy FROM {rtree}").fetchall(), dtype=np.float64)
    boxes = boxes.reshape(-1, 5)
    ids = boxes[:, 0].astype(np.int64)  # fids are < 2**53, exact as doubles
    mercator = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    left, bottom = mercator.transform(boxes[:, 1], np.clip(boxes[:, 2], -MAX_LATITUDE, MAX_LATITUDE))
    right, top = mercator.transform(boxes[:, 3], np.clip(boxes[:, 4], -MAX_LATITUDE, MAX_LATITUDE))
    left, bottom, right, top = (np.asarray(a) for a in (left, bottom, right, top))
    order = np.lexsort((ids, -((right - left) + (top - bottom))))
    start = end = None
    if spec.temporal:
        names = [spec.temporal.start, *([spec.temporal.end] if spec.temporal.end else [])]
        columns = ", ".join(quote_identifier(name) for name in names)
        rows = db.execute(f"SELECT fid, {columns} FROM {quote_identifier(spec.id)}").fetchall()
        fids = np.fromiter((row[0] for row in rows), np.int64, len(rows))
        by_fid = np.arange(len(fids)) if np.all(fids[1:] > fids[:-1]) else np.argsort(fids)  # rowid order: sorted
        where = by_fid[np.searchsorted(fids[by_fid], ids[order])]
        start = epoch_ms(pd.Series([row[1] for row in rows], dtype=object))[where]
        if spec.temporal.end:
            is_date = spec.field(spec.temporal.end).type == "date"
            end = epoch_ms(pd.Series([row[2] for row in rows], dtype=object), date_end=is_date)[where]
    dates = bool(spec.temporal) and spec.field(spec.temporal.start).type == "date"
    return LayerIndex(ids[order], left[order], bottom[order], right[order], top[order], start, end, dates)


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
