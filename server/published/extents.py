"""The spatial and temporal extents of a published layer, for collections, TileJSON and the web map."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from layers.catalog import LayerSpec
from server.published import files
from server.published.sql import quote_identifier


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
    """The extent of a catalog layer's published file."""
    temporal = spec.temporal
    return read_table_extent(path, spec.id, temporal.start if temporal else None, temporal.end if temporal else None)


def read_table_extent(path: Path, table: str, start: str | None = None, end: str | None = None) -> LayerExtent:
    """Spatial extent from gpkg_contents (the pipeline fills it), temporal from MIN/MAX of the temporal fields:
    from the earliest start to the latest start or end, open (None) while some feature has no end."""
    db = files.connect(path)
    try:
        bbox = files.read_bounds(db, table)
        begin = last = None
        if start:
            source, first_field = quote_identifier(table), quote_identifier(start)
            finish = quote_identifier(end) if end else first_field
            bounds = f"MIN({first_field}), MAX({first_field}), MAX({finish}), COUNT(*) - COUNT({finish})"
            first, last_start, last_end, open_ended = db.execute(f"SELECT {bounds} FROM {source}").fetchone()
            begin = _instant(first)
            if not open_ended:
                last = max(filter(None, [_instant(last_start), _instant(last_end)]), default=None)
    finally:
        db.close()
    return LayerExtent(bbox=bbox, begin=begin, end=last)
