"""Vector tiles straight from the PostGIS store: one SQL statement per tile, `ST_AsMVT` per layer, concatenated.

The generalisation is server/tiles/render.py's, evaluated in SQL so both stores serve the same tiles feature for
feature (tests/test_postgis_tiles.py compares them):
- features meet the buffered tile when their exact Web Mercator box does (GiST `&&` on a lon/lat box first);
  Mercator by the spherical formulas, bit for bit what PROJ and the box index compute;
- below `full_detail_zoom`: every feature larger than a cell, and one small feature per cell of the global pixel
  grid, the largest then the lowest fid (`DISTINCT ON (cell) ORDER BY size DESC, fid`), points with
  `point_count` (`count(*) OVER (PARTITION BY cell)`); the buffer rounded up to whole cells;
- lines and polygons clipped to the buffered tile (`ST_ClipByBox2D`, GEOS's clip by rectangle as shapely's) and
  simplified with the same tolerance (`ST_Simplify` for lines, `ST_SimplifyPreserveTopology` for polygons);
- `ST_AsMVTGeom` then only maps to tile units and snaps to the integer grid (clip_geom false: clipped already);
- the time window is `active_clauses`, the attributes those the access level sees, dates and datetimes as the
  GeoPackage's text; a tile over the byte budget is redone with coarser cells, as there.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from layers.catalog import FieldSpec, LayerSpec
from layers.timewindow import Interval, active_clauses
from server.tiles.backend import TileBackend
from server.tiles.carry import changed_limit
from server.tiles.grid import MAX_LATITUDE
from server.tiles.index import mercator_bounds
from server.tiles.metadata import Bbox
from server.tiles.render import LayerSource, TileFrame, TilePolicy

LOGGER = logging.getLogger(__name__)

SCHEMA = "geoportal"  # assets/stores/postgis.py writes it
EARTH_RADIUS = 6378137.0  # EPSG:3857's sphere
DATETIME_TEXT = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'  # the GeoPackage's datetime storage (docs/contracts.md)

Versions = Callable[[], tuple[tuple[str, int], ...]]


def _mercator_x(lon: sql.Composable) -> sql.Composable:
    return sql.SQL("{} * radians({})").format(sql.Literal(EARTH_RADIUS), lon)


def _mercator_y(lat: sql.Composable) -> sql.Composable:
    clamped = sql.SQL("least(greatest({}, -%(max_lat)s), %(max_lat)s)").format(lat)
    return sql.SQL("{} * asinh(tan(radians({})))").format(sql.Literal(EARTH_RADIUS), clamped)


def _property(field: FieldSpec) -> sql.Composable:
    """The attribute as the GeoPackage holds it: dates and datetimes as their fixed-width text."""
    column = sql.SQL("t.{}").format(sql.Identifier(field.name))
    if field.type == "date":
        column = sql.SQL("to_char({}, 'YYYY-MM-DD')").format(column)
    elif field.type == "datetime":
        column = sql.SQL("to_char({} AT TIME ZONE 'UTC', {})").format(column, sql.Literal(DATETIME_TEXT))
    return sql.SQL("{} AS {}").format(column, sql.Identifier(field.name))


def _time_filter(spec: LayerSpec, when: Interval | None) -> sql.Composable:
    """`active_clauses` over the typed columns, the window's bounds cast to the column's type."""
    if when is None or spec.temporal is None:
        return sql.SQL("")
    start = spec.field(spec.temporal.start)
    end = spec.field(spec.temporal.end) if spec.temporal.end else None
    first = when.first_for((end or start).type == "date")
    last = when.last_for(start.type == "date")
    # active_clauses yields the `last` clause (on start) before the `first` one (on end, or start for instants)
    dates = [start.type == "date"] if last is not None else []
    dates += [(end or start).type == "date"] if first is not None else []
    column = lambda f: 't."' + f.name.replace('"', '""') + '"'  # noqa: E731 - an identifier, as sql.Identifier
    clauses = active_clauses(column(start), column(end) if end else None, first, last)
    return sql.Composed(
        sql.SQL(" AND " + clause.replace("{", "{{").replace("}", "}}").replace("?", "{}")).format(
            sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL("date" if is_date else "timestamptz"))
        )
        for (clause, value), is_date in zip(clauses, dates, strict=True)
    )


def _table(source: LayerSource) -> sql.Identifier:
    """The table holding the source's version: the layer's, or the one kept before it (`<layer>__previous`)."""
    return sql.Identifier(SCHEMA, source.spec.id + ("__previous" if source.previous else ""))


def _found(spec: LayerSpec, when: Interval | None, table: sql.Identifier) -> sql.Composable:
    """The features whose exact Mercator box meets the buffered tile, with that box (a point's is the point: one
    projection per row instead of four)."""
    if spec.geometry_type == "Point":
        x, y = _mercator_x(sql.SQL("ST_X(t.geom)")), _mercator_y(sql.SQL("ST_Y(t.geom)"))
        box = sql.SQL("{x} AS m_left, {y} AS m_bottom, {x} AS m_right, {y} AS m_top").format(x=x, y=y)
    else:
        box = sql.SQL("{} AS m_left, {} AS m_bottom, {} AS m_right, {} AS m_top").format(
            _mercator_x(sql.SQL("ST_XMin(t.geom)")),
            _mercator_y(sql.SQL("ST_YMin(t.geom)")),
            _mercator_x(sql.SQL("ST_XMax(t.geom)")),
            _mercator_y(sql.SQL("ST_YMax(t.geom)")),
        )
    return sql.SQL(
        "SELECT * FROM (SELECT t.fid, {box} FROM {table} t"
        " WHERE t.geom && ST_MakeEnvelope(%(west)s, %(south)s, %(east)s, %(north)s, 4326){time}) AS b"
        " WHERE b.m_right >= %(box_left)s AND b.m_left <= %(box_right)s"
        " AND b.m_top >= %(box_bottom)s AND b.m_bottom <= %(box_top)s"
    ).format(table=table, box=box, time=_time_filter(spec, when))


def _kept(spec: LayerSpec, when: Interval | None, table: sql.Identifier) -> sql.Composable:
    """render._thin in SQL: every large feature, the first small one per cell and (points) how many it stands for.
    A point is never larger than a cell and all points are equally large, so a point cell's first is its lowest
    fid: a hash aggregate, no sort. Cell keys are computed as render._thin computes them, operation for operation."""
    cells = (
        "WITH found AS ({found}), cells AS ("
        " SELECT fid, (m_right - m_left) + (m_top - m_bottom) AS size,"
        " (x1 - x0) < %(cell)s AND (y1 - y0) < %(cell)s AS small,"
        " floor((x0 + x1) / %(cell2)s) AS kx, floor((y0 + y1) / %(cell2)s) AS ky"
        " FROM (SELECT fid, m_left, m_bottom, m_right, m_top,"
        " (m_left - %(left)s) * %(scale)s AS x0, (m_right - %(left)s) * %(scale)s AS x1,"
        " (%(top)s - m_top) * %(scale)s AS y0, (%(top)s - m_bottom) * %(scale)s AS y1 FROM found) AS units)"
    )
    if spec.geometry_type == "Point":
        kept = " SELECT min(fid) AS fid, count(*) AS represented FROM cells GROUP BY kx, ky"
    else:
        kept = (
            " SELECT fid, 1::bigint AS represented FROM cells WHERE NOT small"
            " UNION ALL (SELECT DISTINCT ON (kx, ky) fid, 1::bigint FROM cells WHERE small"
            " ORDER BY kx, ky, size DESC, fid)"
        )
    return sql.SQL(cells + kept).format(found=_found(spec, when, table))


def _geometry(spec: LayerSpec) -> sql.Composable:
    """render.render_layer's geometry steps in the same coordinates: to tile units ((x - left) * scale, y down),
    clip to the buffered tile, simplify, then what the MVT encoder does (round half to even, drop repeated
    points; polygons valid and wound as the spec says). Not ST_AsMVTGeom: it clips and validates with wagyu,
    which keeps other vertices than GEOS does."""
    units = sql.SQL("ST_Scale(ST_Translate(ST_Transform(t.geom, 3857), -%(left)s, -%(top)s), %(scale)s, -%(scale)s)")
    if spec.geometry_type == "Point":
        return sql.SQL("ST_SnapToGrid({}, 1)").format(units)
    clipped = sql.SQL("ST_ClipByBox2D({}, ST_MakeEnvelope(%(low)s, %(low)s, %(high)s, %(high)s))").format(units)
    if spec.geometry_type != "MultiPolygon":
        return sql.SQL("ST_SnapToGrid(ST_Simplify({}, %(tolerance)s), 1)").format(clipped)
    snapped = sql.SQL("ST_SnapToGrid(ST_SimplifyPreserveTopology({}, %(tolerance)s), 1)").format(clipped)
    return sql.SQL(
        "(SELECT ST_ForcePolygonCCW(CASE WHEN ST_IsValid(g) THEN g ELSE ST_CollectionExtract(ST_MakeValid(g), 3) END)"
        " FROM (SELECT {} AS g) AS snapped)"
    ).format(snapped)


def layer_mvt(source: LayerSource, when: Interval | None, thinning: bool) -> sql.Composable:
    """One source-layer of the tile as an MVT layer (empty bytes when no feature is left)."""
    spec = source.spec
    columns = [sql.SQL("t.fid"), *(_property(f) for f in source.fields)]
    if thinning and spec.geometry_type == "Point":
        columns.append(sql.SQL("k.represented AS point_count"))
    columns.append(sql.SQL("{} AS geom").format(_geometry(spec)))
    table = _table(source)
    if thinning:
        rows = sql.SQL("SELECT {} FROM ({}) AS k JOIN {} t ON t.fid = k.fid").format(
            sql.SQL(", ").join(columns), _kept(spec, when, table), table
        )
    else:
        rows = sql.SQL("SELECT {} FROM ({}) AS k JOIN {} t ON t.fid = k.fid").format(
            sql.SQL(", ").join(columns), _found(spec, when, table), table
        )
    return sql.SQL(
        "(SELECT ST_AsMVT(mvt, {}, %(extent)s, 'geom', 'fid' ORDER BY mvt.fid) FROM ({}) AS mvt"
        " WHERE NOT ST_IsEmpty(geom))"
    ).format(sql.Literal(spec.id), rows)


def tile_statement(sources: Sequence[LayerSource], when: Interval | None, thinning: bool) -> sql.Composable:
    """The tile (the layers' MVTs concatenated, in order) and the versions it was read from, in one snapshot: per
    `<layer>/<slot>` (`current`, or `previous` for a source read from the version kept before it)."""
    layers = sql.SQL(" || ").join(layer_mvt(s, when, thinning) for s in sources) if sources else sql.SQL("''::bytea")
    return sql.SQL(
        "SELECT {}, (SELECT coalesce(json_object_agg(layer_id || '/' || slot, version), '{{}}') FROM {}"
        " WHERE layer_id = ANY(%(layers)s))"
    ).format(layers, sql.Identifier(SCHEMA, "publications"))


def tile_parameters(frame: TileFrame, policy: TilePolicy, coarsen: int, thinning: bool) -> dict[str, Any]:
    """render.render_layer's numbers: cell, buffer rounded to cells at thinned zooms, boxes, tolerance."""
    pixel = policy.extent / 256
    cell = policy.thin_cell_px * pixel * coarsen
    buffer = math.ceil(policy.buffer / cell) * cell if thinning else policy.buffer
    west, south, east, north = frame.lonlat_box(buffer)
    box_left, box_bottom, box_right, box_top = frame.mercator_box(buffer)
    pad = 1e-9  # degrees: the GiST pre-filter must not miss a feature the exact test keeps
    return {
        "west": west - pad, "south": south - pad, "east": east + pad, "north": north + pad,
        "box_left": box_left, "box_bottom": box_bottom, "box_right": box_right, "box_top": box_top,
        "left": frame.left, "bottom": frame.bottom, "right": frame.right, "top": frame.top,
        "scale": frame.scale, "extent": policy.extent, "max_lat": MAX_LATITUDE,
        "cell": cell, "cell2": 2 * cell,
        "low": -buffer, "high": policy.extent + buffer,
        "tolerance": policy.simplify_px * pixel * (coarsen if thinning else 1),
    }  # fmt: skip


class PostGISTiles:
    """The PostGIS store's TileBackend: identities are the registry's versions the store last read (every request
    reads them for its signature), tiles one statement each on a connection per thread. While the database cannot
    be reached, tiles come from `fallback` (the store's local copies of the last versions), uncached."""

    # rendered in the database's processes (this one waits on the socket): a few at once use its cores
    renders_at_once = min(4, os.cpu_count() or 1)

    def __init__(self, url: str, versions: Versions, known: Versions, fallback: TileBackend | None = None):
        self.url = url
        self._versions = versions  # reads the registry now
        self._known = known  # the versions read last, no query
        self.fallback = fallback
        self._local = threading.local()
        self._bounds: dict[tuple[str, int], Bbox | None] = {}
        self._away = False
        self._database: str | None = None
        self._last_known: tuple = ()
        self._last_versions: dict[str, int] = {}

    def _connection(self) -> psycopg.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.broken:
            connection = self._local.connection = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            # JIT compiles each tile's expressions anew (0.7 s measured on 300k points, more than the work); cell
            # sorts of a low-zoom tile fit in memory instead of spilling to disk
            connection.execute("SET jit = off")
            connection.execute("SET work_mem = '64MB'")
        return connection

    def identity(self, layer_id: str) -> Hashable | None:
        known = self._known()
        if known is not self._last_known:  # a new reading of the registry: index it once, not once per layer
            self._last_known, self._last_versions = known, dict(known)
        return self._last_versions.get(layer_id)

    def namespace(self, ask: bool = True) -> str | None:
        """Which database the versions number (the shared tile store's namespace): versions never repeat within
        one, but a database created again, or a new cluster, starts its sequence anew. The cluster's system
        identifier (random at initdb; the server's start time where the role may not read it) and the database's
        and registry's oids; None until reached once (`ask` False: not asked now, as on the event loop)."""
        if self._database is None and ask:
            oids = (
                f" || '/' || d.oid::text || '/' || to_regclass('{SCHEMA}.publications')::oid::text FROM pg_database d"
                " WHERE d.datname = current_database()"
            )
            clusters = ("(SELECT system_identifier FROM pg_control_system())::text", "pg_postmaster_start_time()::text")
            for cluster in clusters:
                try:
                    (self._database,) = self._connection().execute("SELECT " + cluster + oids).fetchone()
                    break
                except psycopg.errors.InsufficientPrivilege:
                    continue
                except psycopg.Error:
                    self._local.connection = None
                    return None
        return self._database

    def poll(self) -> None:
        self._versions()

    def bounds(self, layer_id: str) -> Bbox | None:
        version = self.identity(layer_id)
        if version is None:
            return None
        key = (layer_id, version)
        if key not in self._bounds:
            query = f"SELECT min_x, min_y, max_x, max_y FROM {SCHEMA}.publications WHERE layer_id = %s AND version = %s"
            try:
                row = self._connection().execute(query, (layer_id, version)).fetchone()
            except psycopg.OperationalError:
                self._local.connection = None
                return self.fallback.bounds(layer_id) if self.fallback else None
            self._bounds[key] = tuple(row) if row and None not in row else None  # type: ignore[assignment]
        return self._bounds[key]

    def source(self, spec: LayerSpec, fields: tuple[FieldSpec, ...], version: Hashable = None) -> LayerSource:
        """The layer's table, or for a version before the served one, `<layer>__previous` (which `render` checks
        still holds it: a second publication since moves another version there)."""
        current = self.identity(spec.id)
        if version is None or version == current:
            return LayerSource(spec, None, fields, current)
        return LayerSource(spec, None, fields, version, previous=True)

    def changed_boxes(self, spec: LayerSpec, old: object, new: Hashable) -> np.ndarray | None:
        """The served table and the `__previous` one the store keeps for rollback compared by fid, in one snapshot
        with the registry, which must say they are versions `new` and `old`. Each side is one sequential scan
        hashing every row (geometry and catalog fields, `hash_record_extended`: 64 bits, PostgreSQL 14+), joined by
        hash on fid: the Z-ordered tables make a merge join over the primary keys read the heap at random (6-7 s
        at 1M against ~2 s); a changed row hashing alike by chance (2^-64 per row) is what this accepts."""
        if not isinstance(old, int) or not isinstance(new, int):
            return None
        row = sql.SQL("hash_record_extended(ROW(geom::bytea{}), 0)").format(
            sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(f.name)) for f in spec.fields)
        )
        current, previous = sql.Identifier(SCHEMA, spec.id), sql.Identifier(SCHEMA, spec.id + "__previous")
        differing = sql.SQL(
            "SELECT coalesce(n.fid, o.fid) FROM (SELECT fid, {row} AS h FROM {current}) AS n"
            " FULL JOIN (SELECT fid, {row} AS h FROM {previous}) AS o ON o.fid = n.fid"
            " WHERE n.h IS DISTINCT FROM o.h LIMIT %s"
        ).format(row=row, current=current, previous=previous)
        box = "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM {} WHERE fid = ANY(%(fids)s)"
        boxes = sql.SQL(box + " UNION ALL " + box).format(current, previous)
        try:
            connection = self._connection()
            with connection.transaction():
                connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                connection.execute("SET LOCAL enable_mergejoin = off")
                slots = dict(
                    connection.execute(
                        sql.SQL("SELECT slot, array[version, features] FROM {} WHERE layer_id = %s").format(
                            sql.Identifier(SCHEMA, "publications")
                        ),
                        (spec.id,),
                    ).fetchall()
                )
                if [v[0] for v in (slots.get("current"), slots.get("previous")) if v] != [new, old]:
                    return None  # another publication (or a rollback) since: `__previous` is not `old`
                limit = changed_limit(slots["current"][1])
                fids = [fid for (fid,) in connection.execute(differing, (limit + 1,)).fetchall()]
                if len(fids) > limit:
                    return None
                rows = connection.execute(boxes, {"fids": fids}).fetchall() if fids else []
        except psycopg.OperationalError:
            self._local.connection = None
            return None
        except psycopg.Error:
            return None  # another schema (a column added or gone), or PostgreSQL before 14: render anew
        lonlat = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64).reshape(-1, 4)
        lonlat = lonlat[~np.isnan(lonlat).any(axis=1)]  # an empty geometry has no box
        return np.column_stack(mercator_bounds(*lonlat.T)) if len(lonlat) else np.empty((0, 4))

    def render(
        self, sources: Sequence[LayerSource], z: int, x: int, y: int, *, when: Interval | None, policy: TilePolicy
    ) -> tuple[bytes, bool]:
        try:
            rendered = self._render(sources, z, x, y, when, policy)
        except psycopg.errors.UndefinedTable:
            if any(s.previous for s in sources):  # no version kept before the served one (any more): not cacheable
                return b"", False
            raise
        except psycopg.OperationalError as error:
            self._local.connection = None
            if not self._away:  # once per outage
                LOGGER.error("tiles: PostGIS unreachable, rendering from the local copies: %s", error)
            self._away = True
            if self.fallback is None:
                raise
            local = [self.fallback.source(s.spec, s.fields) for s in sources if self.fallback.identity(s.spec.id)]
            return self.fallback.render(local, z, x, y, when=when, policy=policy)[0], False
        if self._away:
            LOGGER.warning("tiles: PostGIS reachable again")
        self._away = False
        return rendered

    def _render(
        self, sources: Sequence[LayerSource], z: int, x: int, y: int, when: Interval | None, policy: TilePolicy
    ) -> tuple[bytes, bool]:
        frame = TileFrame.of(z, x, y, policy.extent)
        active = [s for s in sources if z >= s.spec.style.min_zoom]
        thinning = z < policy.full_detail_zoom
        statement = tile_statement(active, when, thinning)
        coarsen = 1
        for attempt in range(policy.budget_tries + 1):
            parameters = tile_parameters(frame, policy, coarsen, thinning)
            parameters["layers"] = [s.spec.id for s in active]
            data, versions = self._connection().execute(statement, parameters).fetchone()
            data = bytes(data)
            if len(data) <= policy.budget_bytes or not thinning or attempt == policy.budget_tries:
                break
            coarsen *= 2
        asked = {f"{s.spec.id}/{'previous' if s.previous else 'current'}": s.version for s in active}
        return data, asked == {slot: versions.get(slot) for slot in asked}
