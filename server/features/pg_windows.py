"""numberMatched of a `datetime=` window alone, from the layer's start and end times held sorted per version.

PostgreSQL counts a window by visiting every row started before its end (a 7-day window over 1M repairs: 0.4 s),
and B-tree counts of "started after" and "ended before" are no cheaper there (0.25 s index-only). Held sorted in
numpy (16 bytes a feature, read once per published version), a window is two binary searches:
active = #(start <= last) - #(end < first), exact when no feature lacks a start or ends before it starts (checked
when the arrays are read; otherwise None and the caller counts in SQL). Times are compared at the contract's
millisecond (the GeoPackage's text), dates as days. Reading them takes 1-3 s on 1M features: a thread does it in the
background while the request that started it counts its window in SQL (None here); the windows asked during the read
wait for it rather than count in SQL too (0.4 s each: eight at once starve the read, measured at 14 req/s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import psycopg
from psycopg import sql

from server.features import pg_pool
from server.features.background import BackgroundReads
from server.features.query import TimeWindow
from server.published.layer import LayerMeta, LruCache

SCHEMA = "geoportal"

LOGGER = logging.getLogger(__name__)
REGISTRY_VERSION = f"SELECT version FROM {SCHEMA}.publications WHERE layer_id = %s AND slot = 'current'"

_held = LruCache(16)  # (url, layer, version, start field, end field) -> SortedTimes | False (not applicable)
_reads = BackgroundReads("postgis-times")


@dataclass(frozen=True)
class SortedTimes:
    starts: np.ndarray  # int64, sorted: every feature has a start
    ends: np.ndarray | None  # int64, sorted, features with an end only; None for instants


def _as_number(sql_column: sql.Composable, kind: str) -> sql.Composable:
    if kind == "date":
        return sql.SQL("({} - DATE '1970-01-01')::bigint").format(sql_column)
    return sql.SQL("floor(extract(epoch FROM {}) * 1000)::bigint").format(sql_column)


def _bound(text: str | None, kind: str) -> int | None:
    if text is None:
        return None
    if kind == "date":
        return (date.fromisoformat(text) - date(1970, 1, 1)).days
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000) if moment.microsecond % 1000 == 0 else None


def _read(connection: psycopg.Connection, meta: LayerMeta, window: TimeWindow) -> SortedTimes | None:
    table = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(meta.table))
    start = sql.Identifier(window.start_field)
    start_number = _as_number(start, meta.columns[window.start_field])
    sorted_values = (
        "(SELECT coalesce(array_agg(v ORDER BY v), '{{}}') FROM (SELECT {} AS v FROM {} WHERE {} IS NOT NULL) AS x)"
    )
    if window.end_field:
        end = sql.Identifier(window.end_field)
        end_number = _as_number(end, meta.columns[window.end_field])
        bad = sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {} IS NULL OR {} < {})").format(table, start, end, start)
        ends = sql.SQL(sorted_values).format(end_number, table, end)
    else:
        bad = sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)").format(table, start)
        ends = sql.SQL("NULL")
    statement = sql.SQL("SELECT {}, {}, {}").format(
        bad, sql.SQL(sorted_values).format(start_number, table, start), ends
    )
    broken, starts, finishes = connection.execute(statement).fetchone()
    if broken:
        return None
    return SortedTimes(
        np.asarray(starts, dtype=np.int64), None if finishes is None else np.asarray(finishes, dtype=np.int64)
    )


def _kind(meta: LayerMeta, start_field: str, end_field: str | None) -> str | None:
    """'date' or 'datetime' when both fields are of that type (the sorted times can answer), else None."""
    kinds = {meta.columns.get(start_field), meta.columns.get(end_field or start_field)}
    return kinds.pop() if len(kinds) == 1 and kinds <= {"date", "datetime"} else None


def read_ahead(url: str, version: int, meta: LayerMeta, start_field: str, end_field: str | None) -> None:
    """Start reading `version`'s sorted times in the background unless they are held or read now: called after a
    publication, so that its first windows need not wait for the read (or count in SQL)."""
    if _kind(meta, start_field, end_field) is None:
        return
    key = (url, meta.table, version, start_field, end_field)
    if _held.get(key) is None:
        _read_later(key, url, version, meta, TimeWindow(start_field, end_field, None, None))


def window_count(
    connection: psycopg.Connection, url: str, version: int, meta: LayerMeta, window: TimeWindow
) -> int | None:
    """The window's numberMatched, or None when the sorted times cannot answer it exactly (the caller counts)."""
    kind = _kind(meta, window.start_field, window.end_field)
    if kind is None:
        return None
    first, last = _bound(window.first, kind), _bound(window.last, kind)
    if (window.first is not None and first is None) or (window.last is not None and last is None):
        return None
    if first is not None and last is not None and first > last:
        return None  # an empty window: exact in SQL, not by subtraction
    key = (url, meta.table, version, window.start_field, window.end_field)
    held = _held.get(key)
    if held is None:
        if _read_later(key, url, version, meta, window):
            return None
        _reads.join(key)
        held = _held.get(key)
    if not held:  # not applicable, or the read failed (logged): SQL counts
        return None
    started = len(held.starts) if last is None else int(np.searchsorted(held.starts, last, side="right"))
    if held.ends is None:  # instants: first <= start <= last
        return started - (0 if first is None else int(np.searchsorted(held.starts, first, side="left")))
    ended = 0 if first is None else int(np.searchsorted(held.ends, first, side="left"))
    return started - ended


def _read_later(key: tuple, url: str, version: int, meta: LayerMeta, window: TimeWindow) -> bool:
    """Start reading `key`'s sorted times in the background; False when a read of them is under way already."""
    return _reads.start(key, lambda: _read_version(key, url, version, meta, window))


def _read_version(key: tuple, url: str, version: int, meta: LayerMeta, window: TimeWindow) -> None:
    """The sorted times of `version`, read in one snapshot with the registry row that says it is still current."""
    try:
        # a connection of its own, not the pool's: requests waiting for this read may hold every pooled one
        with psycopg.connect(url, connect_timeout=pg_pool.CONNECT_SECONDS) as connection:
            connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            current = connection.execute(REGISTRY_VERSION, (meta.table,)).fetchone()
            if current is not None and current[0] == version:  # else a newer one is served: its requests ask
                _held.put(key, _read(connection, meta, window) or False)
    except psycopg.Error as error:  # counted in SQL meanwhile; the next window asks again
        LOGGER.warning("%s: the sorted times of version %s could not be read: %s", meta.table, version, error)


def wait_for_reads(timeout: float) -> bool:
    """Wait until no sorted times are being read (tests); True when none is left."""
    return _reads.wait_for_reads(timeout)
