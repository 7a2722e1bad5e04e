"""The rows of a point index's pages, kept per worker: the features a map asks for again are not read again.

A page from a point index (server.features.point_index) is read by fid: `SELECT … WHERE fid IN (…)`. Map clients ask
the same places over and over, and the lowest fids of overlapping boxes are the same features, so most rows of a page
were read by a page shortly before. bench_server's 36,000 random 0.01-degree boxes over 1M points ask ~26,000
distinct rows in 360,000: 77 % of them are found with 17,000 rows kept, 92 % with 23,000 (the default 24 MB of such
rows), 93 % (all but the first read of each) with 26,000. Reading a page's 10 rows of the 1M-row file took 25 % of a
loaded worker's ~260 µs request (py-spy; ~25 µs alone, the rest SQLite's page reads and cache misses under load): 2 %
with the rows kept.

A row is kept under its statement (the SQL of one fid: columns, expressions and source, so one layer's public and
staff fields never share a row), the statement's leading parameters, and the version's metadata object (a new version
has new metadata: its rows are never the old version's). Only what the statement returned is kept, so a page
assembled from kept and new rows is the page the statement would return. The budget
(`GEOPORTAL_SERVER_ROW_CACHE_MB`) counts what each row takes in memory (its values, its tuple, its key and entry:
~1,060 bytes for a row of SQLite's JSON of 17 text fields, ~1,860 for the same row the Python way); the rows asked
longest ago give way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from sys import getsizeof
from typing import Any

# Bytes a kept row costs beyond its values (sys.getsizeof each) and its tuple's 8 bytes a value: the tuple's header,
# the key, the entry and the dict's share. tracemalloc, 20,000 rows kept: 235 + 40.
ROW_OVERHEAD = 275


class RowCache:
    """Rows by (owner, statement key, fid), within a budget in bytes. Lookups take no lock (one dict call each under
    the GIL, as server.published.layer.LruCache's); puts do."""

    def __init__(self, budget_bytes: int | None = None):
        self._budget = budget_bytes
        self._rows: OrderedDict[tuple, tuple[object, tuple, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def budget(self) -> int:
        if self._budget is None:  # the server's setting, read on first use (tests and the CLI set it first)
            from server.settings import get_server_settings

            self._budget = get_server_settings().row_cache_mb * 2**20
        return self._budget

    def kept(self, owner: object, statement: Hashable, fids: Sequence[int]) -> tuple[dict[int, tuple], list[int]]:
        """The rows of `fids` kept for `owner`'s `statement`, by fid, and the fids not kept (in their order)."""
        found: dict[int, tuple] = {}
        missing: list[int] = []
        if not self.budget:
            return found, list(fids)
        rows, owner_id = self._rows, id(owner)
        for fid in fids:
            key = (owner_id, statement, fid)
            entry = rows.get(key)
            # the owner is held by its entry, so its id is not reused while the entry lives; an object that got a
            # dead owner's id finds an entry that is not its own
            if entry is not None and entry[0] is owner:
                found[fid] = entry[1]
                try:  # noqa: SIM105 - suppress() would make an instance per row, and this is per request
                    rows.move_to_end(key)
                except KeyError:  # dropped by another thread meanwhile: its row is still the one read
                    pass
            else:
                missing.append(fid)
        return found, missing

    def keep(self, owner: object, statement: Hashable, rows: Sequence[tuple]) -> None:
        """Keep `rows` (the fid first in each) as read by `owner`'s `statement`."""
        budget = self.budget
        if not budget:
            return
        owner_id = id(owner)
        with self._lock:
            kept = self._rows
            for row in rows:
                size = row_size(row)
                key = (owner_id, statement, row[0])
                previous = kept.pop(key, None)
                if previous is not None:
                    self._size -= previous[2]
                kept[key] = (owner, row, size)
                self._size += size
            while self._size > budget and kept:
                self._size -= kept.popitem(last=False)[1][2]

    @property
    def size(self) -> int:
        """The bytes counted for the rows kept."""
        return self._size

    def __len__(self) -> int:
        return len(self._rows)


ROWS = RowCache()


def row_size(row: tuple) -> int:
    """The bytes a kept row is counted for (ROW_OVERHEAD)."""
    return ROW_OVERHEAD + 8 * len(row) + sum(map(getsizeof, row))


def assembled(fids: Sequence[int], kept: dict[int, tuple], read: Sequence[tuple]) -> list[Any]:
    """The rows of `fids` in their order from the kept ones and those just read (a fid in neither: no row, as the
    statement returns none for it)."""
    if not read:
        return [kept[fid] for fid in fids if fid in kept]
    by_fid = dict(kept)
    for row in read:
        by_fid[row[0]] = row
    return [by_fid[fid] for fid in fids if fid in by_fid]
