"""Shapefiles, GeoJSON and GeoPackages read feature by feature with Fiona, so one broken feature sinks
only itself; the CRS the file states travels with its records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import fiona
import pyproj
import shapely
from fiona._err import CPLE_BaseError  # GDAL's own errors, e.g. a .prj it cannot parse
from fiona.errors import FionaError
from shapely.geometry import shape

from assets.records import RawRecord, SourceError, SourceTable

log = logging.getLogger(__name__)
# Only the parts of a Shapefile GDAL cannot do without: a missing .dbf silently yields no attributes.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf")


def read_vector(path: Path, source: str, encoding: str, driver: str, layer: str | None = None) -> SourceTable:
    if driver == "ESRI Shapefile":
        missing = [path.with_suffix(ext).name for ext in SHAPEFILE_PARTS if not path.with_suffix(ext).exists()]
        if missing:
            raise SourceError(source, f"incomplete Shapefile: missing {', '.join(missing)}")
    if layer is not None and layer not in _layers(path, source):
        raise SourceError(source, f"no layer {layer!r}; the file has {_layers(path, source)}")
    try:
        options = {} if driver == "GPKG" else {"encoding": encoding}  # a GeoPackage is UTF-8 by definition
        collection = fiona.open(path, driver=driver, layer=layer, **options)
    except (FionaError, OSError, ValueError) as exc:
        raise SourceError(source, f"cannot open as {driver}: {exc}") from None
    columns = list(collection.schema["properties"]) if collection.schema else []
    records = _by_index(collection, source) if driver == "ESRI Shapefile" else _in_order(collection, source)
    featureless = driver == "GeoJSON" and not columns and len(collection) == 0
    return SourceTable(
        source,
        columns,
        records,
        close=collection.close,
        crs=stated_crs(collection, driver, path),
        columns_open=featureless,
    )


def _layers(path: Path, source: str) -> list[str]:
    try:
        return fiona.listlayers(path)
    except (FionaError, OSError, ValueError) as exc:
        raise SourceError(source, f"cannot open as GeoPackage: {exc}") from None


def stated_crs(collection, driver: str, path: Path) -> str | None:
    """The CRS the file states, as WKT. A GeoJSON without a `crs` member is read by GDAL as CRS84,
    the RFC 7946 default: that is not a statement that could disagree with the catalog, so None."""
    try:
        wkt = collection.crs_wkt
    except (FionaError, CPLE_BaseError) as exc:
        # a .prj GDAL cannot parse: its text goes on, and the CRS decision says it cannot be read
        prj = path.with_suffix(".prj")
        return prj.read_text(encoding="utf-8", errors="replace") if prj.is_file() else f"unreadable CRS: {exc}"
    if not wkt:
        return None
    try:
        default = driver == "GeoJSON" and pyproj.CRS.from_wkt(wkt).equals("OGC:CRS84", ignore_axis_order=True)
    except pyproj.exceptions.CRSError:
        return wkt  # unreadable here too: the CRS decision names it
    return None if default else wkt


def _feature_record(feature, source: str, number: str) -> RawRecord:
    values = dict(feature.properties or {})
    if feature.geometry is None:
        return RawRecord(source, number, values, geometry=None)
    try:
        geometry = shape(feature.geometry)
    except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError) as exc:
        return RawRecord(source, number, values, error=f"unreadable geometry: {exc}", error_field="geometry")
    return RawRecord(source, number, values, geometry=geometry)


def _by_index(collection, source: str) -> Iterator[RawRecord]:
    # A truncated .shp fails at the first missing feature; reading by index lets every feature
    # before (and any readable one after) still count, and each failure is named.
    with collection:
        for index in range(len(collection)):
            number = f"feature {index + 1}"
            try:
                feature = collection[index]
            except (FionaError, IndexError, KeyError, ValueError, RuntimeError) as exc:
                yield RawRecord(source, number, {}, error=f"cannot read the feature (file truncated?): {exc}")
                continue
            yield _feature_record(feature, source, number)


def _in_order(collection, source: str) -> Iterator[RawRecord]:
    with collection:
        iterator = iter(collection)
        index = 0
        while True:
            index += 1
            try:
                feature = next(iterator)
            except StopIteration:
                return
            except (FionaError, ValueError, RuntimeError) as exc:
                yield RawRecord(source, f"feature {index}", {}, error=f"cannot read the rest of the file: {exc}")
                return
            yield _feature_record(feature, source, f"feature {index}")
