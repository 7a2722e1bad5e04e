"""JSON record feeds (outage APIs, open-data portals): records at a path, fields by dotted path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape

from assets.geometry import from_flat_coordinates
from assets.records import RawRecord, SourceError, SourceTable
from assets.sources.json_paths import MISSING, all_paths, as_cell, load_document, value_at
from layers.catalog import GeometrySource, SourceSpec


def read_json_records(path: Path, source: str, spec: SourceSpec) -> SourceTable:
    """Columns are every dotted path some record has (`location.address`, `properties.start`), so a
    path the catalog maps that no record has is named as missing, as a CSV column would be; an
    empty feed has no records to judge by and takes the mapped paths as its columns."""
    document = load_document(path, source, spec.encoding)
    records = _records(document, spec.records, source)
    wanted = spec.used_columns
    columns = all_paths(records) or wanted
    # only the paths the catalog uses are read into the records: the others are named, never used
    return SourceTable(source, columns, _read(records, [c for c in wanted if c in columns], source, spec))


def _records(document: Any, where: str | None, source: str) -> list[Any]:
    if where:
        found = value_at(document, where) if isinstance(document, dict) else MISSING
        if found is MISSING:
            keys = sorted(document) if isinstance(document, dict) else []
            raise SourceError(source, f"no records at {where!r} (the document's top-level keys: {keys[:20]})")
    else:
        found = document
    if not isinstance(found, list):
        hint = f" at {where!r}" if where else ": say where the records are with `records:` (a dotted path)"
        raise SourceError(source, f"expected an array of records{hint}, found a JSON {type(found).__name__}")
    return found


def _read(records: list[Any], columns: list[str], source: str, spec: SourceSpec) -> Iterator[RawRecord]:
    how = spec.geometry
    for index, record in enumerate(records, start=1):
        number = f"record {index}"
        if not isinstance(record, dict):
            yield RawRecord(source, number, {"_raw": str(record)[:200]}, error="a record is not a JSON object")
            continue
        values = {column: as_cell(value_at(record, column), spec.join_lists.get(column)) for column in columns}
        try:
            geometry = _geometry(record, how)
        except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError) as exc:
            field = (how.geojson or how.coordinates) if how else "geometry"
            yield RawRecord(source, number, values, error=f"unreadable geometry: {exc}", error_field=field)
            continue
        yield RawRecord(source, number, values, geometry=geometry)


def _geometry(record: dict, how: GeometrySource | None):
    """The geometry the record itself carries as an object or array; WKT and x/y columns are read
    later, as for every other format."""
    if how is None:
        return None
    if how.geojson:
        value = value_at(record, how.geojson)
        if value is MISSING or value is None or value == "":
            return None
        return shape(json.loads(value) if isinstance(value, str) else value)
    if how.coordinates:
        value = value_at(record, how.coordinates)
        if value is MISSING or value is None or value == []:
            return None
        return from_flat_coordinates(value, how.kind or "point", how.coordinate_order == "lat_lon")
    return None
