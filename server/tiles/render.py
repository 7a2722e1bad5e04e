"""Render one Mapbox Vector Tile from published GeoPackages: box query, thinning, clip, simplify, encode."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import morecantile
import numpy as np
import shapely
from mapbox_vector_tile.encoder import on_invalid_geometry_make_valid
from pyproj import Transformer

from layers.catalog import FieldSpec, LayerSpec
from layers.timewindow import Interval, active_clauses
from server import access
from server.published import files
from server.published.sql import quote_identifier
from server.tiles import mvt
from server.tiles.blobs import point_coordinates, shapely_geometries
from server.tiles.grid import MAX_LATITUDE, TMS, WORLD_HALF
from server.tiles.index import LayerIndex, epoch_ms, load_index, mercator_bounds

_local = threading.local()  # pyproj transformers are not safe to share between threads


@dataclass(frozen=True)
class TilePolicy:
    """How much a tile is generalised. Pixels are those of a 256-px tile (extent / 256 tile units)."""

    extent: int = 4096
    buffer: int = 64  # tile units drawn beyond the edge, so strokes and circles are not cut at tile seams
    full_detail_zoom: int = 14  # from this zoom on, every feature is in the tile and nothing is thinned
    thin_cell_px: int = 8  # below it: one small feature per cell of this many pixels (power of two)
    simplify_px: float = 0.5  # Douglas-Peucker tolerance: below what anyone sees on screen
    budget_bytes: int = 500_000  # a thinned tile above this is redone with cells and tolerance doubled
    budget_tries: int = 3


@dataclass(frozen=True)
class LayerSource:
    """One source-layer of a tile: the catalog layer, its published file (None where a store renders it from its
    own tables) and the attributes to carry."""

    spec: LayerSpec
    path: Path | None
    fields: tuple[FieldSpec, ...]
    version: object = None  # the store's version of the layer the tile is keyed by
    # read from the version the store keeps before the current one (PostGIS: `<layer>__previous`), the one whose
    # tiles are still answered while the new version's are prepared (server/tiles/vector.py, `switch_seconds`)
    previous: bool = False


@dataclass(frozen=True)
class TileFrame:
    """A tile's Web Mercator bounds (from morecantile) and the mapping to tile units, y pointing down."""

    z: int
    x: int
    y: int
    left: float
    bottom: float
    right: float
    top: float
    extent: int

    @classmethod
    def of(cls, z: int, x: int, y: int, extent: int) -> TileFrame:
        bounds = TMS.xy_bounds(morecantile.Tile(x, y, z))
        return cls(z, x, y, bounds.left, bounds.bottom, bounds.right, bounds.top, extent)

    @property
    def scale(self) -> float:
        return self.extent / (self.right - self.left)

    def units(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mx, my = _mercator().transform(lon, np.clip(lat, -MAX_LATITUDE, MAX_LATITUDE))
        return (np.asarray(mx) - self.left) * self.scale, (self.top - np.asarray(my)) * self.scale

    def mercator_box(self, buffer_units: float) -> tuple[float, float, float, float]:
        pad = buffer_units / self.scale
        return self.left - pad, self.bottom - pad, self.right + pad, self.top + pad

    def lonlat_box(self, buffer_units: float) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the tile grown by `buffer_units`, for the R-tree query."""
        # Clamped to the world first: past the antimeridian the inverse would wrap round to the other side.
        left, bottom, right, top = (min(max(v, -WORLD_HALF), WORLD_HALF) for v in self.mercator_box(buffer_units))
        west, south = _mercator().transform(left, bottom, direction="INVERSE")
        east, north = _mercator().transform(right, top, direction="INVERSE")
        return west, south, east, north


def _mercator() -> Transformer:
    transformer = getattr(_local, "mercator", None)
    if transformer is None:
        transformer = _local.mercator = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    return transformer


def visible_fields(spec: LayerSpec, staff: bool, names: Sequence[str] | None = None) -> tuple[FieldSpec, ...]:
    """The attributes a caller may see in tiles: non-internal fields (all for staff), narrowed to `names`."""
    allowed = access.visible_fields(spec, access.level_of_staff(staff))
    return tuple(f for f in allowed if names is None or f.name in names)


def connect(path: Path) -> sqlite3.Connection:
    return files.connect(path, immutable=True)


def _temporal_filter(spec: LayerSpec, when: Interval | None, alias: str) -> tuple[str, list[str]]:
    """`start <= t_end AND (end IS NULL OR end >= t_start)`, as the features API filters; a layer without
    an end field holds instants. Date fields compare with the date part (string order is time order)."""
    if when is None or spec.temporal is None:
        return "", []
    start, end = spec.field(spec.temporal.start), spec.field(spec.temporal.end) if spec.temporal.end else None
    first = when.first_for((end or start).type == "date")
    last = when.last_for(start.type == "date")
    sql = lambda field: f"{alias}.{quote_identifier(field.name)}"  # noqa: E731
    clauses = active_clauses(sql(start), sql(end) if end else None, first, last)
    return "".join(f" AND {clause}" for clause, _ in clauses), [value for _, value in clauses]


def _epoch_ms(when: Interval | None, dates: bool) -> tuple[int | None, int | None] | None:
    """The filter as epoch-ms bounds for the box index; for date fields, the local days' first/last ms."""
    if when is None:
        return None
    as_ms = lambda text: None if text is None else int(epoch_ms([text])[0])
    if not dates:
        return as_ms(when.start), as_ms(when.end)
    last = as_ms(when.end_day)
    return as_ms(when.start_day), None if last is None else last + 86_400_000 - 1


def _thin(
    index: LayerIndex, frame: TileFrame, buffer: float, cell: float, when: Interval | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep every feature larger than a cell, and one small feature per cell: the first in index order
    (largest, then lowest fid), so neighbouring tiles pick the same one in their shared buffer. Cells are
    aligned to the global pixel grid. Returns kept ids and how many features each stands for."""
    found = index.select(frame.mercator_box(buffer), _epoch_ms(when, index.dates))
    scale = frame.scale
    x0, x1 = (index.left[found] - frame.left) * scale, (index.right[found] - frame.left) * scale
    y0, y1 = (frame.top - index.top[found]) * scale, (frame.top - index.bottom[found]) * scale
    small = ((x1 - x0) < cell) & ((y1 - y0) < cell)
    column = np.floor((x0 + x1) / (2 * cell)).astype(np.int64)
    keys = column * 1_000_003 + np.floor((y0 + y1) / (2 * cell)).astype(np.int64)
    positions = np.flatnonzero(small)
    order = np.argsort(keys[positions], kind="stable")  # stable: index order decides within a cell
    sorted_keys = keys[positions][order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    counts = np.diff(np.append(np.flatnonzero(first), len(order)))
    kept = np.concatenate([index.ids[found[~small]], index.ids[found[positions[order[first]]]]])
    return kept, np.concatenate([np.ones(int((~small).sum()), dtype=np.int64), counts])


def _rows(
    db: sqlite3.Connection, source: LayerSource, box: tuple, when: Interval | None, ids: np.ndarray | None
) -> list[tuple]:
    table, rtree = quote_identifier(source.spec.id), quote_identifier(f"rtree_{source.spec.id}_geom")
    columns = "".join(f", t.{quote_identifier(f.name)}" for f in source.fields)
    if ids is not None:  # already filtered (bbox, time, thinning): fetch by id
        sql = f"SELECT t.fid, t.geom{columns} FROM {table} t WHERE t.fid IN (SELECT value FROM json_each(?))"
        return db.execute(sql, [json.dumps(ids.tolist())]).fetchall()
    temporal, params = _temporal_filter(source.spec, when, "t")
    west, south, east, north = box
    sql = (
        f"SELECT t.fid, t.geom{columns} FROM {table} t WHERE t.fid IN (SELECT id FROM {rtree}"
        f" WHERE minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?){temporal}"
    )
    return db.execute(sql, [east, west, north, south, *params]).fetchall()


def _meeting(bounds: np.ndarray, box: tuple) -> np.ndarray:
    """Whether each feature's exact Mercator box (from its lon/lat `bounds`, n x 4) meets `box` (as the box index and
    the PostGIS renderer select)."""
    left, bottom, right, top = mercator_bounds(*bounds.T)
    return (right >= box[0]) & (left <= box[2]) & (top >= box[1]) & (bottom <= box[3])


@dataclass(frozen=True)
class LayerFeatures:
    """The features of one source-layer in one tile, column by column: ids, geometries in tile units (shapely, or
    for plain points an n x 2 array), and per property (in each feature's property order) its values, None where a
    feature has none."""

    ids: np.ndarray
    geometries: np.ndarray
    columns: list[tuple[str, Sequence]]

    def as_dicts(self) -> list[dict[str, Any]]:
        """mapbox-vector-tile's feature dicts (what the encoder is handed where mvt.py does not encode a layer)."""
        geometries = self.geometries if self.geometries.dtype == object else shapely.points(self.geometries)
        features = []
        for i, geometry in enumerate(geometries):
            properties: dict[str, Any] = {}
            for name, values in self.columns:
                if values[i] is not None:
                    properties[name] = values[i]
            features.append({"geometry": geometry, "properties": properties, "id": int(self.ids[i])})
        return features


def _to_tile_units(geometries: np.ndarray, frame: TileFrame) -> np.ndarray:
    def project(coords: np.ndarray) -> np.ndarray:
        ux, uy = frame.units(coords[:, 0], coords[:, 1])
        return np.column_stack([ux, uy])

    return shapely.transform(geometries, project)


def render_layer(
    db: sqlite3.Connection,
    source: LayerSource,
    frame: TileFrame,
    when: Interval | None,
    policy: TilePolicy,
    coarsen: int = 1,
    index: LayerIndex | None = None,
) -> LayerFeatures | None:
    """The features of one source-layer in one tile, in tile units; None when there are none."""
    spec, pixel = source.spec, policy.extent / 256
    thinning = frame.z < policy.full_detail_zoom
    cell = policy.thin_cell_px * pixel * coarsen
    # At thinned zooms the query box ends on cell boundaries, so a buffer cell is seen whole, as by its owner.
    buffer = math.ceil(policy.buffer / cell) * cell if thinning else policy.buffer
    box = frame.lonlat_box(buffer)
    counts: dict[int, int] = {}
    ids = None
    if thinning:
        ids, represented = _thin(index or load_index(db, spec), frame, buffer, cell, when)
        if not len(ids):
            return None
        if spec.geometry_type == "Point":
            counts = dict(zip(ids.tolist(), represented.tolist(), strict=True))
    rows = _rows(db, source, box, when, ids)
    if not rows:
        return None
    fids, blobs, *values = zip(*rows, strict=True)
    xy = point_coordinates(blobs) if spec.geometry_type == "Point" else None
    if xy is not None:  # plain points (all of a point layer, as published): read as numbers, not built by GEOS
        keep = np.ones(len(rows), dtype=bool)
        if not thinning:  # the R-tree's float32 boxes reach a little beyond the box: keep what exactly meets it
            keep = _meeting(np.column_stack([xy, xy]), frame.mercator_box(buffer))
            xy = xy[keep]
        if not len(xy):
            return None
        geometries = np.column_stack(frame.units(xy[:, 0], xy[:, 1]))
        shown = np.ones(len(geometries), dtype=bool)
    else:
        geometries = shapely_geometries(blobs)
        keep = np.ones(len(rows), dtype=bool)
        if not thinning:
            keep = _meeting(shapely.bounds(geometries), frame.mercator_box(buffer))
            geometries = geometries[keep]
        geometries = _to_tile_units(geometries, frame)
        low, high = -buffer, policy.extent + buffer
        if spec.geometry_type != "Point":  # points come from the R-tree box, which is the buffered tile already
            geometries = shapely.clip_by_rect(geometries, low, low, high, high)
            tolerance = policy.simplify_px * pixel * (coarsen if thinning else 1)
            topology = spec.geometry_type == "MultiPolygon"
            geometries = shapely.simplify(geometries, tolerance, preserve_topology=topology)
        shown = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
        if not shown.any():
            return None
    if shown.all() and keep.all():  # every row: the columns as fetched
        shown_ids = list(fids)
        columns = [
            (field.name, [None if v is None else bool(v) for v in column] if field.type == "boolean" else column)
            for field, column in zip(source.fields, values, strict=True)
        ]
    else:
        rows_shown = np.flatnonzero(keep)[shown].tolist()
        shown_ids = [fids[i] for i in rows_shown]
        columns = []
        for field, column in zip(source.fields, values, strict=True):
            if field.type == "boolean":
                columns.append((field.name, [None if (v := column[i]) is None else bool(v) for i in rows_shown]))
            else:
                columns.append((field.name, [column[i] for i in rows_shown]))
        geometries = geometries[shown]
    if counts:
        columns.append(("point_count", [counts.get(fid, 1) for fid in shown_ids]))
    return LayerFeatures(np.array(shown_ids, dtype=np.int64), geometries, columns)


def render_tile(
    sources: Sequence[LayerSource],
    z: int,
    x: int,
    y: int,
    *,
    when: Interval | None = None,
    policy: TilePolicy = TilePolicy(),
    index_of: Callable[[LayerSource], LayerIndex] | None = None,
) -> bytes:
    """An uncompressed MVT with one source-layer per source that has features here (empty layers are left out).

    A thinned tile over `policy.budget_bytes` is rendered again with coarser cells and tolerance, up to
    `policy.budget_tries` times; tiles at `policy.full_detail_zoom` and above keep every feature whatever
    their size. `index_of` gives a layer's box index for thinning (built from the file when not given)."""
    frame = TileFrame.of(z, x, y, policy.extent)
    active = [s for s in sources if z >= s.spec.style.min_zoom]
    connections = {s.spec.id: connect(s.path) for s in active if s.path is not None}
    try:
        coarsen = 1
        for attempt in range(policy.budget_tries + 1):
            layers = []
            for source in active:
                index = index_of(source) if index_of and z < policy.full_detail_zoom else None
                features = render_layer(connections[source.spec.id], source, frame, when, policy, coarsen, index)
                if features is not None:
                    layers.append((source.spec.id, features))
            data = _encode(layers, active, policy)
            if len(data) <= policy.budget_bytes or z >= policy.full_detail_zoom or attempt == policy.budget_tries:
                return data
            coarsen *= 2
    finally:
        for db in connections.values():
            db.close()
    raise AssertionError("unreachable")


def _encode(layers: list[tuple[str, LayerFeatures]], sources: Sequence[LayerSource], policy: TilePolicy) -> bytes:
    """The tile's layers one after the other (a tile's layers field concatenates): points and lines by mvt.py,
    polygons (winding order, repairs) and whatever mvt.py does not take by mapbox-vector-tile."""
    polygons = {s.spec.id for s in sources if s.spec.geometry_type == "MultiPolygon"}
    encoded = []
    for name, features in layers:
        names = [column for column, _ in features.columns]
        data = None
        if name not in polygons and len(set(names)) == len(names):
            data = mvt.encode_layer(name, features.ids, features.geometries, features.columns, policy.extent)
        if data is None:
            data = mapbox_vector_tile.encode(
                [{"name": name, "features": features.as_dicts()}],
                # Winding order and validity only matter (and only cost) for polygons.
                per_layer_options={name: {"check_winding_order": name in polygons}},
                default_options={
                    "extents": policy.extent,
                    "y_coord_down": True,
                    "on_invalid_geometry": on_invalid_geometry_make_valid,
                },
            )
        encoded.append(data)
    return b"".join(encoded)  # no layers: the empty protobuf message, a valid tile with no layers
