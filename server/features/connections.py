"""Read-only connections to published GeoPackages, kept per file version for the next query.

Opening a connection per query costs its open and close and, above all, an empty page cache: on 1M features a
small bbox query took 1.4 ms on a fresh connection and 0.4 ms on a kept one (benchmarks/bench_server.py). A kept
connection is handed to one query at a time and only for the file version (the identity: inode, size, mtime)
it was opened on, so a publication (a rename, a new inode) is read by the very next query, as before.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

from server.published.files import file_identity
from server.published.layer import FileVersion, open_version

IDLE_PER_FILE = 8  # about the number of queries one worker runs at once; more are opened and closed


class ConnectionPool:
    """Idle connections of the current version of each file; older versions' are closed as they come back."""

    def __init__(self, idle_per_file: int = IDLE_PER_FILE):
        self.idle_per_file = idle_per_file
        self._idle: dict[str, tuple[FileVersion, list[sqlite3.Connection]]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self, path: str) -> Iterator[tuple[sqlite3.Connection, FileVersion]]:
        """A connection to the file's current version, and that version; kept for reuse unless the query failed."""
        connection, version = self._take(path)
        try:
            yield connection, version
        except BaseException:
            connection.close()  # a failed statement may leave the connection mid-read: never hand it out again
            raise
        self._give_back(path, connection, version)

    def _take(self, path: str) -> tuple[sqlite3.Connection, FileVersion]:
        current = file_identity(path)
        with self._lock:
            kept = self._idle.get(path)
            if current is not None and kept is not None and kept[0] == current and kept[1]:
                return kept[1].pop(), current
        return open_version(path)  # raises LayerFileError for a missing or unreadable file

    def _give_back(self, path: str, connection: sqlite3.Connection, version: FileVersion) -> None:
        closing = [connection]
        if file_identity(path) == version:  # an older version's connection is never kept
            with self._lock:
                kept = self._idle.get(path)
                if kept is None or kept[0] != version:
                    closing += kept[1] if kept else []  # the file was published again since they were kept
                    kept = self._idle[path] = (version, [])
                if len(kept[1]) < self.idle_per_file:
                    kept[1].append(connection)
                    closing.remove(connection)
        for old in closing:
            old.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for _, connections in idle.values():
            for connection in connections:
                connection.close()


POOL = ConnectionPool()
