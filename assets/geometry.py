"""Geometry of records: parse, reproject to EPSG:4326 with explicit axis order, repair, fit the layer type."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

WGS84 = pyproj.CRS.from_epsg(4326)
# what str.isspace() holds true (checked by tests/test_csv_pieces.py)
SPACES = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _class(chars: str) -> str:
    """`chars` inside an RE2 character class."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)


PARTS = {"Point": "MultiPoint", "LineString": "MultiLineString", "Polygon": "MultiPolygon"}


@lru_cache(maxsize=16)
def _transformer(source_wkt: str) -> pyproj.Transformer:
    # always_xy: sources and GeoPackages are easting/longitude first whatever the CRS's axis order says
    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(source_wkt), WGS84, always_xy=True)


def to_wgs84(geometries: np.ndarray, crs: pyproj.CRS) -> np.ndarray:
    """Reproject an array of shapely geometries (None allowed) in one vectorised pass. A layer of plain
    2-D points is reprojected in the array itself, each source point released before its reprojected
    twin is made: a million points are never held twice."""
    if crs.equals(WGS84, ignore_axis_order=True):
        return geometries
    transformer = _transformer(crs.to_wkt())
    present = np.flatnonzero(~shapely.is_missing(geometries))
    if len(present) and plain_points(geometries[present]):
        xy = shapely.get_coordinates(geometries[present])
        geometries[present] = None
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        del xy
        geometries[present] = shapely.points(x, y)
        return geometries

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometries, project)


def points_to_wgs84(x: np.ndarray, y: np.ndarray, crs: pyproj.CRS) -> np.ndarray:
    """Points in EPSG:4326 from coordinates in `crs`: the same points `to_wgs84` makes of them."""
    if not crs.equals(WGS84, ignore_axis_order=True):
        x, y = _transformer(crs.to_wkt()).transform(x, y)
    return shapely.points(x, y)


def plain_points(geometries: np.ndarray) -> bool:
    """Non-empty points without Z or M: one coordinate pair each, in order."""
    if not (shapely.get_type_id(geometries) == 0).all() or shapely.is_empty(geometries).any():
        return False
    return not (shapely.has_z(geometries).any() or (hasattr(shapely, "has_m") and shapely.has_m(geometries).any()))


def within_box(geometries: np.ndarray, extent: tuple[float, float, float, float]) -> np.ndarray:
    """`shapely.within(geometries, box(*extent))`. A point is within a box when it is strictly inside it (on
    its edge it is not): the points' coordinates are compared by numpy, a million of them in milliseconds
    rather than a second of GEOS predicates. Other geometries (and empty points) are judged by GEOS."""
    west, south, east, north = extent
    points = shapely.get_type_id(geometries) == 0
    points[points] = ~shapely.is_empty(geometries[points])
    inside = np.zeros(len(geometries), dtype=bool)
    if points.any():
        x, y = shapely.get_x(geometries[points]), shapely.get_y(geometries[points])
        inside[points] = (west < x) & (x < east) & (south < y) & (y < north)
    others = np.flatnonzero(~points & ~shapely.is_missing(geometries))
    if len(others):
        box = shapely.box(west, south, east, north)
        shapely.prepare(box)
        inside[others] = shapely.within(geometries[others], box)
    return inside


CURVES = ("CIRCULARSTRING", "COMPOUNDCURVE", "CURVEPOLYGON", "MULTICURVE", "MULTISURFACE")


# `POINT (x y)` with plain decimals, as registers write a million of them: read by Arrow (correctly
# rounded, like GEOS's reader) into the same points; every other text goes to GEOS as written
PLAIN_POINT = r"^POINT \((?P<x>-?[0-9]+(?:\.[0-9]+)?) (?P<y>-?[0-9]+(?:\.[0-9]+)?)\)$"


# the same, with what str.strip() removes around it: Arrow texts are not stripped first
PADDED_POINT = f"^[{_class(SPACES)}]*{PLAIN_POINT[1:-1]}[{_class(SPACES)}]*$"


def parse_wkt(texts: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Shapely geometries; None where a text is empty or not WKT (the caller tells them apart,
    `wkt_problem` says why). `texts`: Python objects, or Arrow texts (a CSV's WKT column, null for none)."""
    parsed, plain, x, y = parse_wkt_points(texts)
    if plain.any():
        parsed[plain] = shapely.points(x, y)
    return parsed


def parse_wkt_points(texts: np.ndarray | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, ...]:
    """`parse_wkt` with its plain points (finite ones: valid as delivered) left as coordinates: (geometries,
    None at those points; mask of those points; their x; their y). A caller that reprojects them makes each
    point once, in its target CRS, not first in the source's."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        arrow = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        pattern, cleaned = PADDED_POINT, None
    else:
        cleaned = np.array([(t.strip() or None) if isinstance(t, str) else None for t in texts], dtype=object)
        arrow, pattern = pa.array(cleaned, pa.string()), PLAIN_POINT
    parsed = np.full(len(arrow), None, dtype=object)
    matched = np.zeros(len(arrow), dtype=bool)
    plain, x, y = matched.copy(), np.empty(0), np.empty(0)
    if len(arrow):
        found = pc.extract_regex(arrow, pattern)
        matched = found.is_valid().to_numpy(zero_copy_only=False)
        if matched.any():
            points = found.filter(found.is_valid())
            x = pc.cast(points.field("x"), pa.float64()).to_numpy()
            y = pc.cast(points.field("y"), pa.float64()).to_numpy()
            finite = np.isfinite(x) & np.isfinite(y)
            plain[matched] = finite
            if not finite.all():  # beyond a double: a point GEOS judges invalid, as it was parsed
                parsed[np.flatnonzero(matched)[~finite]] = shapely.points(x[~finite], y[~finite])
                x, y = x[finite], y[finite]
    rest = ~matched
    if cleaned is None:  # only the texts that are no plain point become Python strings
        others = arrow.filter(pa.array(rest)).to_pylist()
        cleaned_rest = np.array([(t.strip() or None) if isinstance(t, str) else None for t in others], dtype=object)
    else:
        cleaned_rest = cleaned[rest]
    try:
        parsed[rest] = shapely.from_wkt(cleaned_rest, on_invalid="ignore")
    except NotImplementedError:  # one curve (CIRCULARSTRING…) fails the whole array: parse one by one
        parsed[rest] = [_one_wkt(text) for text in cleaned_rest]
    return parsed, plain, x, y


def _one_wkt(text: str | None):
    try:
        return shapely.from_wkt(text, on_invalid="ignore")
    except NotImplementedError:
        return None


def wkt_problem(text: object) -> str:
    """Why a non-empty text did not parse as WKT."""
    word = str(text).strip().split("(")[0].split(" ")[0].upper()
    if word in CURVES:
        return f"curved geometry ({word}) is not supported: deliver it as LINESTRING or POLYGON"
    return "not valid WKT"


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


SPOT = "a line of identical points (a spot)"
LINE_TYPES = (1, 5)  # LineString, MultiLineString


def spots(geometries: np.ndarray) -> np.ndarray:
    """Mask of lines whose every coordinate is the same point: WZDx writes a work zone at one spot
    as a LineString of two identical points, which no repair can keep as a line."""
    result = np.zeros(len(geometries), dtype=bool)
    lines = np.flatnonzero(np.isin(shapely.get_type_id(geometries), LINE_TYPES) & ~shapely.is_empty(geometries))
    if not len(lines):
        return result
    coords, owner = shapely.get_coordinates(geometries[lines], return_index=True)
    first = coords[np.searchsorted(owner, owner)]  # owners are sorted: the first coordinate of each line
    moves = np.bincount(owner, weights=np.any(coords != first, axis=1), minlength=len(lines)) > 0
    result[lines] = ~moves
    return result


def repair(geometries: np.ndarray, geometry_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(repaired geometries, mask of the ones repaired, why a geometry could not be kept or None).

    Self-intersections, ring orientation and the like are fixed with GEOS make_valid (structure
    method keeps polygon areas). A spot line becomes its point on a Point layer and is refused
    elsewhere; a repair that leaves an empty geometry is no repair: the record is refused with GEOS's
    reason. Refused geometries come back as None and are not counted as repaired."""
    present = ~shapely.is_missing(geometries)
    invalid = np.zeros(len(geometries), dtype=bool)
    invalid[present] = ~shapely.is_valid(geometries[present])
    repaired = geometries.copy()
    refused = np.full(len(geometries), None, dtype=object)
    spot = spots(geometries) & invalid
    if spot.any():
        if geometry_type == "Point":
            repaired[spot] = shapely.get_point(shapely.get_geometry(geometries[spot], 0), 0)
        else:
            refused[spot] = SPOT
        invalid &= ~spot
    if invalid.any():
        repaired[invalid] = shapely.make_valid(geometries[invalid], method="structure", keep_collapsed=False)
        emptied = invalid & ~shapely.is_missing(repaired)
        emptied[emptied] = shapely.is_empty(repaired[emptied])
        if emptied.any():
            refused[emptied] = [f"repair left nothing: {why}" for why in shapely.is_valid_reason(geometries[emptied])]
            invalid &= ~emptied
    repaired[refused != None] = None  # noqa: E711 - elementwise on an object array
    return repaired, invalid | (spot & (geometry_type == "Point")), refused


def from_flat_coordinates(values: object, kind: str, lat_first: bool) -> BaseGeometry:
    """A point, line or polygon from a coordinate array as feeds write them: flat
    ([lat, lng, lat, lng…]) or as pairs; a polygon's ring is closed when the feed left it open.
    ValueError says what is wrong with the array."""
    if not isinstance(values, list) or not values:
        raise ValueError("not a list of coordinates")
    flat = [c for pair in values for c in pair] if all(isinstance(v, list) for v in values) else values
    try:
        numbers = np.asarray(flat, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("coordinates that are not numbers") from None
    if numbers.ndim != 1 or len(numbers) % 2:
        raise ValueError(f"{len(numbers)} numbers: coordinates come in pairs")
    pairs = numbers.reshape(-1, 2)[:, ::-1] if lat_first else numbers.reshape(-1, 2)
    if not np.isfinite(pairs).all():
        raise ValueError("coordinates that are not finite numbers")
    if kind == "point":
        if len(pairs) != 1:
            raise ValueError(f"{len(pairs)} coordinate pairs for a point")
        return shapely.Point(pairs[0])
    if kind == "line":
        if len(pairs) < 2:
            raise ValueError("a line needs at least 2 coordinate pairs")
        return shapely.LineString(pairs)
    if len(np.unique(pairs, axis=0)) < 3:
        raise ValueError("a polygon needs at least 3 distinct coordinate pairs")
    if not (pairs[0] == pairs[-1]).all():
        pairs = np.vstack([pairs, pairs[:1]])
    return shapely.Polygon(pairs)
