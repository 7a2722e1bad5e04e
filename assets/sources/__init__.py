"""Open a catalog source in its declared format and stream its records."""

from __future__ import annotations

from pathlib import Path

from assets.records import SourceError, SourceTable
from assets.sources.json_records import read_json_records
from assets.sources.notices import read_notices
from assets.sources.tabular import read_csv, read_xlsx
from assets.sources.vector import read_vector
from assets.sources.wzdx import read_wzdx
from layers.catalog import SourceSpec


def open_source(spec: SourceSpec, path: Path, label: str) -> SourceTable:
    """`label` is how messages name the file (the catalog-relative path, not a machine path)."""
    if not path.exists():
        raise SourceError(label, f"file not found (looked for {path})")
    expected = set(spec.columns)
    match spec.format:
        case "csv":
            return read_csv(path, label, spec.encoding, spec.delimiter, expected)
        case "xlsx":
            return read_xlsx(path, label, spec.sheet)
        case "shapefile":
            return read_vector(path, label, spec.encoding, "ESRI Shapefile")
        case "geojson":
            return read_vector(path, label, spec.encoding, "GeoJSON")
        case "geopackage":
            return read_vector(path, label, spec.encoding, "GPKG", spec.layer)
        case "json":
            return read_json_records(path, label, spec)
        case "wzdx":
            return read_wzdx(path, label, spec.join_lists, set(spec.used_columns))
        case "notices":
            address = spec.geometry.address if spec.geometry and spec.geometry.address else None
            if address is None:
                raise SourceError(label, "a notices source needs geometry.address: the address-list column")
            return read_notices(path, label, spec.encoding, spec.delimiter, expected, address)
    raise SourceError(label, f"unsupported format {spec.format!r}")


__all__ = ["SourceError", "SourceTable", "open_source"]
