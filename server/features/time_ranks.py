"""Exact counts of `column > value` / `column < value` on an indexed text column, without counting half the table.

numberMatched of a `datetime` window is all − (started after it) − (ended before it) (server.features.query's
window_counts); each of those is an index range count that walks every matching entry: on 1M features a random
7-day window cost 20–50 ms per request. Here each file version's column is read once in index order and every
SAMPLE-th value is kept with the exact count of values up to it; a count is then that remembered count plus an
index range count between the nearest sample and the value: at most ~2 × SAMPLE entries, whatever the table size.
Values compare as SQLite compares TEXT (BINARY: code point order, which Python's str order is); a column holding
anything else than text and NULL is not ranked (None: the caller counts with SQL as before). Reading a column takes
~1 s on 1M features: given the file's path, a thread reads it in the background on a connection of its own, and until
it is done the count is None (the caller counts in SQL), so no request waits for the read.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from server.features.background import BackgroundReads
from server.features.connections import POOL
from server.memory import LARGE_BUILDS
from server.published.layer import LayerFileError, LruCache
from server.published.sql import quote_identifier
from server.published.stored_arrays import derived

LOGGER = logging.getLogger(__name__)
SAMPLE = 1024


@dataclass(frozen=True)
class Ranks:
    """samples[k]: a value of the column, in order; at_most[k]: how many non-NULL values are <= samples[k]."""

    samples: list[str]
    at_most: list[int]
    total: int  # non-NULL values


def read_ranks(connection: sqlite3.Connection, table: str, column: str, sample: int = SAMPLE) -> Ranks | None:
    name, source = quote_identifier(column), quote_identifier(table)
    rows = connection.execute(f"SELECT {name} FROM {source} WHERE {name} IS NOT NULL ORDER BY {name}")
    samples: list[str] = []
    at_most: list[int] = []
    pending = None
    seen = 0
    for (value,) in rows:
        if not isinstance(value, str):
            return None  # numbers sort before text in SQLite: not ranked here
        if pending is not None and value != pending:
            at_most.append(seen)  # every value so far is <= pending
            pending = None
        seen += 1
        if pending is None and seen % sample == 0 and (not samples or value != samples[-1]):
            samples.append(value)
            pending = value
    if pending is not None:
        at_most.append(seen)
    return Ranks(samples, at_most, seen)


def stored_ranks(
    path: str, identity: Hashable, table: str, column: str, read: Callable[[], Ranks | None]
) -> Ranks | None:
    """The ranks `read` makes of `column` in the file version `identity` of `path`, read by the first worker that asks
    and kept on disk for the others and the next start (server.published.stored_arrays): ~1 s of CPU on 1M features
    that every worker spent at every start, beside the requests of a server just restarted."""

    def built() -> tuple[dict, dict] | None:
        ranks = read()
        return None if ranks is None else ({}, dataclasses.asdict(ranks))

    stored = derived("ranks", (path, table, column), (identity, SAMPLE), built)
    return None if stored is None else Ranks(**stored[1])


class TimeRanks:
    """Ranks per (file version, table, column), built once by the first query that needs them."""

    def __init__(self, versions: int = 16):
        self._ranks = LruCache(versions)
        self._lock = threading.Lock()
        self._reads = BackgroundReads("time-ranks")

    def _of(
        self, connection: sqlite3.Connection, version: Hashable, table: str, column: str, path: str | None
    ) -> Ranks | None:
        key = (version, table, column)
        found = self._ranks.get(key)
        if found is None:
            if path is not None:
                self._read_later(key, path)
                return None
            with self._lock:  # one build per key, the others wait for it
                found = self._ranks.get(key)
                if found is None:
                    found = read_ranks(connection, table, column) or False
                    self._ranks.put(key, found)
        return found or None

    def read_ahead(self, version: Hashable, table: str, column: str, path: str) -> None:
        """Start reading the ranks of `column` in `version` (of the file at `path`) in the background, unless they
        are held or read now: called after a publication, so that its first windows need not count in SQL."""
        key = (version, table, column)
        if self._ranks.get(key) is None:
            self._read_later(key, path)

    def _read_later(self, key: tuple, path: str) -> None:
        self._reads.start(key, lambda: self._read(key, path))

    def _read(self, key: tuple, path: str) -> None:
        version, table, column = key
        try:
            # a few thousand texts kept for long: not made among a tile box index build's rows (server.memory)
            with LARGE_BUILDS.turn(), POOL.connection(path) as (connection, current):
                if current == version[0]:  # else the file was published again: its requests ask for its ranks
                    ranks = stored_ranks(path, current, table, column, lambda: read_ranks(connection, table, column))
                    self._ranks.put(key, ranks or False)
        except (LayerFileError, sqlite3.DatabaseError) as error:  # counted in SQL meanwhile; the next count asks again
            LOGGER.warning("%s: the ranks of %s could not be read: %s", table, column, error)

    def wait_for_reads(self, timeout: float) -> bool:
        """Wait until no ranks are being read (tests); True when none is left."""
        return self._reads.wait_for_reads(timeout)

    def count(
        self,
        connection: sqlite3.Connection,
        version: Hashable,
        table: str,
        column: str,
        operator: str,
        value: str,
        path: str | None = None,
    ) -> int | None:
        """count(*) WHERE column `operator` value, for operator '>' or '<'; None when the column is not ranked, or
        while its ranks are read in the background (given the `path` of the file `version` is the (identity, table)
        of; without it the ranks are read here)."""
        ranks = self._of(connection, version, table, column, path)
        if ranks is None or not isinstance(value, str):
            return None
        name, source = quote_identifier(column), quote_identifier(table)
        if operator == ">":  # all − (<= value)
            k = bisect.bisect_right(ranks.samples, value) - 1
            return ranks.total - _up_to(connection, ranks, k, f"{name} <= ?", name, source, value)
        if operator == "<":
            k = bisect.bisect_left(ranks.samples, value) - 1
            return _up_to(connection, ranks, k, f"{name} < ?", name, source, value)
        raise ValueError(f"operator {operator!r}")


def _up_to(connection: sqlite3.Connection, ranks: Ranks, k: int, test: str, name: str, source: str, value: str) -> int:
    """Values passing `test` (<= or < value): the remembered count up to samples[k] (below `value`), plus the
    ones between samples[k] and `value`, counted on the index."""
    if k < 0:
        return connection.execute(f"SELECT count(*) FROM {source} WHERE {test}", (value,)).fetchone()[0]
    between = connection.execute(
        f"SELECT count(*) FROM {source} WHERE {name} > ? AND {test}", (ranks.samples[k], value)
    ).fetchone()[0]
    return ranks.at_most[k] + between


TIME_RANKS = TimeRanks()
