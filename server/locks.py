"""A lock between the processes of one machine: the workers (and servers) that share a cache folder take it to do a
piece of work once (a local copy of a PostGIS layer, a box index, a tile store's preparation) instead of once each."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def machine_lock(path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive `flock` on `path` (created if missing), released when the block ends or its holder dies. Yields
    True while held; False when `wait` is off and another process holds it, or when the lock cannot be taken at all
    (the caller then decides whether to do the work unlocked). A missing or unwritable folder raises OSError."""
    with open(path, "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True  # closing the handle releases the lock
