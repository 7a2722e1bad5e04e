"""Conflicts between events found by the catalog's rules: pure functions from published layers to conflicts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import geopandas as gpd
import pandas as pd
import pyproj
import shapely
from shapely.geometry import MultiPolygon, Polygon

from layers.catalog import Catalog, LayerSpec
from layers.coordination import CONFLICT_FIELDS, ConflictRule

MARK_M = 10.0  # an event that is a conflict by itself is drawn as its outline buffered by this many metres
NEVER = pd.Timestamp.max.tz_localize("UTC")  # the end of an event without one
DAY = pd.Timedelta(days=1)


@dataclass
class Found:
    """The conflicts (EPSG:4326, CONFLICT_FIELDS + geometry), how many per rule, and the rules not applied."""

    frame: gpd.GeoDataFrame
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def local_metres(extent: tuple[float, float, float, float]) -> pyproj.CRS:
    """Azimuthal equidistant at the city's centre: metres true to a few parts in 10⁵ across a city."""
    west, south, east, north = extent
    return pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={(south + north) / 2} +lon_0={(west + east) / 2} +units=m")


def events(spec: LayerSpec, frame: gpd.GeoDataFrame, party: str | None, crs: pyproj.CRS) -> gpd.GeoDataFrame:
    """A published layer as events: layer, id, party, start and end (UTC; no end = lasting), metric geometry,
    plus its own fields for `where` and `group_by`. Events without a start or a geometry are not judged."""
    assert spec.temporal is not None
    start = pd.to_datetime(frame[spec.temporal.start], utc=True, errors="coerce")
    end = (
        pd.to_datetime(frame[spec.temporal.end], utc=True, errors="coerce")
        if spec.temporal.end
        else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    )
    table = gpd.GeoDataFrame(
        {
            **{f.name: frame[f.name] for f in spec.fields if f.name in frame},
            "_layer": spec.id,
            "_id": frame[spec.id_field].astype(str),
            "_party": frame[party] if party and party in frame else None,
            "_start": start,
            "_end": end,
        },
        geometry=frame.geometry.to_crs(crs),
        crs=crs,
    )
    usable = table["_start"].notna() & table.geometry.notna() & ~table.geometry.is_empty
    return table[usable].reset_index(drop=True)


def _selected(frames: list[gpd.GeoDataFrame], where: dict[str, list[str]]) -> gpd.GeoDataFrame:
    table = pd.concat(frames, ignore_index=True) if frames else gpd.GeoDataFrame(geometry=[])
    for name, values in where.items():
        table = table[table[name].astype(str).isin(values)] if name in table else table.iloc[0:0]
    return gpd.GeoDataFrame(table, geometry="geometry", crs=frames[0].crs if frames else None).reset_index(drop=True)


def _overlapping(s1: pd.Series, e1: pd.Series, s2: pd.Series, e2: pd.Series) -> pd.Series:
    """Each starts before the other ends (touching at an instant is no overlap)."""
    return (s1.values < e2.fillna(NEVER).values) & (s2.values < e1.fillna(NEVER).values)


def _pairs(left: gpd.GeoDataFrame, right: gpd.GeoDataFrame, metres: float) -> pd.DataFrame:
    """(left position, right position) of every pair within `metres`."""
    if left.empty or right.empty:
        return pd.DataFrame({"left": [], "right": []}, dtype=int)
    found = gpd.sjoin(left[["geometry"]], right[["geometry"]], predicate="dwithin", distance=metres)
    return pd.DataFrame({"left": found.index.to_numpy(), "right": found["index_right"].to_numpy()})


def _multipolygon(geometry) -> MultiPolygon:
    polygons = [g for g in shapely.get_parts(geometry) if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(polygons)


def _record(rule: ConflictRule, a: pd.Series, b: pd.Series | None, start, end, detail: str, geometry) -> dict:
    ids = (rule.id, a["_layer"], a["_id"], *((b["_layer"], b["_id"]) if b is not None else ()))
    return {
        "conflict_id": hashlib.blake2b("\x1f".join(map(str, ids)).encode(), digest_size=6).hexdigest(),
        "rule": rule.id,
        "layer_a": a["_layer"],
        "id_a": a["_id"],
        "party_a": a["_party"],
        "layer_b": b["_layer"] if b is not None else None,
        "id_b": b["_id"] if b is not None else None,
        "party_b": b["_party"] if b is not None else None,
        "start_time": start,
        "end_time": None if pd.isna(end) or end == NEVER else end,
        "detail": detail,
        "geometry": _multipolygon(geometry),
    }


def overlap(rule: ConflictRule, table: gpd.GeoDataFrame) -> list[dict]:
    """Pairs within `buffer_m` whose periods overlap; the area is where their buffers meet, the period the overlap."""
    distance = rule.buffer_m or 0.0
    pairs = _pairs(table, table, distance)
    key = table["_layer"] + "\x1f" + table["_id"]
    pairs = pairs[key.values[pairs.left] < key.values[pairs.right]]
    a, b = table.iloc[pairs.left].reset_index(drop=True), table.iloc[pairs.right].reset_index(drop=True)
    keep = _overlapping(a["_start"], a["_end"], b["_start"], b["_end"])
    records = []
    for (_, x), (_, y) in zip(a[keep].iterrows(), b[keep].iterrows(), strict=True):
        gap = x.geometry.distance(y.geometry)
        area = x.geometry.buffer(distance).intersection(y.geometry.buffer(distance))
        start, end = (
            max(x["_start"], y["_start"]),
            min(x["_end"] if pd.notna(x["_end"]) else NEVER, y["_end"] if pd.notna(y["_end"]) else NEVER),
        )
        records.append(_record(rule, x, y, start, end, f"{gap:.0f} m apart, periods overlap", area))
    return records


def uncovered(rule: ConflictRule, table: gpd.GeoDataFrame, layers: dict[str, gpd.GeoDataFrame]) -> list[dict]:
    """Events (only those near `on`, if given) with no event of `covered_by` within its distance in an
    overlapping period; with `group_by`, a group is answered when any member is."""
    assert rule.covered_by is not None
    near: dict[int, tuple[pd.Series, float]] = {}
    if rule.on is not None:
        road = _selected([layers[name] for name in rule.on.layers if name in layers], {})
        found = _pairs(table, road, rule.on.within_m)
        for left, right in zip(found.left, found.right, strict=True):
            gap = table.geometry.iloc[left].distance(road.geometry.iloc[right])
            if left not in near or gap < near[left][1]:
                near[left] = (road.iloc[right], gap)
        table = table.iloc[sorted(near)]
    cover = _selected([layers[name] for name in rule.covered_by.layers if name in layers], {})
    found = _pairs(table, cover, rule.covered_by.within_m)
    a, c = table.loc[found.left], cover.iloc[found.right]
    answered = set(found.left[_overlapping(a["_start"], a["_end"], c["_start"], c["_end"])])
    covered_by = f"no {' or '.join(rule.covered_by.layers)} within {rule.covered_by.within_m:g} m in its period"
    records = []
    if rule.group_by:
        for (_, value), members in table.groupby(["_layer", rule.group_by], sort=True):
            if answered & set(members.index):
                continue
            first = members.iloc[0].copy()
            first["_id"] = str(value)
            ends = members["_end"].fillna(NEVER)
            outline = shapely.union_all(members.geometry.buffer(MARK_M).to_numpy())
            detail = f"{rule.group_by} {value}: {len(members)} features, {covered_by}"
            records.append(_record(rule, first, None, members["_start"].min(), ends.max(), detail, outline))
        return records
    for position, event in table.iterrows():
        if position in answered:
            continue
        other, gap = near.get(position, (None, None))
        detail = covered_by if other is None else f"{gap:.0f} m from {other['_layer']} {other['_id']}; {covered_by}"
        records.append(
            _record(rule, event, other, event["_start"], event["_end"], detail, event.geometry.buffer(MARK_M))
        )
    return records


def too_long(rule: ConflictRule, table: gpd.GeoDataFrame) -> list[dict]:
    """Events lasting more than `max_days`; one without an end is not judged (its length is unknown)."""
    days = (table["_end"] - table["_start"]) / DAY
    return [
        _record(rule, event, None, event["_start"], event["_end"], f"{length:.1f} days (over {rule.max_days:g})",
                event.geometry.buffer(MARK_M))
        for (_, event), length in zip(table.iterrows(), days, strict=True)
        if pd.notna(length) and length > (rule.max_days or 0)
    ]  # fmt: skip


def after_resurfacing(rule: ConflictRule, table: gpd.GeoDataFrame, layers: dict[str, gpd.GeoDataFrame]) -> list[dict]:
    """Events within `within_m` of a resurfacing finished (its end, else its start) less than `years` before
    they start; the area is where their buffers meet."""
    assert rule.resurfaced is not None and rule.years is not None
    resurfaced = _selected([layers[name] for name in rule.resurfaced.layers if name in layers], {})
    found = _pairs(table, resurfaced, rule.resurfaced.within_m)
    records = []
    for left, right in zip(found.left, found.right, strict=True):
        event, road = table.iloc[left], resurfaced.iloc[right]
        done = road["_end"] if pd.notna(road["_end"]) else road["_start"]
        age = (event["_start"] - done) / DAY
        if 0 <= age < rule.years * 365.25:
            distance = rule.resurfaced.within_m
            area = event.geometry.buffer(distance).intersection(road.geometry.buffer(distance))
            detail = f"starts {age:.0f} days after the resurfacing (protected {rule.years:g} years)"
            records.append(_record(rule, event, road, event["_start"], event["_end"], detail, area))
    return records


def find_conflicts(spec: LayerSpec, catalog: Catalog, published: dict[str, gpd.GeoDataFrame]) -> Found:
    """Apply the rules of `spec` to the published layers (EPSG:4326 frames by layer id). A rule whose
    optional layers are absent, or whose layers are not published, is skipped and says why."""
    crs = local_metres(catalog.city.extent)
    layers = {
        layer_id: events(catalog[layer_id], frame, spec.parties.get(layer_id), crs)
        for layer_id, frame in published.items()
        if layer_id in catalog and catalog[layer_id].temporal is not None
    }
    found, records = Found(gpd.GeoDataFrame()), []
    for rule in spec.rules:
        unpublished = sorted((rule.named_layers - rule.optional_layers) - set(layers))
        optional = rule.optional_layers
        if optional and not optional & set(layers):
            absent = optional - set(catalog)
            found.skipped[rule.id] = f"{'no layer' if absent else 'not published'}: {', '.join(sorted(optional))}"
            continue
        if unpublished:
            found.skipped[rule.id] = f"not published: {', '.join(unpublished)}"
            continue
        table = _selected([layers[name] for name in rule.layers], rule.where)
        if rule.kind == "overlap":
            new = overlap(rule, table)
        elif rule.kind == "uncovered":
            new = uncovered(rule, table, layers)
        elif rule.kind == "too_long":
            new = too_long(rule, table)
        else:
            new = after_resurfacing(rule, table, layers)
        found.counts[rule.id] = len(new)
        records += new
    frame = gpd.GeoDataFrame(records, columns=[*CONFLICT_FIELDS, "geometry"], geometry="geometry", crs=crs)
    frame = frame.sort_values("conflict_id").reset_index(drop=True)
    frame["start_time"] = pd.to_datetime(frame["start_time"], utc=True)
    frame["end_time"] = pd.to_datetime(frame["end_time"], utc=True)
    found.frame = frame.to_crs("EPSG:4326")
    return found
