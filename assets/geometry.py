"""Geometry of records: parse, reproject to EPSG:4326 with explicit axis order, repair, fit the layer type."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

WGS84 = pyproj.CRS.from_epsg(4326)
PARTS = {"Point": "MultiPoint", "LineString": "MultiLineString", "Polygon": "MultiPolygon"}


@lru_cache(maxsize=16)
def _transformer(source_wkt: str) -> pyproj.Transformer:
    # always_xy: sources and GeoPackages are easting/longitude first whatever the CRS's axis order says
    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(source_wkt), WGS84, always_xy=True)


def to_wgs84(geometries: np.ndarray, crs: pyproj.CRS) -> np.ndarray:
    """Reproject an array of shapely geometries (None allowed) in one vectorised pass."""
    if crs.equals(WGS84, ignore_axis_order=True):
        return geometries
    transformer = _transformer(crs.to_wkt())

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometries, project)


def parse_wkt(texts: np.ndarray) -> np.ndarray:
    """Shapely geometries; None where a text is empty or not WKT (the caller tells them apart)."""
    cleaned = np.array([t.strip() if isinstance(t, str) and t.strip() else None for t in texts], dtype=object)
    return shapely.from_wkt(cleaned, on_invalid="ignore")


def points_from_xy(x: np.ndarray, y: np.ndarray, northing_first: bool) -> np.ndarray:
    easting, northing = (y, x) if northing_first else (x, y)
    ok = ~(np.isnan(easting) | np.isnan(northing))
    result = np.full(len(x), None, dtype=object)
    result[ok] = shapely.points(easting[ok], northing[ok])
    return result


def fit_type(geometry: BaseGeometry, geometry_type: str) -> tuple[BaseGeometry | None, str | None]:
    """The geometry as the layer's type, or None and why. Single parts are promoted to Multi and
    one-part Multi demoted, because sources mix them freely and QGIS wants one type per layer."""
    kind = geometry.geom_type
    if kind == geometry_type:
        return geometry, None
    if PARTS.get(kind) == geometry_type:
        return getattr(shapely.geometry, geometry_type)([geometry]), None
    if PARTS.get(geometry_type) == kind and len(geometry.geoms) == 1:
        return geometry.geoms[0], None
    if kind == "GeometryCollection":
        wanted = geometry_type.removeprefix("Multi")
        parts = [g for g in geometry.geoms if g.geom_type.removeprefix("Multi") == wanted]
        if parts:
            merged = shapely.union_all(parts)
            if merged.geom_type in (geometry_type, wanted) or PARTS.get(merged.geom_type) == geometry_type:
                return fit_type(merged, geometry_type)
    return None, f"geometry type {kind} does not fit a {geometry_type} layer"


def repair(geometries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(repaired geometries, mask of the ones that needed repair): self-intersections, ring
    orientation and the like, fixed with GEOS make_valid (structure method keeps polygon areas)."""
    present = np.array([g is not None for g in geometries], dtype=bool)
    invalid = np.zeros(len(geometries), dtype=bool)
    invalid[present] = ~shapely.is_valid(geometries[present])
    repaired = geometries.copy()
    if invalid.any():
        repaired[invalid] = shapely.make_valid(geometries[invalid], method="structure", keep_collapsed=False)
    return repaired, invalid
