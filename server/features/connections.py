"""Read-only connections to published GeoPackages, kept per file version for the next query.

Opening a connection per query costs its open and close and, above all, an empty page cache: on 1M features a
small bbox query took 1.4 ms on a fresh connection and 0.4 ms on a kept one (benchmarks/bench_server.py). A kept
connection is handed to one query at a time and only for the file version (the identity: inode, size, mtime)
it was opened on, so a publication (a rename, a new inode) is read by the very next query, as before.
"""

from __future__ import annotations

import sqlite3
import threading

from server.published.files import file_identity
from server.published.layer import FileVersion, open_version

IDLE_PER_FILE = 8  # about the number of queries one worker runs at once; more are opened and closed


class ConnectionPool:
    """Idle connections of the current version of each file; older versions' are closed as they come back."""

    def __init__(self, idle_per_file: int = IDLE_PER_FILE):
        self.idle_per_file = idle_per_file
        self._idle: dict[str, tuple[FileVersion, list[sqlite3.Connection]]] = {}
        self._lock = threading.Lock()

    def connection(self, path: str, current: FileVersion | None = None) -> Lease:
        """A connection to the file's current version, and that version (`with pool.connection(path) as (connection,
        version)`); kept for reuse unless the query failed. `current`: the version a caller found by its own stat a
        moment ago (server.features.provider.InstantPage), taken as the current one without another; a connection
        opened anew is of the file then, which may be newer."""
        return Lease(self, path, current)

    def _take(self, path: str, current: FileVersion | None = None) -> tuple[sqlite3.Connection, FileVersion]:
        if current is None:
            current = file_identity(path)
        closing: list[sqlite3.Connection] = []
        with self._lock:
            kept = self._idle.get(path)
            if kept is not None and kept[0] != current:  # published again since: the version before is not kept
                closing = kept[1]
                del self._idle[path]
            elif kept is not None and kept[1]:
                return kept[1].pop(), kept[0]
        for old in closing:
            old.close()
        return open_version(path)  # raises LayerFileError for a missing or unreadable file

    def _give_back(self, path: str, connection: sqlite3.Connection, version: FileVersion) -> None:
        """Kept among the idle ones of its version while that is the newest the pool has seen, without a stat: a
        connection of a version replaced meanwhile is closed by the next `_take` that sees the new one (as were the
        idle ones of a version replaced between queries)."""
        with self._lock:
            kept = self._idle.get(path)
            if kept is None:
                kept = self._idle[path] = (version, [])
            if kept[0] == version and len(kept[1]) < self.idle_per_file:
                kept[1].append(connection)
                return
        connection.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for _, connections in idle.values():
            for connection in connections:
                connection.close()


class Lease:
    """ConnectionPool.connection's context: a class, not a generator, since a small bbox asks one per request (a
    generator's context manager cost ~1 µs more to enter and leave)."""

    __slots__ = ("pool", "path", "current", "connection", "version")

    def __init__(self, pool: ConnectionPool, path: str, current: FileVersion | None):
        self.pool, self.path, self.current = pool, path, current

    def __enter__(self) -> tuple[sqlite3.Connection, FileVersion]:
        self.connection, self.version = self.pool._take(self.path, self.current)
        return self.connection, self.version

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self.connection.close()  # a failed statement may leave the connection mid-read: never hand it out again
            return
        self.pool._give_back(self.path, self.connection, self.version)


POOL = ConnectionPool()
