"""Layer downloads: the published GeoPackage for staff, a copy without the internal fields for everyone else."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import BinaryIO

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.errors import NotFound
from server.ogcapi.config import GPKG_MEDIA_TYPE
from server.published.sql import quote_identifier

CHUNK = 1 << 16
_building = threading.Lock()


def copy_without(source: Path, table: str, hidden: list[str], cache_dir: Path) -> Path:
    """`source` without the `hidden` fields, made once per published version: the published file holds
    every field, and handing it out whole would give away what the API hides from the caller."""
    if not hidden:
        return source
    stat = source.stat()
    family = f"{table}.{hashlib.sha256(str(source).encode()).hexdigest()[:8]}.cut"  # servers may share cache_dir
    version = hashlib.sha256(repr((stat.st_ino, stat.st_mtime_ns, stat.st_size, hidden)).encode())
    target = cache_dir / f"{family}.{version.hexdigest()[:16]}.gpkg"
    with _building:
        if target.exists():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache_dir / f".{table}.{uuid.uuid4().hex}.part"
        try:
            shutil.copyfile(source, partial)
            _drop_columns(partial, table, hidden)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        # Keep the previous version too: a request that chose it just before this publication may not
        # have opened it yet. Older ones go (downloads in progress keep their open handles).
        versions = sorted(cache_dir.glob(f"{family}.*.gpkg"), key=_age, reverse=True)
        for stale in versions[2:]:
            stale.unlink(missing_ok=True)
    return target


def _age(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _drop_columns(path: Path, table: str, columns: list[str]) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA secure_delete = ON")  # overwrite the freed cells, not just unlink them
        present = {row[1] for row in db.execute(f"PRAGMA table_info({quote_identifier(table)})")}
        for name in columns:
            if name in present:
                db.execute(f"ALTER TABLE {quote_identifier(table)} DROP COLUMN {quote_identifier(name)}")
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'gpkg_data_columns'").fetchone():
            db.executemany(
                "DELETE FROM gpkg_data_columns WHERE table_name = ? AND column_name = ?", [(table, c) for c in columns]
            )
        db.commit()
        db.execute("VACUUM")
    finally:
        db.close()


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def file_response(request: Request, path: Path, filename: str) -> Response:
    """Opened before anything is sent: a publication replacing the file mid-download does not mix two
    files, the open handle keeps reading the one whose length was announced."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by _chunks once streamed
    except FileNotFoundError:
        raise NotFound(f"{filename} is not published") from None
    stat = os.fstat(handle.fileno())
    etag = '"' + hashlib.sha256(f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Last-Modified": formatdate(stat.st_mtime, usegmt=True), "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        handle.close()
        return Response(status_code=304, headers=headers)
    headers |= {"Content-Length": str(stat.st_size), "Content-Disposition": f'attachment; filename="{filename}"'}
    if request.method == "HEAD":
        handle.close()
        return Response(media_type=GPKG_MEDIA_TYPE, headers=headers)
    return StreamingResponse(_chunks(handle), media_type=GPKG_MEDIA_TYPE, headers=headers)
