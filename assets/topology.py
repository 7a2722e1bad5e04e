"""Gaps and overlaps of a zone set, measured in square metres on an equal-area projection of the set."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pyproj
import shapely

# Neighbours digitised twice leave slivers a metre or two wide; one that reaches the set's outline is
# not a hole of the union, so the outline is first closed over gaps up to this width. Wider notches
# are the outline's real shape (a river, a bay), not a gap between neighbours.
SLIVER_WIDTH_M = 2.0
NUMERIC_FILM_M = 0.01


@dataclass(frozen=True)
class Finding:
    kind: str  # "gap" or "overlap"
    zones: tuple[str, ...]  # ids of the zones it lies between or within
    area_m2: float
    geometry: shapely.Geometry  # in EPSG:4326


@dataclass
class Topology:
    crs: str  # the equal-area projection areas were measured on
    gaps: list[Finding] = field(default_factory=list)
    overlaps: list[Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return sorted(self.gaps + self.overlaps, key=lambda f: -f.area_m2)


def equal_area_crs(frame: gpd.GeoDataFrame) -> pyproj.CRS:
    """Lambert azimuthal equal-area centred on the set: areas are true whatever CRS the sources came in,
    for any city on Earth, with no CRS to configure (a city-sized set stays within metres of the centre's
    scale)."""
    west, south, east, north = frame.to_crs(4326).total_bounds
    return pyproj.CRS.from_proj4(
        f"+proj=laea +lat_0={(south + north) / 2:.6f} +lon_0={(west + east) / 2:.6f} +datum=WGS84 +units=m +no_defs"
    )


def _parts(geometry: shapely.Geometry) -> list[shapely.Geometry]:
    return [p for p in shapely.get_parts(geometry) if isinstance(p, shapely.Polygon) and not p.is_empty]


def _filled(geometry: shapely.Geometry) -> shapely.Geometry:
    return shapely.union_all([shapely.Polygon(p.exterior) for p in _parts(geometry)])


def zone_topology(frame: gpd.GeoDataFrame, id_field: str, tolerance_m2: float) -> Topology:
    """Overlaps pairwise (each pair of zones whose shared area exceeds the tolerance) and gaps: pieces of
    uncovered area inside the set's outline, holes of the union as well as slivers between neighbours
    that open to the outside."""
    if not len(frame):
        return Topology("none")
    crs = equal_area_crs(frame)
    result = Topology(crs.srs)
    local = frame.to_crs(crs)
    geoms = local.geometry.to_numpy()
    ids = [str(v) for v in frame[id_field]]
    back = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    to_wgs84 = lambda g: shapely.transform(g, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))  # noqa: E731

    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = left < right
    shared = shapely.intersection(geoms[left[pairs]], geoms[right[pairs]])
    for a, b, piece in zip(left[pairs], right[pairs], shared, strict=True):
        area = float(shapely.area(piece))
        if area > tolerance_m2:
            polygons = _parts(piece)
            geometry = shapely.MultiPolygon(polygons) if polygons else piece
            result.overlaps.append(Finding("overlap", (ids[a], ids[b]), round(area, 2), to_wgs84(geometry)))

    union = shapely.union_all(geoms)
    half = SLIVER_WIDTH_M / 2
    closed = shapely.buffer(shapely.buffer(union, half, join_style="mitre"), -half, join_style="mitre")
    outline = _filled(shapely.union(closed, union))
    inside = _filled(union)
    uncovered = shapely.difference(outline, union)
    # reprojected outlines are not exactly straight: the closing leaves hair-thin films along them that
    # would join unrelated gaps into one piece; an opening by a centimetre removes them
    uncovered = shapely.buffer(
        shapely.buffer(uncovered, -NUMERIC_FILM_M, join_style="mitre"), NUMERIC_FILM_M, join_style="mitre"
    )
    for piece in _parts(uncovered):
        area = float(piece.area)
        if area <= tolerance_m2:
            continue
        near = sorted({ids[i] for i in tree.query(piece, predicate="dwithin", distance=half / 10)})
        # a hole of the union is a gap wherever it is; a piece the closing added at the outline is a gap
        # only between neighbours (a notch of one zone's own outline is its shape)
        if len(near) >= 2 or shapely.covered_by(piece, inside):
            result.gaps.append(Finding("gap", tuple(near), round(area, 2), to_wgs84(piece)))
    return result


def findings_frame(topology: Topology) -> gpd.GeoDataFrame:
    """The findings as a layer an operator opens in QGIS: kind, zones, area, the polygon itself."""
    findings = topology.findings
    return gpd.GeoDataFrame(
        {
            "kind": [f.kind for f in findings],
            "zones": [", ".join(f.zones) for f in findings],
            "area_m2": np.array([f.area_m2 for f in findings], dtype=float),
        },
        geometry=gpd.GeoSeries([shapely.MultiPolygon(_parts(f.geometry)) for f in findings], crs=4326),
        crs=4326,
    )
