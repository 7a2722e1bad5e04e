"""Events near a point (active or upcoming at a moment) and the zones containing it, read from published layers."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
from shapely.geometry import Point, mapping

from layers.catalog import Catalog, LayerSpec
from layers.timewindow import active_clauses, as_date_text, zone
from server.access import Level, sees, visible_fields
from server.published import gpkg
from server.published.layer import LayerFileError, LayerMeta, open_version, read_meta
from server.published.sql import column, quote_identifier

LOGGER = logging.getLogger(__name__)
# domains whose layers are not events (zones answer for events, the register places them, conflicts pair them)
NOT_EVENTS = {"zones", "reference", "coordination"}
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Event:
    layer: LayerSpec
    id: str
    state: str  # "active" at the moment, or "upcoming"
    start: str
    end: str | None
    distance_m: float  # 0: the event covers the place
    properties: dict[str, Any]
    geometry: dict[str, Any]


@dataclass(frozen=True)
class Zone:
    layer: LayerSpec
    id: str
    properties: dict[str, Any]


def event_layers(catalog: Catalog, level: Level) -> list[LayerSpec]:
    return [s for s in catalog.values() if s.temporal and s.domain not in NOT_EVENTS and sees(level, s)]


def zone_layers(catalog: Catalog, level: Level) -> list[LayerSpec]:
    """Zone sets that answer for events (`responsibility:` in the catalog) first, then any other zone set."""
    zones = [s for s in catalog.values() if s.domain == "zones" and sees(level, s)]
    return sorted(zones, key=lambda s: s.responsibility is None)


@lru_cache(maxsize=64)
def _to_metres(lon: float, lat: float) -> Callable[[np.ndarray], np.ndarray]:
    """lon/lat coordinates to metres on an azimuthal equidistant projection at the place asked about: the
    distance of anything from the place is then true."""
    local = pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +units=m")
    transformer = pyproj.Transformer.from_crs("EPSG:4326", local, always_xy=True)

    def apply(coordinates: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coordinates[:, 0], coordinates[:, 1])
        return np.column_stack([x, y])

    return apply


def _box(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """A lon/lat box around the point safely larger than the radius (R-tree prefilter only)."""
    dlat = radius_m * 1.01 / METRES_PER_DEGREE + 1e-6
    dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def _value(kind: str, value: Any) -> Any:
    return bool(value) if kind == "boolean" and value is not None else value


def _unreadable(spec: LayerSpec, error: LayerFileError) -> str:
    LOGGER.error("/affects: %s left out: %s", spec.id, error)
    return spec.id


Where = Callable[[LayerMeta], list[tuple[str, Any]]]


def _rows(path: Path, spec: LayerSpec, box: tuple[float, ...], where: Where) -> tuple[LayerMeta, list]:
    """Rows (fid, geometry blob, columns...) of the layer's features whose box meets `box` and that pass the
    clauses `where` makes from the file's metadata."""
    connection, _ = open_version(str(path))
    try:
        meta = read_meta(connection, spec.id)
        conditions = where(meta)
        table, fid = quote_identifier(meta.table), column("t", meta.fid_column)
        names = ", ".join(column("t", c) for c in meta.columns)
        sql = f"SELECT {fid}, {column('t', meta.geometry_column)}, {names} FROM {table} AS t"
        params: list[Any] = []
        clauses = [clause for clause, _ in conditions]
        params += [value for _, value in conditions]
        if meta.rtree:
            sql += f" JOIN {quote_identifier(meta.rtree)} AS r ON r.id = {fid}"
            clauses += ["r.maxx >= ?", "r.minx <= ?", "r.maxy >= ?", "r.miny <= ?"]
            params += [box[0], box[2], box[1], box[3]]
        if clauses:
            sql += " WHERE " + " AND ".join(f"({c})" for c in clauses)
        return meta, connection.execute(sql, params).fetchall()
    except sqlite3.DatabaseError as exc:
        raise LayerFileError(f"{spec.id}: the published file cannot be read: {exc}") from None
    finally:
        connection.close()


def _published(spec: LayerSpec, layer_path: Callable[[str], Path]) -> Path | None:
    path = layer_path(spec.id)
    return path if path.exists() else None


def events_near(
    catalog: Catalog,
    layer_path: Callable[[str], Path],
    level: Level,
    place: tuple[float, float],
    at: str,
    radius_m: float,
    unreadable: list[str],
) -> list[Event]:
    """Events of every event layer this level sees that have not ended at `at` (stored UTC text) and lie within
    `radius_m` of `place`, nearest first within each start time. Fields are those the level sees. A layer whose
    file cannot be read is left out and named in `unreadable` (the answer says so)."""
    lon, lat = place
    to_metres = _to_metres(lon, lat)
    local = zone(catalog.city.timezone)
    box = _box(lon, lat, radius_m)
    found: list[Event] = []
    for spec in event_layers(catalog, level):
        path = _published(spec, layer_path)
        if path is None or spec.temporal is None:
            continue
        start, end = spec.temporal.start, spec.temporal.end

        # a date-typed layer stores local days: "not ended" compares with the day of `at` in the city
        def not_ended(meta: LayerMeta, start=start, end=end) -> list[tuple[str, Any]]:
            # the features API's own "active in the window", with the window open towards the future; a
            # date-typed layer stores local days, compared with the day of `at` in the city
            first = as_date_text(at, local) if meta.columns.get(start) == "date" else at
            return active_clauses(column("t", start), end and column("t", end), first, None)

        try:
            meta, rows = _rows(path, spec, box, not_ended)
        except LayerFileError as error:
            unreadable.append(_unreadable(spec, error))
            continue
        first = as_date_text(at, local) if meta.columns.get(start) == "date" else at
        shown = [f.name for f in visible_fields(spec, level) if f.name in meta.columns]
        names = list(meta.columns)
        for _fid, blob, *values in rows:
            geometry = gpkg.to_shapely(blob)
            if geometry is None:
                continue
            distance = shapely.distance(shapely.transform(geometry, to_metres), Point(0, 0))
            if distance > radius_m:
                continue
            record = dict(zip(names, values, strict=True))
            began = record[start]
            found.append(
                Event(
                    layer=spec,
                    id=str(record[spec.id_field]),
                    state="active" if began is not None and str(began) <= first else "upcoming",
                    start=began,
                    end=record[end] if end else None,
                    distance_m=round(float(distance), 1),
                    properties={n: _value(meta.columns[n], record[n]) for n in shown},
                    geometry=mapping(geometry),
                )
            )
    return sorted(found, key=lambda e: (e.state != "active", e.start or "", e.distance_m))


def zones_at(
    catalog: Catalog, layer_path: Callable[[str], Path], level: Level, place: tuple[float, float], unreadable: list[str]
) -> list[Zone]:
    """The zones of every zone layer this level sees that contain `place`, with the fields the level sees; a layer
    whose file cannot be read is named in `unreadable`."""
    point = Point(place)
    found = []
    for spec in zone_layers(catalog, level):
        path = _published(spec, layer_path)
        if path is None:
            continue
        try:
            meta, rows = _rows(path, spec, (*place, *place), lambda meta: [])
        except LayerFileError as error:
            unreadable.append(_unreadable(spec, error))
            continue
        shown = [f.name for f in visible_fields(spec, level) if f.name in meta.columns]
        names = list(meta.columns)
        for _fid, blob, *values in rows:
            geometry = gpkg.to_shapely(blob)
            if geometry is None or not geometry.intersects(point):
                continue
            record = dict(zip(names, values, strict=True))
            properties = {n: _value(meta.columns[n], record[n]) for n in shown}
            found.append(Zone(spec, str(record[spec.id_field]), properties))
    return found
