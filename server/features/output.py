"""Rows of a feature query as GeoJSON features: geometry from the blob, properties typed as JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from orjson import Fragment

from server.features.crs import CRS84, transform_xy
from server.published import gpkg

JSON_SCHEMA = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "blob": {"type": "string", "format": "binary"},
}


def json_value(value: Any, kind: str) -> Any:
    """GeoPackage storage to JSON: BOOLEAN 0/1 -> false/true; dates and datetimes already are the
    ISO strings the contract fixes, so they pass as they are."""
    if value is None:
        return None
    if kind == "boolean":
        return bool(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


@dataclass(frozen=True)
class RowLayout:
    """Which SELECT column holds what: fid first, then the item id if it is a property, the sort
    keys, the geometry blob unless skipped, then the output properties."""

    id_index: int
    key_indexes: tuple[int, ...]
    geometry_index: int | None
    properties: tuple[tuple[str, str], ...]  # (name, kind), in output order
    properties_start: int
    # True: instead of the properties, one column at properties_start holds their JSON (server.features.json_rows)
    properties_json: bool = False


GeometryDecoder = Callable[[Sequence[bytes | None]], np.ndarray]
# x, y of every geometry (None: NULL or empty) when all are plain 2D points, else None (then GeometryDecoder's way)
PointDecoder = Callable[[Sequence[bytes | None]], "list[tuple[float, float] | None] | None"]


def wkb_geometries(wkbs: Sequence[bytes | None]) -> np.ndarray:
    """Plain WKB (PostGIS's ST_AsBinary) to shapely, an empty geometry as None like an empty GeoPackage blob."""
    shapes = shapely.from_wkb(np.array(wkbs, dtype=object))
    shapes[shapely.is_empty(shapes)] = None
    return shapes


def render(
    rows: Sequence[tuple],
    layout: RowLayout,
    target_crs: str | None,
    decode: GeometryDecoder = gpkg.to_shapely_many,
    points: PointDecoder | None = None,
) -> list[dict]:
    """`decode` reads the geometry column (GeoPackage blobs by default); `points` reads a column of points without
    GEOS (a small page of points spent more on shapely's per-call overhead than on its points)."""
    geometries = _geojson_geometries(rows, layout, target_crs, decode, points)
    if layout.properties_json:  # written by orjson as they are (the caller's promise: InstantPage.read)
        start, id_index = layout.properties_start, layout.id_index
        return [
            {"type": "Feature", "id": row[id_index], "geometry": geometry, "properties": Fragment(row[start])}
            for row, geometry in zip(rows, geometries, strict=True)
        ]
    names = [name for name, _ in layout.properties]
    # only these need converting; text, numbers and ISO dates pass as they are
    convert = [(name, kind) for name, kind in layout.properties if kind in ("boolean", "integer", "blob")]
    start = layout.properties_start
    features = []
    for row, geometry in zip(rows, geometries, strict=True):
        properties = dict(zip(names, row[start:], strict=True))
        for name, kind in convert:
            properties[name] = json_value(properties[name], kind)
        # the same keys on every feature, nulls included: QGIS infers the schema from the first ones
        features.append({"type": "Feature", "id": row[layout.id_index], "geometry": geometry, "properties": properties})
    return features


def _geojson_geometries(
    rows: Sequence[tuple],
    layout: RowLayout,
    target_crs: str | None,
    decode: GeometryDecoder,
    points: PointDecoder | None,
) -> list[dict | None]:
    if layout.geometry_index is None or not rows:
        return [None] * len(rows)
    column = [row[layout.geometry_index] for row in rows]
    if points is not None and (target_crs is None or target_crs == CRS84):
        xy = points(column)
        if xy is not None:  # the same coordinates as the vectorised way below
            return [None if here is None else {"type": "Point", "coordinates": here} for here in xy]
    shapes = decode(column)
    if target_crs is not None and target_crs != CRS84:
        shapes = transform_xy(shapes, CRS84, target_crs)
    present = ~shapely.is_missing(shapes)
    points = shapes[present]
    if points.size and (shapely.get_type_id(points) == 0).all() and not shapely.has_z(points).any():
        # a page of points: coordinates in one vectorised call instead of one __geo_interface__ each
        xy = np.full((len(shapes), 2), np.nan)
        xy[present] = shapely.get_coordinates(points)
        return [
            {"type": "Point", "coordinates": (x, y)} if here else None
            for (x, y), here in zip(xy.tolist(), present.tolist(), strict=True)
        ]
    return [None if shape is None else shape.__geo_interface__ for shape in np.asarray(shapes)]
