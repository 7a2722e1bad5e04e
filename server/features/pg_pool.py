"""A small bounded pool of psycopg connections per database, shared by the threads of one server process.

Why not a connection per thread: a server runs up to 40 request threads per worker, and N workers on M machines
would hold 40·N·M idle connections against PostgreSQL's default limit of 100. Why not psycopg_pool: one dependency
less for ~50 lines; connections are opened on demand, but for the few a worker's store thread primes at start
(`prime`), and a broken one is dropped. When the database runs on this machine and the workers can keep every core
busy, each worker runs one statement at a time (`running_at_once`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict

CONNECT_SECONDS = 5
WAIT_SECONDS = 30  # a query waiting this long for a free connection fails with a connection error
POOL_SIZE = 16  # per process and database: queries running at once; 2 cores are saturated long before
# A new backend's first PostGIS query loads PostGIS into it: ~10 ms against 0.4 ms for the next one, and 50-125 ms
# under load, when every connection of every worker is new at once (bench_server's first case with 2 workers: p99
# 0.5-0.6 s, PostgreSQL's own log showing those first statements). So each worker opens and primes PRIMED
# connections ahead (`prime`), about the queries one worker runs at once at 8 connections; more are opened on demand
PRIMED = 8
PRIMER = "SELECT postgis_lib_version()"  # loads the PostGIS library into the backend (the first query then ~0.6 ms)
# How long a query waits for its turn when a worker runs one statement at a time (`running_at_once`); then it runs
# anyway, so a slow statement (a long filter, a large page) holds the worker's others up this long at most.
TURN_WAIT_SECONDS = 0.05
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class PoolExhausted(psycopg.OperationalError):
    """No connection became free in time."""


def on_this_machine(url: str) -> bool:
    """Whether `url` reaches a database on this machine: a Unix socket (a path, or no host at all), localhost or a
    loopback address; any other name or address counts as another machine, and so does a URL psycopg cannot read
    (connecting then says why)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return False
    hosts = params.get("hostaddr") or params.get("host") or os.environ.get("PGHOST") or ""
    return all(
        not host or host.startswith("/") or host in LOCAL_HOSTS or host.startswith("127.") for host in hosts.split(",")
    )


def running_at_once(url: str, workers: int, cores: int) -> int | None:
    """Statements one worker runs on `url` at once before the next waits its turn (up to TURN_WAIT_SECONDS), or None
    for no limit but the pool's size: 1 when the database runs on this machine and the workers alone can keep every
    core busy, else None.

    Why: each of PostgreSQL's backends makes itself a session leader, and Linux's autogroup scheduling (on by default
    for processes in no CPU cgroup of their own, e.g. started from a shell) gives every session the same share of the
    cores as the whole server, all its workers and threads together: with several backends running at once, the
    workers starve in bursts. Small bbox, 1M points, PostGIS on this machine, 2 workers on 2 cores, 8 connections,
    fresh servers alternating (14 runs without the limit, 12 with it): p95 10.3-46.2 ms, p99 17-459 ms, max
    75-1,108 ms, 1,223-1,584 req/s without; p95 5.7-12.4 ms, p99 7.6-15.5 ms, max 19-43 ms, 1,386-1,646 req/s with
    it. Without the limit but with autogroup off: p99 10-20 ms (and the limit then costs nothing). With one worker on
    2 cores a limit costs instead (1 or 2 at once: 846-1,014 req/s, p95 14-21 ms, against 1,108-1,310 req/s, p95
    12-15 ms without), so it applies only when the workers can fill the cores."""
    return 1 if workers >= cores and on_this_machine(url) else None


class ConnectionPool:
    def __init__(
        self, url: str, size: int = POOL_SIZE, running: int | None = None, turn_wait: float = TURN_WAIT_SECONDS
    ):
        self.url = url
        self._free = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self.turn_wait = turn_wait
        self._turns: threading.Semaphore | None = None
        self.run_at_once(running)

    def run_at_once(self, running: int | None) -> None:
        """Run at most `running` statements at once (None: as many as the pool has connections); a query waits for
        its turn up to `turn_wait` seconds, then runs anyway."""
        self._turns = threading.Semaphore(running) if running else None

    @property
    def one_at_a_time(self) -> bool:
        """Whether statements take turns: the database shares this machine's cores, which the workers fill."""
        return self._turns is not None

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        turns = self._turns  # as it is now: run_at_once may change it meanwhile
        turn = turns is not None and turns.acquire(timeout=self.turn_wait)
        try:
            with self._connection() as connection:
                yield connection
        finally:
            if turn:
                turns.release()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
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
