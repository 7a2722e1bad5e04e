"""`GeoPackageProvider`: pygeoapi feature provider for our published GeoPackages, on plain sqlite3.

Config (pygeoapi resource `providers:` entry):
    name: server.features.provider.GeoPackageProvider
    type: feature
    data: data/published/repairs.gpkg
    table: repairs                  # = layer id
    id_field: fid                   # default; or an exposed property
    time_field: start_time          # optional; datetime= works against it
    time_end_field: end_time        # optional; null -> features are instants
    timezone: Asia/Irkutsk          # optional; the zone dates in datetime= are local days of (UTC)
    properties: [permit_id, ...]    # required: the only fields ever returned, filtered or sorted on
    storage_crs: http://www.opengis.net/def/crs/OGC/1.3/CRS84
    crs: [CRS84, EPSG:4326, EPSG:3857 and CITY МСК URIs]

Construction reads nothing; every call opens its own read-only connection, so providers are cheap
per request, threads share nothing but small locked caches, and a republished file is used at once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderItemNotFoundError,
    ProviderQueryError,
    SchemaType,
)

from layers.timewindow import TimeQueryError, zone
from server.errors import BadRequest
from server.features import paging
from server.features.connections import POOL
from server.features.crs import CRS84, bbox_to_lonlat
from server.features.dialect import SQLITE
from server.features.filter_sql import FilterError
from server.features.json_rows import json_properties, read_as_json
from server.features.output import JSON_SCHEMA, RowLayout, render
from server.features.point_index import PointIndex, lone_box, page, point_rectangle
from server.features.point_reads import POINT_INDEXES, geopackage_points
from server.features.query import (
    ALIAS,
    Conditions,
    Ordering,
    QueryInputError,
    TimeWindow,
    conditions,
    count_statement,
    ordering,
    queryables,
    rows_read,
    seek_after,
    spatial_fragments,
    window_counts,
)
from server.features.row_cache import ROWS, assembled
from server.features.time_ranks import TIME_RANKS
from server.published.files import FileIdentity, file_identity
from server.published.gpkg import GeometryBlobError, points_xy, to_shapely_many
from server.published.layer import (
    FileVersion,
    LayerFileError,
    LayerMeta,
    LruCache,
    current_meta,
    kept_meta,
    layer_meta,
)
from server.published.sql import Fragment, all_of, column, quote_identifier
from server.published.stored_arrays import derived

LOGGER = logging.getLogger(__name__)
FID = "fid"
# A light page (light_page): a 0.01 deg bbox of 1M points over a city reads ~550 rows and costs ~1 ms
LIGHT_LIMIT = 100
LIGHT_ROWS = 4000
# An instant page (instant_page): a light page answered from the point index held, reading this many rows by fid
INSTANT_ROWS = 20
_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
_FEATURES_3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
_queryables = LruCache(64)  # a LayerMeta's queryables per provider class and exposed fields
_fid_orders = LruCache(64)  # a LayerMeta's order by fid alone (a plain page's) per dialect: made once, its SQL too
_rows_by_fid = LruCache(256)  # a LayerMeta's (layout, SQL) of a page by fid per provider class, fields, row count
# (version key, start field, end field) -> whether some feature lacks a start or ends before it starts. A fact of the
# file version, kept apart from the counts of queries (server.features.paging): among those, a map's bbox requests
# pushed it out within a second, and the read-ahead (every 5 s) ran it again on the whole table (1M: 0.2-0.3 s of CPU)
_ends_before_start_of = LruCache(64)
# What this provider evaluates correctly (tests/test_provider.py), given the server parses `filter`
# text with server.features.filter_sql.parse_cql2_text (pygeoapi 0.21's own ECQL parser rejects S_INTERSECTS, DATE(),
# CASEI()) and hands CQL2 JSON to pygeofilter's cql2_json parser. Left out on purpose: temporal-functions
# (pygeofilter turns T_INTERSECTS into T_OVERLAPS and cannot parse INTERVAL in text), accent-insensitive
# comparison (its JSON form does not parse), arithmetic (no % or div), functions and arrays.
FILTER_CONFORMANCE = [
    _FEATURES_3 + "filter",
    _FEATURES_3 + "features-filter",
    _CQL2 + "cql2-text",
    _CQL2 + "cql2-json",
    _CQL2 + "basic-cql2",
    _CQL2 + "advanced-comparison-operators",
    _CQL2 + "case-insensitive-comparison",
    _CQL2 + "basic-spatial-functions",
    _CQL2 + "basic-spatial-functions-plus",
    _CQL2 + "spatial-functions",
    _CQL2 + "property-property",
]


class InvalidQueryError(ProviderQueryError):
    """Bad client input. pygeoapi's ProviderQueryError alone is a 500 with a generic text; this is a
    400 whose message the client sees."""

    http_status_code = HTTPStatus.BAD_REQUEST
    ogc_exception_code = "InvalidParameterValue"

    def __init__(self, msg: str):
        super().__init__(msg, user_msg=msg)


class NotInstant(Exception):
    """An instant query (`query(instant=True)`, asked on the event loop) that only SQL could answer: the file changed
    since the page was judged instant, or the index went. The caller reads it off the loop."""


@dataclass(frozen=True)
class InstantPage:
    """A page `instant_page` judged to answer from a point index held, with what it judged on: the file version, its
    metadata, that version's index, the rectangle and the page. `read` answers from exactly these, so the page is
    judged once (one stat, one rectangle) and not again by `query`'s conditions, connection and index lookups."""

    provider: GeoPackageProvider  # whose file it reads (a PostGIS layer's: its local copy's provider)
    version: FileVersion
    meta: LayerMeta
    index: PointIndex
    box: tuple[float, float, float, float]
    offset: int
    limit: int

    def read(self, crs_transform_spec: Any = None, json_text: bool = False) -> dict:
        """The page as `query` gives it for the same lone bbox, offset and limit (all fields, geometry); NotInstant
        when no connection to the version judged can be had without reading the file again (it was replaced).
        `json_text`: a feature's properties may be the JSON text SQLite wrote of them (an orjson.Fragment: for a
        caller that writes the page with orjson, as server.features.json_rows says when)."""
        return self.provider._read_instant(self, crs_transform_spec, json_text)


class ReadErrors:
    """GeoPackageProvider._read_errors's context: a class, not a generator (asked by every small bbox)."""

    __slots__ = ("table", "path")

    def __init__(self, table: str, path: str):
        self.table, self.path = table, path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None and issubclass(kind, LayerFileError):
            LOGGER.error("%s: %s", self.table, error)
            raise ProviderConnectionError(str(error)) from None
        if kind is not None and issubclass(kind, (sqlite3.DatabaseError, GeometryBlobError)):
            LOGGER.error("%s: reading %s failed: %s", self.table, self.path, error)
            raise ProviderConnectionError(f"cannot read {self.table}: {error}") from None


class GeoPackageProvider(BaseProvider):
    """OGC API Features over one table of a contract GeoPackage (see docs/contracts.md)."""

    FILTER_CONFORMANCE = FILTER_CONFORMANCE  # read from the instance by the server's conformance page
    plain_pages = True  # a plain public page may be answered before the stack (server/ogcapi/plain_items.py)
    dialect = SQLITE  # the engine's SQL (server.features.dialect); a subclass over another engine swaps the hooks
    decode_geometries = staticmethod(to_shapely_many)  # the geometry column as it comes out of _geometry_sql
    decode_points = staticmethod(points_xy)  # the same column when it holds only points (output.render)

    def __init__(self, provider_def: Mapping[str, Any]):
        super().__init__(provider_def)
        self.path = str(self.data)
        self.table = provider_def.get("table")
        if not self.table:
            raise ProviderConnectionError(f"provider for {self.path}: 'table' (the layer id) is required")
        # Fail closed: without an explicit list every column, internal ones included, would be public.
        exposed = provider_def.get("properties")
        if not isinstance(exposed, list) or not all(isinstance(p, str) for p in exposed):
            raise ProviderConnectionError(f"provider for {self.table}: 'properties' must list the public fields")
        self.properties = list(exposed)
        self.id_field = provider_def.get("id_field") or FID
        if self.id_field != FID and self.id_field not in self.properties:
            raise ProviderConnectionError(f"provider for {self.table}: id_field {self.id_field!r} is not exposed")
        self.time_end_field = provider_def.get("time_end_field")
        self.storage_crs = provider_def.get("storage_crs", CRS84)
        try:
            self.local = zone(provider_def.get("timezone"))
        except TimeQueryError as exc:
            raise ProviderConnectionError(f"provider for {self.table}: {exc}") from None

    # ------------------------------------------------------------------ schema

    @property
    def fields(self) -> dict:
        # BaseProvider.fields returns self._fields, filled by nobody; pygeoapi checks property
        # filters and sortby against this, and mutates what it gets (hence the copy in get_fields).
        return self.get_fields()

    def get_fields(self) -> dict:
        try:
            meta = current_meta(self.path, self.table)
        except LayerFileError as exc:
            LOGGER.error("%s: %s", self.table, exc)
            raise ProviderConnectionError(str(exc)) from None
        return {name: copy.deepcopy(JSON_SCHEMA[meta.columns.get(name, "string")]) for name in self.properties}

    def get_schema(self, schema_type: SchemaType = SchemaType.item) -> tuple[str, dict]:
        properties = self.get_fields()
        return (
            "application/geo+json",
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["type", "geometry", "properties"],
                "properties": {
                    "type": {"type": "string", "enum": ["Feature"]},
                    "id": {"type": "integer" if self.id_field == FID else properties[self.id_field]["type"]},
                    "geometry": {"$ref": "https://geojson.org/schema/Geometry.json"},
                    "properties": {"type": "object", "properties": properties},
                },
            },
        )

    # ------------------------------------------------------------------ queries

    def query(
        self,
        offset: int = 0,
        limit: int = 10,
        resulttype: str = "results",
        bbox: Sequence[float] | None = None,
        datetime_: str | None = None,
        properties: Sequence[tuple[str, Any]] | None = None,
        sortby: Sequence[Mapping[str, str]] | None = None,
        select_properties: Sequence[str] | None = None,
        skip_geometry: bool = False,
        q: str | None = None,
        filterq: Any = None,
        crs_transform_spec: Any = None,
        instant: bool = False,
        **kwargs: Any,
    ) -> dict:
        """pygeoapi's query; `instant`: answer from the point index held or raise NotInstant (never SQL), for a page
        asked on the event loop (server.early_answers, after `instant_page`)."""
        offset, limit = _non_negative(offset, "offset"), _non_negative(limit, "limit")
        with self._layer() as (connection, meta, version), _bad_input():
            found, order = self._conditions(meta, bbox, datetime_, properties, sortby, q, filterq)
            from_points = self._points_answer(
                connection,
                meta,
                version,
                found,
                order,
                offset,
                limit,
                resulttype,
                select_properties,
                skip_geometry,
                crs_transform_spec,
            )
            if from_points is not None:
                return from_points
            if instant:
                raise NotInstant(self.table)
            version_key = (version, self.table)
            matched = paging.count(
                (version_key, found.signature), lambda: self._count(connection, meta, version_key, found)
            )
            collection = {"type": "FeatureCollection", "features": [], "numberMatched": matched}
            if resulttype == "hits" or limit == 0 or offset >= matched:
                collection["numberReturned"] = 0
                return collection
            output = self._output_properties(select_properties)
            features, _ = self._page(
                connection,
                meta,
                found,
                order,
                output,
                offset,
                limit,
                skip_geometry,
                _target_crs(crs_transform_spec),
                (version_key, found.signature, order.sql),
            )
            collection["features"] = features
            collection["numberReturned"] = len(features)
            return collection

    def get(self, identifier: Any, crs_transform_spec: Any = None, **kwargs: Any) -> dict:
        with self._layer() as (connection, meta, _version):
            fields = self._queryables(meta)
            missing = ProviderItemNotFoundError(user_msg=f"no item {identifier!r} in {self.table}")
            if self.id_field == FID:
                try:
                    key: Any = int(str(identifier))
                except ValueError:
                    raise missing from None
                if not -(2**63) <= key < 2**63:  # beyond a 64-bit integer key: no row can have it
                    raise missing
                match = Fragment(f"{column(ALIAS, meta.fid_column)} = ?", (key,))
            else:
                match = Fragment(f"{fields[self.id_field].sql} = ?", (str(identifier),))
            layout, columns = self._select(meta, fields, (), self.properties, skip_geometry=False)
            statement = f"SELECT {columns} FROM {self._source(meta)} WHERE {match.sql} LIMIT 1"
            rows = self._item_rows(connection, Fragment(statement, match.params))
            if not rows:
                raise missing
            with _bad_input():
                target_crs = _target_crs(crs_transform_spec)
                return render(rows, layout, target_crs, self.decode_geometries, self.decode_points)[0]

    def light_page(self, bbox: Sequence[float], offset: int, limit: int) -> bool:
        """Whether a page of a lone bbox (empty: none) reads few rows: such a page runs on the worker's own lane
        (server.early_answers), never held up behind a heavy one. Judged from the file's metadata as a query read it
        (one stat, asked on the event loop: a version no query has read yet is not judged light)."""
        return self._light(file_identity(self.path), bbox, offset, limit) is not None

    def instant_page(
        self, bbox: Sequence[float], offset: int, limit: int, versions: Mapping[str, FileVersion] | None = None
    ) -> InstantPage | None:
        """A light page (`light_page`) of a lone bbox that the point index held for the file's current version answers,
        reading at most INSTANT_ROWS rows by fid: ~0.2 ms of the worker's CPU (1M points, 0.01 deg, 10 rows), less
        than the hop to a thread and back costs. Such a page runs on the event loop (server.early_answers), read by
        the InstantPage returned; None for any other page. A few dict lookups to judge, and a stat unless `versions`
        (path -> identity: the published files as the caller found them after the request came in, as
        server.ogcapi.site.LiveSite.file_versions gives them) holds this file's."""
        return self._instant_page(versions.get(self.path) if versions else None, bbox, offset, limit)

    def _instant_page(
        self, version: FileVersion | None, bbox: Sequence[float], offset: int, limit: int
    ) -> InstantPage | None:
        """instant_page of the file's `version` as the caller's own stat found it a moment ago (None: stat it here)."""
        if not bbox or limit > INSTANT_ROWS or not self._points_pay():
            return None
        if version is None:
            version = file_identity(self.path)
        judged = self._light(version, bbox, offset, limit)
        if judged is None or version is None:
            return None
        meta, envelope = judged
        box = point_rectangle(meta, envelope) if envelope is not None else None
        index = POINT_INDEXES.held(self._layer_key(), version) if box is not None else None
        return None if index is None else InstantPage(self, version, meta, index, box, offset, limit)

    def _light(
        self, identity: FileIdentity, bbox: Sequence[float], offset: int, limit: int
    ) -> tuple[LayerMeta, tuple[float, float, float, float] | None] | None:
        """The version's metadata and the bbox in lon/lat (None: no bbox) when the page is light, else None."""
        if limit > LIGHT_LIMIT:
            return None
        try:
            meta = kept_meta(identity, self.table)
            envelope = bbox_to_lonlat(list(bbox), self.storage_crs) if bbox else None
        except (BadRequest, OSError):
            return None
        rows = None if meta is None else rows_read(meta, envelope, offset + limit)
        return (meta, envelope) if rows is not None and rows <= LIGHT_ROWS else None

    def _conditions(
        self, meta: LayerMeta, bbox, datetime_, properties, sortby, q, filterq
    ) -> tuple[Conditions, Ordering]:
        """What a query selects and in which order, in this provider's dialect."""
        fields = self._queryables(meta)
        lonlat = bbox_to_lonlat(list(bbox), self.storage_crs) if bbox else None
        found = conditions(
            meta,
            fields,
            bbox=lonlat,
            datetime_=datetime_,
            time_fields=(self.time_field, self.time_end_field),
            properties=list(properties or []),
            q=q,
            filterq=filterq,
            local=self.local,
            dialect=self.dialect,
        )
        return found, ordering(fields, meta, list(sortby or []), self.dialect)

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _layer(self) -> Iterator[tuple[sqlite3.Connection, LayerMeta, FileVersion]]:
        """A connection to the current file version and that version's metadata, closed afterwards.
        Nothing is kept on `self`: one provider object may serve several threads at once. The connection
        comes from the pool of the file's current version (server/features/connections.py)."""
        with self._read_errors(), POOL.connection(self.path) as (connection, version):
            yield connection, layer_meta(connection, version, self.table), version

    def _read_errors(self) -> ReadErrors:
        """A file that cannot be opened or read: one line in the log, and a ProviderConnectionError for the client."""
        return ReadErrors(self.table, self.path)

    def _count(self, connection: sqlite3.Connection, meta: LayerMeta, version_key: tuple, found: Conditions) -> int:
        def scalar(statement: Fragment) -> int:
            return connection.execute(statement.sql, statement.params).fetchone()[0]

        total = meta.feature_count  # kept by GDAL's triggers; no scan of the table
        if total is None:
            total = scalar(Fragment(f"SELECT count(*) FROM {quote_identifier(meta.table)}"))
        if found.empty:
            return total
        window = found.only_window
        plan = window_counts(meta, window) if window is not None else None
        if plan is not None:
            subtract, check = plan
            if not _ends_before_start(connection, version_key, window, check):
                # the same two counts, from the column's ranks (server/features/time_ranks.py) when it has them
                sides = ((window.start_field, ">", window.last), (window.end_field, "<", window.first))
                ranked = [
                    TIME_RANKS.count(connection, version_key, meta.table, name, operator, value, self.path)
                    for name, operator, value in sides
                    if value is not None
                ]
                if None not in ranked:
                    return total - sum(ranked)
                return total - sum(scalar(statement) for statement in subtract)
        return scalar(count_statement(meta, found))

    def read_ahead(self) -> None:
        """Read now what the current version's `datetime=` windows are counted with (server.ogcapi.read_ahead calls
        it after a publication): the check that no feature ends before it starts, here, and the ranks of the time
        columns, in the background. Else every worker's first windows of a version count in SQL while it reads them
        (1M repairs, 2 workers, random 7-day windows: p99 105 ms in the first 10 s of load, 11-12 ms after). A point
        layer's index is read in the background too (server.features.point_reads)."""
        with self._layer() as (connection, meta, version):
            self._read_points_ahead(meta, version)
            if not self.time_field:
                return
            window = TimeWindow(self.time_field, self.time_end_field, None, None)
            plan = window_counts(meta, window)
            version_key = (version, self.table)
            if plan is None or _ends_before_start(connection, version_key, window, plan[1]):
                return  # not counted from ranks
            for name in (window.start_field, window.end_field):
                if name in meta.indexed:
                    TIME_RANKS.read_ahead(version_key, meta.table, name, self.path)

    def read_points_ahead(self) -> None:
        """Start reading the current version's point index in the background, when the layer is one to index."""
        with self._layer() as (_connection, meta, version):
            self._read_points_ahead(meta, version)

    def _points_answer(
        self, connection, meta: LayerMeta, version, found: Conditions, order: Ordering, *page: Any
    ) -> dict | None:
        """A lone bbox over a point layer answered from the index of its points (server.features.point_index): the
        matches and the page's fids from memory, the page's rows by fid. None: answer it in SQL (the index is not
        held yet, or the query is another one); the index is then read in the background when it would help.
        `page`: `_index_page`'s offset, limit, resulttype, select_properties, skip_geometry, crs_transform_spec."""
        box = lone_box(meta, found, order)
        if box is None or not self._points_pay():
            return None
        index = POINT_INDEXES.held(self._layer_key(), version)
        if index is None:
            self._read_points_ahead(meta, version)
            return None
        return self._index_page(connection, meta, index, box, order, *page)

    def _read_instant(self, plan: InstantPage, crs_transform_spec: Any, json_text: bool) -> dict:
        """InstantPage.read: on a connection to the version judged (none idle and the file replaced: NotInstant)."""
        # a plain page's order: by fid alone, no field asked
        order = _fid_orders.owned(plan.meta, self.dialect.name, lambda: ordering({}, plan.meta, [], self.dialect))
        with self._read_errors(), POOL.connection(self.path, plan.version) as (connection, version):
            if version != plan.version:
                raise NotInstant(self.table)
            page = (plan.offset, plan.limit, "results", None, False, crs_transform_spec)
            return self._index_page(connection, plan.meta, plan.index, plan.box, order, *page, json_text=json_text)

    def _index_page(
        self,
        connection,
        meta: LayerMeta,
        index: PointIndex,
        box: tuple[float, float, float, float],
        order: Ordering,
        offset: int,
        limit: int,
        resulttype: str,
        select_properties: Sequence[str] | None,
        skip_geometry: bool,
        crs_transform_spec: Any,
        json_text: bool = False,
    ) -> dict:
        """The page of `box` from `index`: the matches and the page's fids from memory, its rows by fid. `json_text`:
        the properties as SQLite's JSON where it writes them as the page does (InstantPage.read)."""
        matches = index.matching(box)
        collection = {"type": "FeatureCollection", "features": [], "numberMatched": len(matches), "numberReturned": 0}
        if resulttype == "hits" or limit == 0 or offset >= len(matches):
            return collection
        fids = page(matches, offset, limit)
        output = self._output_properties(select_properties)
        read = self._page_rows(connection, meta, output, skip_geometry, order, fids, json_text)
        if read is None:  # a value SQLite writes otherwise than the page: the Python way
            read = self._page_rows(connection, meta, output, skip_geometry, order, fids, False)
        layout, rows = read
        target_crs = _target_crs(crs_transform_spec)
        collection["features"] = render(rows, layout, target_crs, self.decode_geometries, self.decode_points)
        collection["numberReturned"] = len(collection["features"])
        return collection

    def _page_rows(
        self,
        connection,
        meta: LayerMeta,
        output: list[str],
        skip_geometry: bool,
        order: Ordering,
        fids: list[int],
        json_text: bool,
    ) -> tuple[RowLayout, list[tuple]] | None:
        """The layout and rows of `fids` (fid order) by `_rows_by_fid`'s statement: those kept from earlier pages
        (server.features.row_cache), the others read by one statement and kept. None: the properties were asked as
        JSON and a row's are not what SQLite writes as the page does (`_json_rows`)."""
        layout, _, leading, rows_key = self._rows_by_fid(meta, output, skip_geometry, order, 1, json_text)
        kept, missing = ROWS.kept(meta, rows_key, fids)
        read: list[tuple] = []
        if missing:
            layout, sql, _, _ = self._rows_by_fid(meta, output, skip_geometry, order, len(missing), json_text)
            fragment = Fragment(sql, leading + tuple(missing))
            if layout.properties_json:
                read = self._json_rows(connection, layout, fragment)
                if read is None:
                    return None
            else:
                read = self._rows(connection, fragment)
            ROWS.keep(meta, rows_key, read)
        return layout, assembled(fids, kept, read)

    def _json_rows(self, connection, layout: RowLayout, statement: Fragment) -> list | None:
        """The rows with their properties as SQLite's JSON; None when a value is one it writes otherwise than the page:
        a REAL (NULL in the column) or a BLOB (which fails the statement; a real error is said by the read again)."""
        try:
            rows = self._rows(connection, statement)
        except sqlite3.OperationalError:
            return None
        return rows if read_as_json(rows, layout.properties_start) else None

    def _rows_by_fid(
        self, meta: LayerMeta, output: list[str], skip_geometry: bool, order: Ordering, count: int, json_text: bool
    ) -> tuple[RowLayout, str, tuple, str]:
        """The layout and SQL of `count` rows by fid, in `order`: a page from the point index, the statement's
        leading parameters (the fids follow them), and what names its rows whatever the count (their columns,
        source and leading parameters: server.features.row_cache keeps them by it). With `json_text` the properties
        are one column of JSON where server.features.json_rows allows it (`layout.properties_json`). Built once per
        version's metadata, fields, page size and way (10 rows of 1M, small bbox: ~15 µs of the request's ~0.4 ms)."""

        def make() -> tuple[RowLayout, str, tuple, str]:
            fields = self._queryables(meta)
            written = (
                json_properties(meta, output, lambda name: self._property_sql(fields[name])) if json_text else None
            )
            trailing = [written.sql] if written is not None else []
            layout, columns = self._select(meta, fields, (), [] if trailing else output, skip_geometry, trailing)
            if written is not None:
                layout = dataclasses.replace(layout, properties_json=True)
            chosen = self._fids_in(meta, range(count)).sql
            source = self._source(meta)
            sql = f"SELECT {columns} FROM {source} WHERE {chosen} ORDER BY {order.sql}"
            leading = written.params if written is not None else ()
            rows_key = repr((columns, source, leading))  # a text: its hash is made once, not per row looked up
            return layout, sql, leading, rows_key

        key = (type(self), self.id_field, tuple(output), skip_geometry, order.sql, count, json_text)
        return _rows_by_fid.owned(meta, key, make)

    def _read_points_ahead(self, meta: LayerMeta, version) -> None:
        layer = self._layer_key()
        if self._points_pay() and POINT_INDEXES.wanted(layer, version, meta):
            POINT_INDEXES.read_later(layer, version, lambda: self._read_points(meta, version), self.table)

    def _points_pay(self) -> bool:
        """Whether answering from the index costs this machine less than the store's SQL: always for a GeoPackage,
        whose SQL runs in the worker too (1M points, small bbox: 1 worker +10-16 %, 2 workers +34-38 % req/s)."""
        return True

    def _layer_key(self) -> tuple:
        """What names this layer among the worker's point indexes (its versions replace each other there)."""
        return (self.path, self.table)

    def _read_points(self, meta: LayerMeta, version) -> PointIndex | None:
        """The index of `version`'s points, read on a connection of the thread's own."""
        return geopackage_points(self.path, version, meta)

    def _fids_in(self, meta: LayerMeta, fids: Sequence[int]) -> Fragment:
        """The rows of these fids (a page: at most max_items of them, within SQLite's 32,766 parameters)."""
        marks = ", ".join("?" * len(fids))
        return Fragment(f"{column(ALIAS, meta.fid_column)} IN ({marks})", tuple(fids))

    def _output_properties(self, select_properties: Sequence[str] | None) -> list[str]:
        if not select_properties:
            return self.properties
        unknown = set(select_properties) - set(self.properties)
        if unknown:
            raise InvalidQueryError(f"unknown properties {sorted(unknown)}")
        wanted = set(select_properties)
        return [name for name in self.properties if name in wanted]  # one schema order for every request

    def _select(
        self,
        meta: LayerMeta,
        fields,
        keys: Sequence[str],
        output: Sequence[str],
        skip_geometry: bool,
        trailing: Sequence[str] = (),
    ):
        """The SELECT's columns and where each is; `trailing` columns follow the properties (the caller strips them).
        The engine's part is three hooks: the geometry column, a property's expression and the table."""
        columns = [column(ALIAS, meta.fid_column)]
        id_index = 0
        if self.id_field != FID:
            columns.append(fields[self.id_field].sql)
            id_index = 1
        key_indexes = tuple(range(len(columns), len(columns) + len(keys)))
        columns.extend(keys)
        geometry_index = None
        if not skip_geometry:
            geometry_index = len(columns)
            columns.append(self._geometry_sql(meta))
        start = len(columns)
        columns.extend(self._property_sql(fields[name]) for name in output)
        columns.extend(trailing)
        layout = RowLayout(
            id_index=id_index,
            key_indexes=key_indexes,
            geometry_index=geometry_index,
            properties=tuple((name, meta.columns.get(name, "string")) for name in output),
            properties_start=start,
        )
        return layout, ", ".join(columns)

    def _queryables(self, meta: LayerMeta) -> dict:
        """The exposed fields as SQL, built once per version's metadata and level (twice a request otherwise)."""
        key = (type(self), tuple(self.properties))
        return dict(_queryables.owned(meta, key, lambda: self._make_queryables(meta)))  # callers may add to theirs

    def _make_queryables(self, meta: LayerMeta) -> dict:
        return queryables(meta, self.properties)

    def _rows(self, connection, statement: Fragment) -> list[tuple]:
        return connection.execute(statement.sql, statement.params).fetchall()

    def _item_rows(self, connection, statement: Fragment) -> list[tuple]:
        return self._rows(connection, statement)

    def _spatial(self, meta: LayerMeta, found: Conditions, rows_needed: int) -> list[Fragment]:
        return spatial_fragments(meta, found.spatial, rows_needed)

    def _geometry_sql(self, meta: LayerMeta) -> str:
        return column(ALIAS, meta.geometry_column)  # the GeoPackage blob, decoded by render

    def _property_sql(self, field) -> str:
        return field.sql

    def _source(self, meta: LayerMeta) -> str:
        return f"{quote_identifier(meta.table)} AS {quote_identifier(ALIAS)}"

    def _page_sql(self, meta: LayerMeta, columns: str, where: str, order: str, count_rows: bool) -> str:
        """A page's statement, LIMIT and OFFSET left as its last two parameters."""
        return f"SELECT {columns} FROM {self._source(meta)} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"

    def _matched_sql(self) -> str:
        """The trailing column of `count_rows`: how many rows match, the page's limit aside."""
        return "count(*) OVER ()"

    def _page(
        self,
        connection,
        meta,
        found: Conditions,
        order: Ordering,
        output,
        offset: int,
        limit: int,
        skip_geometry: bool,
        target_crs: str | None,
        query_key,
        count_rows: bool = False,
    ) -> tuple[list[dict], int | None]:
        """Keyset paging: seek past the nearest remembered position, skip the rest with OFFSET. With `count_rows`
        the same statement counts the rows past that position (`count(*) OVER ()`), sparing a second scan when
        the matches are gathered for the sort anyway. Returns the features and, when counted, numberMatched."""
        marks = paging.checkpoints(query_key)
        known_offset, known_key = marks.nearest(offset)
        seek = seek_after(order, known_key) if known_key is not None else None
        skip = offset - known_offset
        sort_keys = [expr for expr, _ in order.expressions[:-1]]  # the fid is SELECT column 0 anyway
        fields = self._queryables(meta)
        trailing = [self._matched_sql()] if count_rows else []
        layout, columns = self._select(meta, fields, sort_keys, output, skip_geometry, trailing)
        where = all_of([found.where, *self._spatial(meta, found, skip + limit), *([seek] if seek else [])])
        # One row more in front when skipping: its key marks this very offset, so asking for the
        # same page again (or the next client's identical walk) seeks instead of skipping.
        before = 1 if skip > 0 else 0
        statement = Fragment(
            self._page_sql(meta, columns, where.sql, order.sql, count_rows),
            where.params + (limit + before, skip - before),
        )
        rows = self._rows(connection, statement)
        counted = None
        if count_rows and rows:
            counted = known_offset + rows[0][-1]
            rows = [row[:-1] for row in rows]

        def key(row: tuple) -> tuple:
            return tuple(row[i] for i in layout.key_indexes) + (row[0],)

        if before and rows:
            marks.remember(offset, key(rows[0]))
            rows = rows[1:]
        if rows:
            marks.remember(offset + len(rows), key(rows[-1]))
        return render(rows, layout, target_crs, self.decode_geometries, self.decode_points), counted


def _target_crs(spec: Any) -> str | None:
    """The output CRS URI. pygeoapi's spec also carries WKT, but we resolve the URI ourselves (see
    provider_crs._transformer); our blobs are always CRS84-ordered lon/lat whatever storage_crs says."""
    return None if spec is None else spec.target_crs_uri


def _ends_before_start(connection: sqlite3.Connection, version_key: tuple, window: TimeWindow, check: Fragment) -> bool:
    """Whether some feature of the version lacks a start or ends before it starts (then windows are not counted by
    subtraction); `check` (query.window_counts) runs once per version and pair of fields on the machine."""
    key = (version_key, window.start_field, window.end_field)
    found = _ends_before_start_of.get(key)
    if found is None:
        identity, table = version_key  # the file's identity (its path first) and the table
        path = identity[0]
        # a scan of the table (1M: 0.2-0.3 s) that every worker ran at every start: kept on disk for all of them
        stored = derived(
            "windows",
            (path, table, window.start_field, window.end_field),
            (identity, check.sql, check.params),
            lambda: ({}, {"ends_before_start": bool(connection.execute(check.sql, check.params).fetchone()[0])}),
        )
        found = bool(stored[1]["ends_before_start"])  # type: ignore[index] - always built
        _ends_before_start_of.put(key, found)
    return found


def _non_negative(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidQueryError(f"{name} must be a whole number") from None
    if number < 0:
        raise InvalidQueryError(f"{name} must not be negative")
    return number


@contextlib.contextmanager
def _bad_input() -> Iterator[None]:
    """Client mistakes found while building or running the query become 400s with their message."""
    try:
        yield
    except GeometryBlobError:
        raise  # the file's fault, not the client's: _layer turns it into a connection error
    except (QueryInputError, FilterError, TimeQueryError, BadRequest) as exc:
        # any other ValueError is a defect: a logged 500, never a 400 carrying the bug's message
        raise InvalidQueryError(str(exc)) from None
