"""A quiet machine before each measured load, for every benchmark that serves.

A server that fell behind (stock pygeoapi at 64 connections: p95 of seconds) goes on with the requests wrk gave up
on, it and its PostgreSQL backends; a freshly loaded PostGIS table is vacuumed and analysed by PostgreSQL's own
workers. Either lands on the next measurement unless the load waits. The machine is judged as a whole from
/proc/stat: PostgreSQL's backends and autovacuum workers are not children of the server.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DRAIN_SECONDS = 60
DRAIN_BUSY_CORES = 0.2  # the machine counts as quiet below this much CPU in use over DRAIN_INTERVAL ...
DRAIN_INTERVAL = 1.0
DRAIN_QUIET = 2  # ... this many intervals in a row


def busy_jiffies() -> tuple[int, int]:
    """(busy, all) CPU time of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many cores the machine kept busy between two busy_jiffies()."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * (os.cpu_count() or 1) if total > 0 else 0.0


def drain(seconds: float = DRAIN_SECONDS) -> None:
    """Wait until the machine has been nearly idle for DRAIN_QUIET intervals in a row, bounded by `seconds`: on a
    machine busy with other work, measure anyway (and say so)."""
    deadline = time.monotonic() + seconds
    quiet = 0
    while time.monotonic() < deadline:
        before = busy_jiffies()
        time.sleep(DRAIN_INTERVAL)
        quiet = quiet + 1 if busy_cores(before, busy_jiffies()) < DRAIN_BUSY_CORES else 0
        if quiet >= DRAIN_QUIET:
            return
    print(f"  machine still busy after {seconds:.0f} s; measuring anyway", flush=True)
