"""A small bounded pool of psycopg connections per database, shared by the threads of one server process.

Why not a connection per thread: a server runs up to 40 request threads per worker, and N workers on M machines
would hold 40·N·M idle connections against PostgreSQL's default limit of 100. Why not psycopg_pool: one dependency
less for ~50 lines; connections are opened on demand, but for the few a worker's store thread primes at start
(`prime`), and a broken one is dropped.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg

CONNECT_SECONDS = 5
WAIT_SECONDS = 30  # a query waiting this long for a free connection fails with a connection error
POOL_SIZE = 16  # per process and database: queries running at once; 2 cores are saturated long before
# A new backend's first PostGIS query loads PostGIS into it: ~10 ms against 0.4 ms for the next one, and 50-125 ms
# under load, when every connection of every worker is new at once (bench_server's first case with 2 workers: p99
# 0.5-0.6 s, PostgreSQL's own log showing those first statements). So each worker opens and primes PRIMED
# connections ahead (`prime`), about the queries one worker runs at once at 8 connections; more are opened on demand
PRIMED = 8
PRIMER = "SELECT postgis_lib_version()"  # loads the PostGIS library into the backend (the first query then ~0.6 ms)


class PoolExhausted(psycopg.OperationalError):
    """No connection became free in time."""


class ConnectionPool:
    def __init__(self, url: str, size: int = POOL_SIZE):
        self.url = url
        self._free = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if not self._free.acquire(timeout=WAIT_SECONDS):
            raise PoolExhausted(f"no free connection to the store within {WAIT_SECONDS} s")
        try:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                connection = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_SECONDS)
            reusable = False
            try:
                yield connection
                reusable = True
            except psycopg.DataError:
                reusable = True  # a value the column could not read: the connection is fine
                raise
            finally:
                idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if reusable and not connection.closed and not connection.broken and idle:
                    with self._lock:
                        self._idle.append(connection)
                else:
                    with contextlib.suppress(psycopg.Error):
                        connection.close()
        finally:
            self._free.release()

    def prime(self, count: int = PRIMED) -> int:
        """Have `count` connections idle and primed (PRIMER run once on each new one), opening what is missing now,
        off the requests; how many were opened. Takes only free connections and never waits, so a busy pool is left
        as it is; a store that cannot be reached leaves the rest to be opened on demand, as before."""
        taken: list[psycopg.Connection] = []
        opened = 0
        try:
            while len(taken) < count and self._free.acquire(blocking=False):
                with self._lock:
                    connection = self._idle.pop() if self._idle else None
                if connection is not None and (connection.closed or connection.broken):  # lost in an outage
                    with contextlib.suppress(psycopg.Error):
                        connection.close()
                    connection = None
                if connection is None:
                    try:
                        connection = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_SECONDS)
                        connection.execute(PRIMER)
                    except psycopg.Error:
                        self._free.release()
                        break
                    opened += 1
                taken.append(connection)
        finally:
            with self._lock:
                self._idle.extend(taken)
            for _ in taken:
                self._free.release()
        return opened

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(psycopg.Error):
                connection.close()


_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def pool(url: str) -> ConnectionPool:
    """The process's pool for `url` (created empty: no connection is opened here)."""
    with _pools_lock:
        found = _pools.get(url)
        if found is None:
            found = _pools[url] = ConnectionPool(url)
        return found
