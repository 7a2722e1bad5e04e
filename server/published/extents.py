"""What the published GeoPackages hold right now: their identity on disk and their spatial/temporal extents."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from layers.catalog import LayerSpec
from server.provider_sql import quote_identifier

# (layer id, st_mtime_ns, st_ino) per published file, None for a layer not published (yet).
Signature = tuple[tuple[str, int, int] | None, ...]


def published_signature(files: dict[str, Path]) -> Signature:
    """Cheap enough for every request: one stat per layer. The pipeline replaces files by rename, so a new
    publication always changes the inode, even within the mtime resolution."""
    signature = []
    for layer_id, path in files.items():
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            signature.append(None)
            continue
        signature.append((layer_id, stat.st_mtime_ns, stat.st_ino))
    return tuple(signature)


@dataclass(frozen=True)
class LayerExtent:
    bbox: tuple[float, float, float, float] | None  # lon/lat; None for an empty layer
    begin: datetime | None
    end: datetime | None  # None: some feature is open-ended, or the layer has no temporal fields



def _instant(value: str | None) -> datetime | None:
    """A stored date (`YYYY-MM-DD`) or datetime (`…Z`, always UTC) as an aware datetime."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_extent(path: Path, spec: LayerSpec) -> LayerExtent:
    """Spatial extent from gpkg_contents (the pipeline fills it), temporal from MIN/MAX of the temporal fields."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?", (spec.id,)
        ).fetchone()
        bbox = tuple(float(v) for v in row) if row and None not in row else None
        begin = end = None
        if spec.temporal:
            table, start = quote_identifier(spec.id), quote_identifier(spec.temporal.start)
            finish = quote_identifier(spec.temporal.end) if spec.temporal.end else start
            first, last_start, last_end, open_ended = db.execute(
                f"SELECT MIN({start}), MAX({start}), MAX({finish}), COUNT(*) - COUNT({finish}) FROM {table}"
            ).fetchone()
            begin = _instant(first)
            if not open_ended:
                end = max(filter(None, [_instant(last_start), _instant(last_end)]), default=None)
    finally:
        db.close()
    return LayerExtent(bbox=bbox, begin=begin, end=end)  # type: ignore[arg-type]
