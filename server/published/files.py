"""Which version of a published file is on disk, and how the server opens one (docs/contracts.md).

The pipeline replaces a file by rename, so a new publication always has a new inode: anything keyed by a
file's identity (metadata, counts, tiles, the served configuration) can never outlive the data it came from.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

# (path, device, inode, st_mtime_ns, size) of a published file; None while the layer is not published.
FileIdentity = tuple[str, int, int, int, int] | None
Signature = tuple[FileIdentity, ...]
Bbox = tuple[float, float, float, float]


def file_identity(path: str | Path) -> FileIdentity:
    """One stat: cheap enough for every request."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (str(path), stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def published_signature(files: dict[str, Path]) -> Signature:
    """The identities of a set of published files: one stat per file."""
    return tuple(file_identity(path) for path in files.values())


def identities(signature: Signature) -> dict[str, FileIdentity]:
    """A signature's identities by path; a file not published is not in it."""
    return {identity[0]: identity for identity in signature if identity is not None}


def connect(path: str | Path, *, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection. `immutable` lets SQLite skip locking: a published file is replaced by rename,
    never written in place, so a reader that pinned its identity may promise that."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def read_bounds(connection: sqlite3.Connection, table: str) -> Bbox | None:
    """The layer's lon/lat box as the pipeline wrote it into gpkg_contents; None when it is not filled."""
    row = connection.execute(
        "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?", (table,)
    ).fetchone()
    return tuple(float(v) for v in row) if row and None not in row else None  # type: ignore[return-value]
