"""Publication checks on a layer's frame: pure functions returning outcomes for Dagster to record."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import geopandas as gpd
import shapely

from assets import topology
from assets.publish import Published
from assets.records import Reject
from assets.topology import Topology
from layers.catalog import City, LayerSpec

MAX_LISTED_FINDINGS = 25


class MetadataTable(str):
    """Markdown the Dagster layer shows as a table (kept free of Dagster here)."""


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
    # vectorised and typed: an empty frame gives empty bool arrays, not float ones ~ cannot invert
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    invalid = ~empty & ~shapely.is_valid(geoms)
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


def zone_topology(frame: gpd.GeoDataFrame, spec: LayerSpec) -> tuple[CheckOutcome, Topology]:
    """Overlaps between zones and gaps inside the zone set, in m² on an equal-area projection.
    Not blocking: real zone sets have slivers, and a district map with a gap is still a map."""
    found = topology.zone_topology(frame, spec.id_field, spec.topology_tolerance_m2)
    rows = [f"| {f.kind} | {', '.join(f.zones)} | {f.area_m2:,.1f} |" for f in found.findings[:MAX_LISTED_FINDINGS]]
    table = "| kind | zones | m² |\n|---|---|---|\n" + "\n".join(rows) if rows else "no gaps or overlaps"
    if len(found.findings) > MAX_LISTED_FINDINGS:
        table += f"\n\n… and {len(found.findings) - MAX_LISTED_FINDINGS} more (see the topology GeoPackage)"
    outcome = CheckOutcome(
        "zone_topology",
        not found.findings,
        False,
        f"zones neither overlap nor leave gaps (tolerance {spec.topology_tolerance_m2:g} m², equal-area)",
        {
            "overlapping_pairs": len(found.overlaps),
            "overlap_m2": round(sum(f.area_m2 for f in found.overlaps), 1),
            "gaps": len(found.gaps),
            "gap_m2": round(sum(f.area_m2 for f in found.gaps), 1),
            "tolerance_m2": spec.topology_tolerance_m2,
            "measured_in": found.crs,
            "findings": MetadataTable(table),
        },
    )
    return outcome, found


def volume(
    spec: LayerSpec,
    published: int,
    by_source: dict[str, int],
    previous: Published | None,
    released: bool = False,
) -> CheckOutcome:
    """A silent shrink is held: a source that contributed before and contributes nothing now, or a loss
    of more than `max_loss` of the previous publication. Sources declared `may_be_empty` (event feeds)
    come and go freely; the first publication has nothing to compare with."""
    guarded = [s.path for s in spec.sources if not s.may_be_empty]
    metadata: dict[str, object] = {"published": published, "max_loss": spec.max_loss}
    problems = []
    if previous is not None:
        metadata["previously_published"] = previous.features
        if previous.by_source is not None:
            before = {path: previous.by_source.get(path, 0) for path in guarded}
            now = {path: by_source.get(path, 0) for path in guarded}
            problems += [
                f"{path} contributed {before[path]} records before and none now"
                for path in guarded
                if before[path] > 0 and now[path] == 0
            ]
            # per-source counts are taken before duplicate ids across sources are dropped: the layer's
            # own totals when every source is guarded, the guarded sources' sums otherwise
            all_guarded = len(guarded) == len(spec.sources)
            was = previous.features if all_guarded else sum(before.values())
            is_ = published if all_guarded else sum(now.values())
        else:  # published before per-source counts were kept: the layer's total
            was, is_ = (previous.features, published) if guarded else (0, 0)
        if was and (was - is_) / was > spec.max_loss:
            of = "" if len(guarded) == len(spec.sources) else " from sources that may not be empty"
            problems.append(
                f"{was} → {is_} features{of} (−{(was - is_) / was:.0%}, more than max_loss {spec.max_loss:.0%})"
            )
    reason = "; ".join(problems)
    if released and problems:
        return CheckOutcome("volume", True, True, f"hold released by the operator: {reason}", metadata)
    return CheckOutcome(
        "volume",
        not problems,
        True,
        reason
        or f"no source that contributed before is empty, and no more than {spec.max_loss:.0%} of the features is lost",
        {**metadata, **({"held": reason} if problems else {})},
    )


def all_rejected(layer_id: str, read: int, published: int, rejects: list[Reject], listed: int = 3) -> str | None:
    """One line when records were read and every one was rejected, else None: naming the files and the
    commonest reasons, because publishing an empty layer would wipe the map for a file-wide mistake.
    An empty source is not this (its joined table's unmatched rows are rejects, yet nothing was read)."""
    if published or not read or not rejects:
        return None
    first: dict[tuple[str, str], Reject] = {}
    for reject in rejects:
        first.setdefault((reject.source, reject.record), reject)
    files = Counter(source for source, _ in first)
    named = (
        next(iter(files))
        if len(files) == 1
        else ", ".join(f"{source} ({count})" for source, count in files.most_common())
    )
    reasons = Counter(
        (r.reason if len(r.reason) <= 60 else r.reason[:59] + "…", r.field) for r in first.values()
    ).most_common()
    shown = ", ".join(f'{count}× "{reason}" ({field or "record"})' for (reason, field), count in reasons[:listed])
    more = f", {sum(c for _, c in reasons[listed:])}× other reasons" if len(reasons) > listed else ""
    return f"{layer_id}: all {len(first)} records of {named} rejected: {shown}{more}"


def publication_checks(frame: gpd.GeoDataFrame, spec: LayerSpec, city: City) -> list[CheckOutcome]:
    outcomes = [
        schema(frame, spec),
        geometry_validity(frame),
        within_extent(frame, city),
        unique_ids(frame, spec),
        temporal_order(frame, spec),
    ]
    return outcomes


CHECK_NAMES = ["schema", "geometry_valid", "within_city_extent", "unique_ids", "end_after_start", "volume"]


def check_names(spec: LayerSpec) -> list[tuple[str, bool]]:
    """(name, blocking) of the checks run on a layer, for declaring them before they run."""
    return [(name, True) for name in CHECK_NAMES] + ([("zone_topology", False)] if spec.zone_topology else [])
