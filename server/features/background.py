"""Reads a worker runs in threads of their own after a publication, one per key at a time: the point indexes
(server.features.point_reads), the GeoPackage time ranks (time_ranks) and the PostGIS sorted times (pg_windows).
Requests never wait for them unless they choose to (`join`); tests wait for all of them (`wait_for_reads`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable


class BackgroundReads:
    def __init__(self, name: str):
        self._name = name  # the threads' name (py-spy, a debugger)
        self._lock = threading.Lock()
        self._running: dict[Hashable, threading.Thread] = {}

    def start(self, key: Hashable, read: Callable[[], None]) -> bool:
        """Run `read` in a thread of its own unless a read of `key` runs already (False then). `read` handles its
        own errors: a read that fails leaves its callers in SQL, and says so in one line."""
        with self._lock:
            if key in self._running:
                return False
            thread = self._running[key] = threading.Thread(
                target=self._run, args=(key, read), name=self._name, daemon=True
            )
        thread.start()
        return True

    def _run(self, key: Hashable, read: Callable[[], None]) -> None:
        try:
            read()
        finally:
            with self._lock:
                self._running.pop(key, None)

    def running(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._running

    def join(self, key: Hashable) -> None:
        """Wait for the read of `key`, if one runs."""
        with self._lock:
            thread = self._running.get(key)
        if thread is not None:
            thread.join()

    def wait_for_reads(self, timeout: float) -> bool:
        """Wait until no read runs (at most `timeout` seconds for each running now); True when none is left."""
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout)
        with self._lock:
            return not self._running
