"""Publication checks on a layer's frame: pure functions returning outcomes for Dagster to record."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely

from layers.catalog import City, LayerSpec

# Slivers below this many square metres are digitising noise, not real overlaps or gaps.
TOPOLOGY_TOLERANCE_M2 = 1.0


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    metadata: dict[str, object] = field(default_factory=dict)


def schema(frame: gpd.GeoDataFrame, spec: LayerSpec) -> CheckOutcome:
    problems = []
    expected = [f.name for f in spec.fields]
    missing = [name for name in expected if name not in frame.columns]
    if missing:
        problems.append(f"missing fields {missing}")
    for f in spec.fields:
        if f.name not in frame.columns:
            continue
        column = frame[f.name]
        if f.required and column.isna().any():
            problems.append(f"{f.name}: {int(column.isna().sum())} empty required values")
        if f.allowed is not None:
            outside = column.notna() & ~column.isin(f.allowed)
            if outside.any():
                problems.append(f"{f.name}: values outside {f.allowed}")
    types = set(frame.geometry.geom_type.dropna())
    if types - {spec.geometry_type}:
        problems.append(f"geometry types {sorted(types)} in a {spec.geometry_type} layer")
    return CheckOutcome(
        "schema",
        not problems,
        True,
        "fields, required values, allowed values and geometry type match the catalog",
        {"problems": "; ".join(problems) or "none", "fields": len(expected)},
    )


def geometry_validity(frame: gpd.GeoDataFrame) -> CheckOutcome:
    geoms = frame.geometry.to_numpy()
    empty = np.array([g is None or g.is_empty for g in geoms])
    invalid = ~empty & ~shapely.is_valid(np.where(empty, None, geoms))
    return CheckOutcome(
        "geometry_valid",
        not (empty.any() or invalid.any()),
        True,
        "every feature has a valid, non-empty geometry",
        {"empty": int(empty.sum()), "invalid": int(invalid.sum())},
    )


def within_extent(frame: gpd.GeoDataFrame, city: City) -> CheckOutcome:
    west, south, east, north = city.extent
    bounds = frame.geometry.bounds
    outside = (bounds.minx < west) | (bounds.maxx > east) | (bounds.miny < south) | (bounds.maxy > north)
    return CheckOutcome(
        "within_city_extent",
        not outside.any(),
        True,
        f"every feature lies inside the city extent {list(city.extent)}",
        {"outside": int(outside.sum())},
    )


def unique_ids(frame: gpd.GeoDataFrame, spec: LayerSpec) -> CheckOutcome:
    duplicated_ids = int(frame[spec.id_field].duplicated().sum())
    duplicated_fids = int(frame["fid"].duplicated().sum())
    return CheckOutcome(
        "unique_ids",
        duplicated_ids == 0 and duplicated_fids == 0,
        True,
        f"{spec.id_field} and the feature id are unique",
        {"duplicate_ids": duplicated_ids, "duplicate_fids": duplicated_fids},
    )


def temporal_order(frame: gpd.GeoDataFrame, spec: LayerSpec) -> CheckOutcome:
    if not spec.temporal or not spec.temporal.end:
        return CheckOutcome("end_after_start", True, True, "no temporal interval in this layer")
    start, end = frame[spec.temporal.start], frame[spec.temporal.end]
    backwards = int((start.notna() & end.notna() & (end < start)).sum())
    return CheckOutcome(
        "end_after_start", backwards == 0, True, "no feature ends before it starts", {"backwards": backwards}
    )


def zone_topology(frame: gpd.GeoDataFrame, city: City) -> CheckOutcome:
    """Overlaps between zones and gaps inside the zone set, in square metres of the local CRS.
    Not blocking: real zone sets have slivers, and a district map with a gap is still a map."""
    local = frame.to_crs(next(iter(city.crs.values())).pyproj) if city.crs else frame
    geoms = local.geometry.to_numpy()
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = left < right
    overlap_areas = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
    overlaps = overlap_areas > TOPOLOGY_TOLERANCE_M2
    union = shapely.union_all(geoms)
    holes = [shapely.Polygon(ring) for part in getattr(union, "geoms", [union]) for ring in part.interiors]
    gap_areas = np.array([h.area for h in holes if h.area > TOPOLOGY_TOLERANCE_M2])
    ok = not overlaps.any() and gap_areas.size == 0
    return CheckOutcome(
        "zone_topology",
        ok,
        False,
        "zones neither overlap nor leave gaps (tolerance 1 m²)",
        {
            "overlapping_pairs": int(overlaps.sum()),
            "overlap_m2": round(float(overlap_areas[overlaps].sum()), 1),
            "gaps": int(gap_areas.size),
            "gap_m2": round(float(gap_areas.sum()), 1),
        },
    )


def publication_checks(frame: gpd.GeoDataFrame, spec: LayerSpec, city: City) -> list[CheckOutcome]:
    outcomes = [
        schema(frame, spec),
        geometry_validity(frame),
        within_extent(frame, city),
        unique_ids(frame, spec),
        temporal_order(frame, spec),
    ]
    if spec.zone_topology:
        outcomes.append(
            zone_topology(frame, city)
            if len(frame)
            else CheckOutcome("zone_topology", True, False, "no zones to check")
        )
    return outcomes


CHECK_NAMES = ["schema", "geometry_valid", "within_city_extent", "unique_ids", "end_after_start"]


def check_names(spec: LayerSpec) -> list[tuple[str, bool]]:
    """(name, blocking) of the checks run on a layer, for declaring them before they run."""
    return [(name, True) for name in CHECK_NAMES] + ([("zone_topology", False)] if spec.zone_topology else [])
