"""`PostGISProvider`: the pygeoapi feature provider over a PostGIS publication table, answering as GeoPackageProvider.

Config: the same keys as `server.features.provider.GeoPackageProvider`; `data` is a database registered with
`register_database` (a name without the password, so the URL never lands in pygeoapi's configuration) or a URL,
`table` the layer id (the table `geoportal."<layer>"`, its version in `geoportal.publications`), and optionally
`fallback`: the store's local GeoPackage copy of the layer, served by GeoPackageProvider while the database cannot
be reached (the last versions stay served, as the store promises).

The query is the GeoPackage provider's (server.features.query with the PostgreSQL dialect of pg_sql): bbox, datetime,
CQL2, q, sortby, properties, keyset paging with the shared checkpoints, numberMatched cached per (database, version,
conditions). Versions are unique across layers and change with every publication, so the caches of several workers
stay correct without talking to each other. Construction does no I/O; connections come from a small pool per process
and database (server.features.pg_pool).

A lone bbox over a point layer is answered from the local copy of the very version the store's poll noted
(`note_copy`), from the copy's point index and its rows, as the GeoPackage store answers it: a small page then costs
the worker ~0.4 ms on its event loop and the database nothing (1M points, small bbox, 1 worker: 1,100 req/s in SQL).
Only the copy's file that was made of that version answers; any other query, or a copy not yet made of the version
the registry says is current, is read from the table.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

import psycopg
from pygeoapi.provider.base import ProviderConnectionError

from layers.store import where
from server.features import paging, pg_pool, pg_sql, pg_windows
from server.features.output import JSON_SCHEMA, wkb_geometries
from server.features.pg_sql import POSTGRES, output_expression, pyformat, top_level_spatial
from server.features.point_index import may_be_lone_box
from server.features.provider import (
    GeoPackageProvider,
    InstantPage,
    InvalidQueryError,
    NotInstant,
    _bad_input,
    _non_negative,
    _target_crs,
)
from server.features.query import ALIAS, Conditions, _area_share
from server.published.files import file_identity
from server.published.gpkg import wkb_points_xy
from server.published.layer import FileVersion, LayerMeta, LruCache
from server.published.sql import Fragment, all_of, column

LOGGER = logging.getLogger(__name__)
REGISTRY = (
    "SELECT version, features, min_x, min_y, max_x, max_y, identifier, description"
    " FROM geoportal.publications WHERE layer_id = %s AND slot = 'current'"
)
COLUMNS = (
    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
    " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)
FEW_ROWS = 20_000  # estimated matches up to which the page query counts them too (see _page)
MATCHED = "geoportal_matched"  # the page query's count of all matches (no layer field is named so)
PICKED = "picked"  # the page query's alias of the fids it picked (the layer's rows are ALIAS)
AWAY_SECONDS = 2.0  # after a failed connection, serve the fallback this long before trying the database again

_databases: dict[str, str] = {}  # name -> URL
_metadata = LruCache(256)  # (URL, layer, version) -> LayerMeta
_away_until: dict[str, float] = {}  # URL -> monotonic time before which the database is not tried


# (URL, layer) -> the version the store read for this request's signature (note_versions): the provider then
# needs no registry query of its own. A publication committed since is seen by the next request's signature.
_noted: dict[tuple[str, str], int] = {}


def note_versions(url: str, versions: Iterable[tuple[str, int]]) -> None:
    """Called by the PostGIS store with the registry's current versions each time it reads them."""
    for layer_id, version in versions:
        _noted[(url, layer_id)] = version


# (URL, layer) -> (version, file): the local copy's file made of that version (note_copy). A newer copy replaces the
# file under the same path: its identity then differs, and this one answers nothing until the store notes the new one.
_copies: dict[tuple[str, str], tuple[int, FileVersion]] = {}


def note_copy(url: str, layer_id: str, version: int, file: FileVersion) -> None:
    """Called by the PostGIS store once its local copy `file` (a file identity) holds `version` of the layer."""
    _copies[(url, layer_id)] = (version, file)


class StoreAway(Exception):
    """The database cannot be reached now; the caller serves the fallback copy."""


class StoreUnavailable(ProviderConnectionError):
    """The database cannot answer now (unreachable without a local copy to serve, or every connection busy): a 503
    with an OGC exception, for the client to try again; neither the request's fault nor a defect."""

    http_status_code = HTTPStatus.SERVICE_UNAVAILABLE
    ogc_exception_code = "ServiceUnavailable"

    def __init__(self, msg: str):
        super().__init__(msg, user_msg=msg)


class _OutageWithoutTraceback(logging.Filter):
    """pygeoapi logs every provider error it answers with its traceback: during an outage that would be one
    traceback per request for a known condition (the store logs the outage itself, once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], StoreUnavailable):
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("pygeoapi.api").addFilter(_OutageWithoutTraceback())


def register_database(url: str) -> str:
    """The name a provider's `data` may carry for `url`: host:port/db, never the password."""
    name = f"postgis://{where(url)}"
    _databases[name] = url
    return name


class PostGISProvider(GeoPackageProvider):
    """OGC API Features over one PostGIS publication table (docs/contracts.md, "PostGIS store").

    The query, item and paging logic is GeoPackageProvider's; this class brings the PostgreSQL hooks (dialect,
    queryables, statements, geometry as WKB, the spatial test in front of the GiST), its own connection, its
    counting strategy and the fallback copy."""

    dialect = POSTGRES
    # Plain pages are answered before the stack (server/ogcapi/plain_items.py), as GeoPackageProvider's are: an instant
    # one from the local copy on the event loop, any other on the items route's threads (`light_page` is only true
    # for an instant page; the PostGIS store sets no `query_threads`, so anyio's 40). Pages read from the table,
    # small bbox, 1M, 8 connections, each server fresh on a quiet machine: 1 worker 1,205-1,360 req/s, p95 11.5-13.6
    # ms (through the stack 1,020-1,044, p95 14.3-15.1 ms); 2 workers 1,483-1,517 vs 1,323-1,396 req/s. On a lane of
    # 1 or 2 threads (measured before) the tail grew instead (p95 22-72 ms); on 3 route threads 749-826 vs 940-1,059
    # req/s at 1 worker.
    decode_geometries = staticmethod(wkb_geometries)
    decode_points = staticmethod(wkb_points_xy)

    def __init__(self, provider_def: Mapping[str, Any]):
        super().__init__(provider_def)
        self.url = _databases.get(self.path, self.path)
        self.definition = dict(provider_def)
        self._copy: _CopyOfVersion | None = None  # over the copy's file noted last (_current_copy)

    def light_page(self, bbox: Sequence[float], offset: int, limit: int) -> bool:
        """Only an instant page: any other page of the table runs on the items route's threads (above)."""
        return self.instant_page(bbox, offset, limit) is not None

    def instant_page(
        self, bbox: Sequence[float], offset: int, limit: int, versions: Mapping[str, FileVersion] | None = None
    ) -> InstantPage | None:
        """A light page the local copy of the current version answers from its point index (GeoPackageProvider's
        instant_page, read from the copy): never one that would wait for the database. The copy's file is stat'ed
        once, by `_current_copy` (`versions` names published files: the copy is none of them)."""
        local = self._current_copy()
        return None if local is None else local._instant_page(local.file, bbox, offset, limit)

    def _current_copy(self) -> _CopyOfVersion | None:
        """The local copy of the version the store noted as current, when a copy of that version was noted and its path
        holds that file (one stat); the copy checks its file again when it reads, since another worker may replace it
        with a newer one meanwhile."""
        key = (self.url, self.table)
        copied = _copies.get(key)
        if copied is None or copied[0] != _noted.get(key) or file_identity(copied[1][0]) != copied[1]:
            return None  # no copy of the version, or its file went (an operator cleaning the cache) or was replaced
        local = self._copy
        if local is None or local.file != copied[1]:
            local = self._copy = _CopyOfVersion({**self.definition, "data": copied[1][0]}, copied[1])
        return local

    def _fallback(self, answer: Callable[[GeoPackageProvider], Any]) -> Any:
        """`answer` from the local copy of the layer, or a 503 when there is none."""
        copy_path = self.definition.get("fallback")
        if not copy_path or not Path(copy_path).exists():
            raise StoreUnavailable(f"cannot read {self.table}: the store cannot be reached, try again later")
        return answer(GeoPackageProvider({**self.definition, "data": copy_path}))

    # ------------------------------------------------------------------ schema

    def get_fields(self) -> dict:
        try:
            with self._layer() as (_connection, meta, _version):
                return {name: copy.deepcopy(JSON_SCHEMA[meta.columns.get(name, "string")]) for name in self.properties}
        except StoreAway:
            return self._fallback(lambda local: local.get_fields())

    # ------------------------------------------------------------------ queries

    def query(self, instant: bool = False, **kwargs: Any) -> dict:
        """From the current version's local copy when its point index answers (a lone bbox), else from the table;
        `instant` (a page asked on the event loop): from the copy or NotInstant, never the database."""
        local = self._current_copy() if may_be_lone_box(kwargs) else None
        if local is not None:
            with contextlib.suppress(NotInstant, ProviderConnectionError):  # the copy's failure is logged: the table's
                return local.query(instant=True, **kwargs)
        if instant:
            raise NotInstant(self.table)
        try:
            return self._query(**kwargs)
        except StoreAway:
            return self._fallback(lambda local: local.query(**kwargs))

    def get(self, identifier: Any, **kwargs: Any) -> dict:
        try:
            return super().get(identifier, **kwargs)
        except StoreAway:
            return self._fallback(lambda local: local.get(identifier, **kwargs))

    def read_ahead(self) -> None:
        """Start reading the current version's sorted times (server.features.pg_windows) after a publication; else
        every worker's first `datetime=` windows of a version wait for that read (1-3 s on 1M features). A point
        layer's index is read in the background too (server.features.point_reads)."""
        local = self._current_copy()
        if local is not None:
            with contextlib.suppress(ProviderConnectionError):  # logged by the copy; the table's read-ahead goes on
                local.read_points_ahead()
        try:
            with self._layer() as (_connection, meta, version):
                if not self.time_field:
                    return
                pg_windows.read_ahead(self.url, version, meta, self.time_field, self.time_end_field)
        except StoreAway:
            return  # served from the local copy meanwhile: its windows count in SQL

    def _query(
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
        **kwargs: Any,
    ) -> dict:
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
            version_key = ("postgis", self.url, version, self.table)
            count_key = (version_key, found.signature)
            matched = paging.known_count(count_key)
            collection: dict[str, Any] = {"type": "FeatureCollection", "features": []}
            if resulttype == "hits" or limit == 0 or (matched is not None and offset >= matched):
                if matched is None:
                    matched = self._count(connection, meta, version, found)
                    paging.remember_count(count_key, matched)
                collection.update(numberMatched=matched, numberReturned=0)
                return collection
            output = self._output_properties(select_properties)
            features, counted = self._page(
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
                count_rows=matched is None and self._few(meta, found),
            )
            if matched is None:
                if counted is not None:
                    matched = counted
                elif 0 < len(features) < limit or (offset == 0 and not features):
                    matched = offset + len(features)  # the page ended inside the result: no count needed
                else:
                    matched = self._count(connection, meta, version, found)
                paging.remember_count(count_key, matched)
            collection.update(features=features, numberMatched=matched, numberReturned=len(features))
            return collection

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _layer(self) -> Iterator[tuple[psycopg.Connection, LayerMeta, int]]:
        """A pooled connection, the current version of the layer and its metadata (read once per version)."""
        if _away_until.get(self.url, 0.0) > time.monotonic():
            raise StoreAway
        try:
            with pg_pool.pool(self.url).connection() as connection:
                meta, version = self._current(connection)
                _away_until.pop(self.url, None)
                yield connection, meta, version
        except pg_pool.PoolExhausted as error:
            LOGGER.error("%s: %s (PostGIS %s)", self.table, error, where(self.url))
            raise StoreUnavailable(f"cannot read {self.table}: the store is busy, try again later") from None
        except psycopg.DataError as error:
            # a literal the column's type cannot read (`floors = 'abc'`): the GeoPackage matches nothing, we say why
            raise InvalidQueryError(f"filter value does not fit the property: {_first_line(error)}") from None
        except psycopg.OperationalError as error:
            if self.url not in _away_until:  # once per outage; the store logs it too
                LOGGER.error(
                    "PostGIS store %s unreachable, features served from the local copies: %s",
                    where(self.url),
                    _first_line(error),
                )
            _away_until[self.url] = time.monotonic() + AWAY_SECONDS
            raise StoreAway from None
        except psycopg.Error as error:
            LOGGER.error("%s: reading from PostGIS %s failed: %s", self.table, where(self.url), _first_line(error))
            raise ProviderConnectionError(f"cannot read {self.table}: {_first_line(error)}") from None

    def _current(self, connection: psycopg.Connection) -> tuple[LayerMeta, int]:
        noted = _noted.get((self.url, self.table))
        if noted is not None:
            meta = _metadata.get((self.url, self.table, noted))
            if meta is not None:
                return meta, noted
        row = connection.execute(REGISTRY, (self.table,)).fetchone()
        if row is None:
            raise psycopg.errors.UndefinedTable(f"{self.table} is not published in this store")
        version, features, min_x, min_y, max_x, max_y, identifier, description = row
        key = (self.url, self.table, version)
        meta = _metadata.get(key)
        if meta is None:
            columns = connection.execute(COLUMNS, (pg_sql.table(self.table),)).fetchall()
            registry = {
                "features": features,
                "min_x": min_x,
                "min_y": min_y,
                "max_x": max_x,
                "max_y": max_y,
                "identifier": identifier,
                "description": description,
            }
            meta = pg_sql.meta_from_columns(self.table, columns, registry)
            if meta is None:
                raise psycopg.errors.UndefinedColumn(f"{pg_sql.table(self.table)} has no geometry column")
            _metadata.put(key, meta)
        return meta, version

    def _count(self, connection: psycopg.Connection, meta: LayerMeta, version: int, found: Conditions) -> int:
        if found.empty and meta.feature_count is not None:
            return meta.feature_count  # the registry row counted the table at publication
        if found.only_window is not None:
            counted = pg_windows.window_count(connection, self.url, version, meta, found.only_window)
            if counted is not None:
                return counted
        where = all_of([found.where, *(top_level_spatial(meta, test) for test in found.spatial)])
        statement = Fragment(
            f"SELECT count(*) FROM {pg_sql.table(meta.table)} AS {ALIAS} WHERE {where.sql}", where.params
        )
        return connection.execute(pyformat(statement), statement.params).fetchone()[0]

    def _make_queryables(self, meta: LayerMeta) -> dict:
        return pg_sql.queryables(meta, self.properties)

    def _points_pay(self) -> bool:
        """Never from an index of the table's own: a lone bbox is answered from the local copy's (query)."""
        return False

    def _rows(self, connection: psycopg.Connection, statement: Fragment) -> list[tuple]:
        return connection.cursor(binary=True).execute(pyformat(statement), statement.params).fetchall()

    def _item_rows(self, connection: psycopg.Connection, statement: Fragment) -> list[tuple]:
        try:
            return self._rows(connection, statement)
        except psycopg.DataError:
            return []  # an id the id field's type cannot read names no item

    def _spatial(self, meta: LayerMeta, found: Conditions, rows_needed: int) -> list[Fragment]:
        return [top_level_spatial(meta, test) for test in found.spatial]  # PostGIS puts the GiST in front itself

    def _geometry_sql(self, meta: LayerMeta) -> str:
        return f"ST_AsBinary({column(ALIAS, meta.geometry_column)})"

    def _property_sql(self, field) -> str:
        return output_expression(field)

    def _source(self, meta: LayerMeta) -> str:
        return f"{pg_sql.table(meta.table)} AS {ALIAS}"

    def _page_sql(self, meta: LayerMeta, columns: str, where: str, order: str, count_rows: bool) -> str:
        """The page's fids picked first, its rows read and its output (text, ST_AsBinary) computed for them alone.
        Picking whole rows would carry every matching row through the sort and the count (a small bbox: ~550 rows
        for 10), and read the heap of every row an OFFSET skips, where the fids alone come from the primary key's
        index (1M rows, limit=1000 at a random offset up to 50,000: 117 -> 20 ms per statement)."""
        fid = column(ALIAS, meta.fid_column)
        matched = f", count(*) OVER () AS {MATCHED}" if count_rows else ""
        picked = f"SELECT {fid}{matched} FROM {self._source(meta)} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        joined = f"{self._source(meta)} ON {fid} = {column(PICKED, meta.fid_column)}"
        return f"SELECT {columns} FROM ({picked}) AS {PICKED} JOIN {joined} ORDER BY {order}"

    def _matched_sql(self) -> str:
        return column(PICKED, MATCHED)

    @staticmethod
    def _few(meta: LayerMeta, found: Conditions) -> bool:
        """A spatial test small enough that counting its matches along with the page costs nothing extra."""
        if not found.spatial or not meta.feature_count or meta.bounds is None:
            return False
        share = min(_area_share(test.bounds, meta.bounds) for test in found.spatial)
        return share * meta.feature_count <= FEW_ROWS


class _CopyOfVersion(GeoPackageProvider):
    """The store's local copy of one version of a layer: it answers from its point index only while its path holds
    the file made of that version (`file`); else the table answers."""

    def __init__(self, provider_def: Mapping[str, Any], file: FileVersion):
        super().__init__(provider_def)
        self.file = file

    def _points_answer(self, connection, meta: LayerMeta, version, *query) -> dict | None:
        if version != self.file:
            return None
        return super()._points_answer(connection, meta, version, *query)

    def _read_points_ahead(self, meta: LayerMeta, version) -> None:
        if version == self.file:
            super()._read_points_ahead(meta, version)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
