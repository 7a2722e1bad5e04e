"""A published GeoPackage as the provider reads it: a read-only connection per query, and the
table's metadata read once per file version (path, inode, mtime) so a republished file is seen at once."""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import shapely

from server.published import files, gpkg
from server.published.files import FileIdentity, file_identity
from server.published.sql import ACCENT_FOLD, CASEFOLD, SPATIAL_TEST, accent_fold, casefold

GPKG_APPLICATION_ID = 0x47504B47  # "GPKG"
# Declared column type -> (JSON schema type, format). GeoPackage 1.2 §1.1.1.1.3 data types.
COLUMN_KINDS = {
    "BOOLEAN": "boolean",
    "TINYINT": "integer",
    "SMALLINT": "integer",
    "MEDIUMINT": "integer",
    "INT": "integer",
    "INTEGER": "integer",
    "BIGINT": "integer",
    "FLOAT": "number",
    "DOUBLE": "number",
    "REAL": "number",
    "TEXT": "string",
    "DATE": "date",
    "DATETIME": "datetime",
}


class LayerFileError(Exception):
    """The published file is missing, unreadable or not the GeoPackage the contract promises."""


FileVersion = tuple[str, int, int, int, int]  # a file identity (server.published.files) of an existing file


def _version(path: str) -> FileVersion:
    identity = file_identity(path)
    if identity is None:
        raise FileNotFoundError(path)
    return identity


@dataclass(frozen=True)
class LayerMeta:
    table: str
    fid_column: str
    geometry_column: str
    geometry_type: str
    # column name -> kind (string/integer/number/boolean/date/datetime/blob), in table order
    columns: dict[str, str]
    rtree: str | None
    feature_count: int | None
    bounds: tuple[float, float, float, float] | None  # gpkg_contents min_x, min_y, max_x, max_y
    indexed: frozenset[str]  # columns that lead a B-tree index (the pipeline indexes id and time fields)
    identifier: str | None
    description: str | None
    # Columns of TEXT affinity (SQLite stores a number written to one as text, so it holds TEXT, BLOB or NULL), and
    # whether the file's text is UTF-8 (GeoPackage requires it, SQLite allows UTF-16): server.features.json_rows
    text_affinity: frozenset[str] = frozenset()
    utf8: bool = False


class LruCache:
    """A small thread-safe LRU: per-version metadata, counts and paging checkpoints live in these."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        # Without the lock (a small bbox asks five of these caches): OrderedDict's get and move_to_end are each one
        # C call under the GIL, and a key another thread drops between the two is moved nowhere, its value still
        # the one kept. Puts and drops stay locked.
        value = self._items.get(key)
        if value is not None:
            try:  # noqa: SIM105 - suppress() would make an instance per call, and this is per request
                self._items.move_to_end(key)
            except KeyError:
                pass
        return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def owned(self, owner: object, key: Hashable, make: Callable[[], Any]) -> Any:
        """What is kept for `owner` (a View, a version's metadata, a provider definition) and `key`, made by `make()`
        the first time. Keyed by id(owner), and the entry holds the owner: its id is not reused while the entry lives,
        and an object that got a dead owner's id finds that entry is not its own."""
        full_key = (id(owner), key)
        kept = self.get(full_key)
        if kept is None or kept[0] is not owner:
            kept = (owner, make())
            self.put(full_key, kept)
        return kept[1]


_metadata = LruCache(64)


def column_kind(declared: str) -> str:
    base = declared.upper().split("(")[0].strip()  # TEXT(80) -> TEXT
    return COLUMN_KINDS.get(base, "blob" if base == "BLOB" else "string")


def text_affinity(declared: str) -> bool:
    """Whether SQLite gives a column declared so TEXT affinity (its rules 1 and 2, https://sqlite.org/datatype3.html
    section 3.1): VARCHAR(80) and TEXT do, INTEGER, DATETIME and an undeclared type do not."""
    upper = declared.upper()
    return "INT" not in upper and any(name in upper for name in ("CHAR", "CLOB", "TEXT"))


# Binary predicates the spatial test may call, by the names cql.SPATIAL_OPERATIONS uses.
PREDICATES = {
    name: getattr(shapely, name)
    for name in ("intersects", "disjoint", "contains", "within", "touches", "crosses", "overlaps", "equals")
}


def _spatial_test() -> Callable[[bytes | None, str, bytes], int | None]:
    """The exact geometry test SQLite calls for R-tree candidates (we have no SpatiaLite): feature blob,
    operation, WKB of the query geometry in lon/lat. Query geometries are parsed once per connection; a bbox is
    read from its WKB alone, and parsed by GEOS only if a candidate is not a point (every request brings a new
    bbox: parsing, preparing and comparing it with its box cost more than the points' own tests)."""
    literals: dict[bytes, list] = {}  # WKB -> [prepared literal or None until needed, rectangle or None]

    def test(blob: bytes | None, operation: str, wkb: bytes) -> int | None:
        if blob is None:
            return None
        kept = literals.get(wkb)
        if kept is None:
            if len(literals) >= 64:  # a kept connection (server/features/connections.py) sees endless bboxes
                literals.clear()
            rectangle = wkb_rectangle(wkb)
            literal = None if rectangle is not None else _prepared(wkb)
            kept = literals[wkb] = [literal, rectangle if literal is None else _rectangle(literal)]
        literal, rectangle = kept
        if operation == "intersects" and rectangle is not None:
            xy = gpkg.point_xy(blob)
            if xy is not None:  # a point meets a closed rectangle when it is inside or on its edge
                return int(rectangle[0] <= xy[0] <= rectangle[2] and rectangle[1] <= xy[1] <= rectangle[3])
        feature = gpkg.to_shapely(blob)
        if feature is None:
            return None
        if literal is None:
            literal = kept[0] = _prepared(wkb)
        if operation == "intersects":
            return int(literal.intersects(feature))  # prepared: the literal goes first
        if operation.startswith("relate:"):
            return int(shapely.relate_pattern(feature, literal, operation[7:]))
        return int(PREDICATES[operation](feature, literal))

    return test


def _prepared(wkb: bytes) -> shapely.Geometry:
    literal = shapely.from_wkb(wkb)
    shapely.prepare(literal)
    return literal


def _rectangle(literal: shapely.Geometry) -> tuple[float, ...] | None:
    """The bounds of an axis-aligned rectangle with an area (a bbox), None for any other query geometry: a box
    shrunk to a line or a point keeps GEOS's own answer."""
    if shapely.get_type_id(literal) != 3 or literal.is_empty:
        return None
    bounds = literal.bounds
    if not (bounds[0] < bounds[2] and bounds[1] < bounds[3]):
        return None
    return bounds if literal.equals(shapely.box(*bounds)) else None


_POLYGON_HEAD = {1: struct.Struct("<III"), 0: struct.Struct(">III")}  # WKB byte order -> type, rings, points
_RING_OF_FIVE = {1: struct.Struct("<10d"), 0: struct.Struct(">10d")}


def wkb_rectangle(wkb: bytes) -> tuple[float, float, float, float] | None:
    """What `_rectangle` says of a 2D polygon WKB of one closed ring of five points going round the four corners of
    a box with an area (what shapely.box writes), read without GEOS; None for anything else, which GEOS then
    judges."""
    if len(wkb) != 9 + 4 + 80:
        return None
    head, ring = _POLYGON_HEAD.get(wkb[0]), _RING_OF_FIVE.get(wkb[0])
    if head is None or head.unpack_from(wkb, 1) != (3, 1, 5):
        return None
    values = ring.unpack_from(wkb, 13)
    points = list(zip(values[0::2], values[1::2], strict=True))
    if points[0] != points[4] or not all(math.isfinite(value) for value in values):
        return None
    xs, ys = values[0:8:2], values[1:8:2]
    minx, miny, maxx, maxy = min(xs), min(ys), max(xs), max(ys)
    if not (minx < maxx and miny < maxy):
        return None
    if set(points[:4]) != {(minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy)}:
        return None
    # each side runs along one axis (four corners in a crossing order would make a bow tie, not the box)
    if not all((a[0] == b[0]) != (a[1] == b[1]) for a, b in zip(points, points[1:], strict=False)):
        return None
    return minx, miny, maxx, maxy


def connect(path: str) -> sqlite3.Connection:
    """A read-only connection with our SQL functions. One per query: sqlite3 connections are not
    shared across threads, and a connection pins the file version it opened. Immutable (no lock taken and no change
    counter read per statement; a published file is replaced by rename, never written in place): 10 rows by fid of
    1M, 48 against 58 µs."""
    connection = files.connect(path, immutable=True)
    connection.create_function(SPATIAL_TEST, 3, _spatial_test(), deterministic=True)
    connection.create_function(CASEFOLD, 1, casefold, deterministic=True)
    connection.create_function(ACCENT_FOLD, 1, accent_fold, deterministic=True)
    return connection


def open_version(path: str) -> tuple[sqlite3.Connection, FileVersion]:
    """Connect and say which file version the connection holds: stat before and after opening; if the
    file was swapped in between, try again, so metadata and connection always belong together."""
    for _ in range(5):
        try:
            before = _version(path)
            connection = connect(path)
            after = _version(path)
        except FileNotFoundError:
            raise LayerFileError(f"layer file {path} does not exist (not published yet?)") from None
        except (OSError, sqlite3.Error) as exc:
            raise LayerFileError(f"cannot open layer file {path}: {exc}") from None
        if before == after:
            return connection, after
        connection.close()
    raise LayerFileError(f"layer file {path} keeps changing while being opened")


def kept_meta(identity: FileIdentity, table: str) -> LayerMeta | None:
    """Metadata of the file of this identity (`file_identity`, None: no file) if a query has read it already, else
    None; never a read."""
    return None if identity is None else _metadata.get((identity, table))


def current_meta(path: str, table: str) -> LayerMeta:
    """Metadata of the file now at `path` for one stat() when cached: pygeoapi asks for the fields
    several times per request."""
    try:
        meta = _metadata.get((_version(path), table))
    except FileNotFoundError:
        raise LayerFileError(f"layer file {path} does not exist (not published yet?)") from None
    if meta is not None:
        return meta
    connection, version = open_version(path)
    try:
        return layer_meta(connection, version, table)
    finally:
        connection.close()


def layer_meta(connection: sqlite3.Connection, version: FileVersion, table: str) -> LayerMeta:
    key = (version, table)
    meta = _metadata.get(key)
    if meta is None:
        meta = read_meta(connection, table)
        _metadata.put(key, meta)
    return meta


def read_meta(connection: sqlite3.Connection, table: str) -> LayerMeta:
    try:
        return _read_meta(connection, table)
    except sqlite3.DatabaseError as exc:
        raise LayerFileError(f"layer file is not a readable GeoPackage: {exc}") from None


def _read_meta(connection: sqlite3.Connection, table: str) -> LayerMeta:
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    if application_id != GPKG_APPLICATION_ID:
        raise LayerFileError("layer file is not a GeoPackage (wrong application_id)")
    geometry = connection.execute(
        "SELECT column_name, geometry_type_name, srs_id FROM gpkg_geometry_columns WHERE table_name = ?", (table,)
    ).fetchone()
    if geometry is None:
        raise LayerFileError(f"layer file has no feature table {table!r}")
    geometry_column, geometry_type, srs_id = geometry
    srs = connection.execute(
        "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (srs_id,)
    ).fetchone()
    if srs is None or (str(srs[0]).upper(), srs[1]) != ("EPSG", 4326):
        # Everything downstream (bbox, filters, transforms) assumes lon/lat WGS 84 as the contract says.
        raise LayerFileError(f"feature table {table!r} is in SRS {srs}, the contract says EPSG:4326")
    info = connection.execute("SELECT name, type, pk FROM pragma_table_info(?)", (table,)).fetchall()
    primary = [name for name, _, pk in info if pk == 1]
    if len(primary) != 1:
        raise LayerFileError(f"feature table {table!r} has no single integer primary key")
    columns = {name: column_kind(declared) for name, declared, _ in info if name not in (primary[0], geometry_column)}
    texts = frozenset(name for name, declared, _ in info if name in columns and text_affinity(declared))
    (encoding,) = connection.execute("PRAGMA encoding").fetchone()
    rtree_name = f"rtree_{table}_{geometry_column}"
    has_rtree = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (rtree_name,)
    ).fetchone()
    feature_count = None
    if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'gpkg_ogr_contents'").fetchone():
        row = connection.execute(
            "SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = ?", (table,)
        ).fetchone()
        feature_count = row[0] if row and row[0] is not None and row[0] >= 0 else None
    contents = connection.execute(
        "SELECT identifier, description FROM gpkg_contents WHERE table_name = ?", (table,)
    ).fetchone()
    bounds = files.read_bounds(connection, table)
    return LayerMeta(
        table=table,
        fid_column=primary[0],
        geometry_column=geometry_column,
        geometry_type=str(geometry_type).upper(),
        columns=columns,
        rtree=rtree_name if has_rtree else None,
        feature_count=feature_count,
        bounds=bounds,
        indexed=_indexed_columns(connection, table),
        identifier=contents[0] if contents else None,
        description=contents[1] if contents else None,
        text_affinity=texts,
        utf8=encoding == "UTF-8",
    )


def _indexed_columns(connection: sqlite3.Connection, table: str) -> frozenset[str]:
    indexes = [name for (name,) in connection.execute("SELECT name FROM pragma_index_list(?)", (table,))]
    leading = set()
    for index in indexes:
        first = connection.execute("SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (index,)).fetchone()
        if first and first[0]:
            leading.add(first[0])
    return frozenset(leading)
