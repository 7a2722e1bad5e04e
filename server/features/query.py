"""The WHERE and ORDER BY of a feature query: bbox, datetime, property filters, q and CQL2 as SQL
fragments over the exposed columns, the R-tree in front of spatial tests, and keyset seeks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from layers.timewindow import TimeQueryError, active_clauses, bound, parse_datetime_parameter
from server.features.dialect import SQLITE, SqlDialect
from server.features.filter_sql import CompiledFilter, Queryable, SpatialTest, compile_filter
from server.published.layer import LayerFileError, LayerMeta
from server.published.sql import (
    FALSE,
    SPATIAL_TEST,
    TRUE,
    Fragment,
    all_of,
    any_of,
    column,
    quote_identifier,
    sql_integer,
)

ALIAS = "f"
GEOMETRY_NAMES = {"geometry", "geom"}
# Rough per-row costs (µs) measured on a 1M-point file: building the R-tree's candidate list then
# visiting it in fid order, against scanning the table in fid order and probing the R-tree per row.
COST_PER_CANDIDATE = 2.0
COST_PER_SCANNED_ROW = 0.5


class QueryInputError(ValueError):
    """Client input we cannot turn into a query; the message is meant for the client (HTTP 400)."""


@dataclass(frozen=True)
class Conditions:
    """Everything that filters, in a form that is also the cache key of counts and checkpoints."""

    where: Fragment
    spatial: tuple[SpatialTest, ...]
    only_window: TimeWindow | None = None  # set when `datetime=` is the one condition

    @property
    def signature(self) -> tuple:
        # asked for by the count's and the page's cache keys: the geometries' WKB made once (kept in the instance's
        # __dict__ directly: functools.cached_property would take one lock shared by every instance, on every thread)
        kept = self.__dict__.get("_signature")
        if kept is None:
            tests = tuple((t.operation, t.wkb, t.box) for t in self.spatial)
            kept = self.__dict__["_signature"] = (self.where.sql, self.where.params, tests)
        return kept

    @property
    def empty(self) -> bool:
        return self.where == TRUE and not self.spatial


@dataclass(frozen=True)
class Ordering:
    expressions: tuple[tuple[str, bool], ...]  # (SQL expression, descending), the fid last
    dialect: SqlDialect = field(default=SQLITE, compare=False)

    @property
    def sql(self) -> str:
        """Made once: every page's statement and cache keys ask (kept in __dict__, as SpatialTest.wkb is)."""
        kept = self.__dict__.get("_sql")
        if kept is None:
            last = len(self.expressions) - 1
            kept = self.__dict__["_sql"] = ", ".join(
                self.dialect.order_term(expr, desc, nullable=index != last)
                for index, (expr, desc) in enumerate(self.expressions)
            )
        return kept


def queryables(meta: LayerMeta, exposed: Sequence[str]) -> dict[str, Queryable]:
    """Only the exposed fields are ever addressable; a listed field the file lacks reads as NULL."""
    return {
        name: Queryable(column(ALIAS, name), meta.columns[name])
        if name in meta.columns
        else Queryable("NULL", "string")
        for name in exposed
    }


def conditions(
    meta: LayerMeta,
    fields: Mapping[str, Queryable],
    *,
    bbox: Sequence[float] | None,
    datetime_: str | None,
    time_fields: tuple[str | None, str | None],
    properties: Sequence[tuple[str, Any]],
    q: str | None,
    filterq: Any,
    local: tzinfo,
    dialect: SqlDialect = SQLITE,
) -> Conditions:
    parts: list[Fragment] = []
    spatial: list[SpatialTest] = []
    if bbox:
        minx, miny, maxx, maxy = bbox
        if minx > maxx or miny > maxy:
            # an antimeridian-crossing bbox cannot touch a city; a reversed one is a client mistake
            raise QueryInputError("bbox minimum is greater than its maximum")
        spatial.append(SpatialTest.of_box(minx, miny, maxx, maxy))
    window = time_window(meta, datetime_, time_fields, local) if datetime_ else None
    if window is not None:
        parts.append(window.fragment_in(dialect))
    for name, value in properties:
        parts.append(equals(fields, name, value, local, dialect))
    if q:
        parts.append(free_text(fields, q, dialect))
    if filterq is not None:
        compiled: CompiledFilter = compile_filter(
            filterq,
            fields,
            column(ALIAS, meta.geometry_column),
            GEOMETRY_NAMES | {meta.geometry_column},
            local,
            dialect,
        )
        parts.append(compiled.where)
        spatial.extend(compiled.spatial)
    where = all_of(parts)
    alone = window is not None and where == window.fragment_in(dialect) and not spatial
    return Conditions(where, tuple(spatial), window if alone else None)


@dataclass(frozen=True)
class TimeWindow:
    """`datetime=`: features active at some moment from `first` to `last` (None: open side), each
    bound already in the storage form of the column it is compared with."""

    start_field: str
    end_field: str | None
    first: str | None  # compared with the end field (with the start field for instants)
    last: str | None  # compared with the start field

    @property
    def fragment(self) -> Fragment:
        return self.fragment_in(SQLITE)

    def fragment_in(self, dialect: SqlDialect) -> Fragment:
        """start <= last AND (end IS NULL OR end >= first); instants: first <= start <= last.
        SQLite's unary + keeps it off the time indexes here: without statistics it takes a range on
        the start index for selective, but "started before the end of this week" is most of the
        table, and half a million index lookups are slower than one scan (see window_counts)."""
        start = dialect.time_column(column(ALIAS, self.start_field))
        end = dialect.time_column(column(ALIAS, self.end_field)) if self.end_field else None
        return all_of([Fragment(sql, (value,)) for sql, value in active_clauses(start, end, self.first, self.last)])


def time_window(
    meta: LayerMeta, datetime_: str, time_fields: tuple[str | None, str | None], local
) -> TimeWindow | None:
    """None for a timeless layer: no feature is excluded by time."""
    start_field, end_field = time_fields
    if not start_field:
        return None
    try:
        interval = parse_datetime_parameter(datetime_, local)
    except TimeQueryError as exc:
        raise QueryInputError(str(exc)) from None
    if start_field not in meta.columns or (end_field and end_field not in meta.columns):
        raise LayerFileError(f"time fields {start_field}/{end_field} are missing from {meta.table}")

    is_date = lambda field: meta.columns[field] == "date"  # noqa: E731 - date columns hold YYYY-MM-DD
    return TimeWindow(
        start_field=start_field,
        end_field=end_field,
        first=interval.first_for(is_date(end_field or start_field)),
        last=interval.last_for(is_date(start_field)),
    )


def window_counts(meta: LayerMeta, window: TimeWindow) -> tuple[list[Fragment], Fragment] | None:
    """With the pipeline's indexes on the time fields, count a window from index-only counts:
    active = all - (started after it) - (ended before it), given no feature lacks a start or ends
    before it starts (the returned check, run once per file version, must find none).
    Returns (counts to subtract, check), or None when the indexes are missing."""
    table = quote_identifier(meta.table)
    start = quote_identifier(window.start_field)
    if window.start_field not in meta.indexed:
        return None
    if not window.end_field:
        return None  # instants: a plain range on the start index is already what SQLite picks
    end = quote_identifier(window.end_field)
    if window.first is not None and window.end_field not in meta.indexed:
        return None
    subtract = []
    if window.last is not None:
        subtract.append(Fragment(f"SELECT count(*) FROM {table} WHERE {start} > ?", (window.last,)))
    if window.first is not None:
        subtract.append(Fragment(f"SELECT count(*) FROM {table} WHERE {end} < ?", (window.first,)))
    check = Fragment(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {start} IS NULL OR {end} < {start})")
    return subtract, check


def equals(fields: Mapping[str, Queryable], name: str, value: Any, local, dialect: SqlDialect = SQLITE) -> Fragment:
    """`?name=value` from the query string: the value is text, read as the property's type."""
    field = fields.get(name)
    if field is None:
        raise QueryInputError(f"{name!r} is not a property of this collection")
    text = str(value)
    try:
        if field.kind == "integer":
            stored: Any = sql_integer(int(text))
        elif field.kind == "number":
            stored = float(text)
        elif field.kind == "boolean":
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            stored = int(lowered in ("true", "1"))
        elif field.kind == "datetime":
            stored = bound(text, end=False, local=local)
        else:
            stored = text
    except (ValueError, TimeQueryError):
        raise QueryInputError(f"{name}={text!r} is not a valid {field.kind}") from None
    return Fragment(f"{field.sql} = ?", (dialect.literal(stored, field.kind),))


def free_text(fields: Mapping[str, Queryable], q: str, dialect: SqlDialect = SQLITE) -> Fragment:
    """`q`: comma-separated terms, any of which may appear in any text property, ignoring case."""
    terms = [t.strip().casefold().replace("\x1f", "") for t in q.split(",") if t.strip()]
    texts = [f.sql for f in fields.values() if f.kind == "string" and f.sql != "NULL"]
    return dialect.free_text(texts, terms)


def ordering(
    fields: Mapping[str, Queryable],
    meta: LayerMeta,
    sortby: Sequence[Mapping[str, str]],
    dialect: SqlDialect = SQLITE,
) -> Ordering:
    expressions = []
    for item in sortby:
        name = item.get("property")
        field = fields.get(name)
        if field is None:
            raise QueryInputError(f"cannot sort by {name!r}: not a property of this collection")
        order = str(item.get("order", "+")).upper()
        if order not in ("+", "-", "A", "D", "ASC", "DESC"):
            raise QueryInputError(f"sort order {order!r} is neither + nor -")
        expressions.append((field.sql, order in ("-", "D", "DESC")))
    # the fid last makes the order total, which keyset paging and stable pages both need
    expressions.append((column(ALIAS, meta.fid_column), False))
    return Ordering(tuple(expressions), dialect)


def seek_after(order: Ordering, key: tuple) -> Fragment:
    """Rows strictly after `key` in `order` (NULL first ascending, last descending: SQLite's order, which the
    PostgreSQL dialect asks for explicitly)."""
    alternatives = []
    equal_so_far: list[Fragment] = []
    for (expr, desc), value in zip(order.expressions, key, strict=True):
        if value is None:
            after = FALSE if desc else Fragment(f"{expr} IS NOT NULL")
            same = Fragment(f"{expr} IS NULL")
        else:
            after = Fragment(f"({expr} < ? OR {expr} IS NULL)" if desc else f"{expr} > ?", (value,))
            same = Fragment(f"{expr} = ?", (value,))
        alternatives.append(all_of([*equal_so_far, after]))
        equal_so_far.append(same)
    return any_of(alternatives)


# ---------------------------------------------------------------------- spatial tests via the R-tree


def spatial_fragments(meta: LayerMeta, tests: Sequence[SpatialTest], rows_needed: int | None) -> list[Fragment]:
    """Each test as SQL: R-tree candidates then the exact test. `rows_needed` (offset + limit, None to
    count everything) picks between driving from the R-tree and scanning in fid order with a probe."""
    return [spatial_fragment(meta, test, rows_needed) for test in tests]


def spatial_fragment(meta: LayerMeta, test: SpatialTest, rows_needed: int | None) -> Fragment:
    wkb = test.wkb
    geometry = column(ALIAS, meta.geometry_column)
    if meta.rtree is None or test.operation == "disjoint":
        return Fragment(f"{SPATIAL_TEST}({geometry}, ?, ?)", (test.operation, wkb))
    minx, miny, maxx, maxy = test.bounds
    rtree = quote_identifier(meta.rtree)
    touches = "r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ?"
    touch_params = (maxx, minx, maxy, miny)
    if drive_from_rtree(meta, test.bounds, rows_needed):
        # the candidate's geometry is fetched by fid only for candidates the envelope cannot decide
        fetched = (
            f"(SELECT g.{quote_identifier(meta.geometry_column)} FROM {quote_identifier(meta.table)} AS g "
            f"WHERE g.{quote_identifier(meta.fid_column)} = r.id)"
        )
        exact, exact_params = _exact(test, fetched, wkb)
        return Fragment(
            f"{column(ALIAS, meta.fid_column)} IN (SELECT r.id FROM {rtree} AS r WHERE {touches} AND {exact})",
            touch_params + exact_params,
        )
    exact, exact_params = _exact(test, geometry, wkb)
    return Fragment(
        f"EXISTS (SELECT 1 FROM {rtree} AS r WHERE r.id = {column(ALIAS, meta.fid_column)} AND {touches} AND {exact})",
        touch_params + exact_params,
    )


def _exact(test: SpatialTest, geometry_sql: str, wkb: bytes) -> tuple[str, tuple]:
    if test.box:
        minx, miny, maxx, maxy = test.bounds
        # an R-tree envelope inside the box proves the intersection without reading the geometry
        inside = "(r.minx >= ? AND r.maxx <= ? AND r.miny >= ? AND r.maxy <= ?)"
        return (
            f"({inside} OR {SPATIAL_TEST}({geometry_sql}, ?, ?))",
            (minx, maxx, miny, maxy, test.operation, wkb),
        )
    return f"{SPATIAL_TEST}({geometry_sql}, ?, ?)", (test.operation, wkb)


def drive_from_rtree(meta: LayerMeta, envelope: tuple[float, ...], rows_needed: int | None) -> bool:
    """Cost model: the R-tree list costs per candidate, the fid-order scan per row until it has
    `rows_needed` matches. A small window drives from the R-tree; a window showing most of the city
    scans in fid order and stops early."""
    total = meta.feature_count
    if not total or meta.bounds is None:
        return True
    share = _area_share(envelope, meta.bounds)
    candidates = share * total
    if share <= 0:
        return True
    scanned = total if rows_needed is None else min(total, rows_needed / share)
    return candidates * COST_PER_CANDIDATE <= scanned * COST_PER_SCANNED_ROW


def rows_read(meta: LayerMeta, envelope: tuple[float, ...] | None, rows_needed: int) -> float | None:
    """About how many rows (R-tree candidates or scanned rows) a page of a lone bbox (or of no condition) reads, the
    count included, assuming features spread evenly over the layer's bounds; None when the metadata cannot say."""
    total = meta.feature_count
    if total is None:
        return None
    if envelope is None:
        return min(total, rows_needed)  # the count is the file's own (feature_count), the page a scan from the start
    if meta.bounds is None:
        return None
    return _area_share(envelope, meta.bounds) * total


def _area_share(envelope: tuple[float, ...], bounds: tuple[float, float, float, float]) -> float:
    eminx, eminy, emaxx, emaxy = envelope
    bminx, bminy, bmaxx, bmaxy = bounds
    # a layer of one point or one straight line has no area: give it a tiny one
    width = max(bmaxx - bminx, 1e-9)
    height = max(bmaxy - bminy, 1e-9)
    overlap_x = max(0.0, min(emaxx, bminx + width) - max(eminx, bminx))
    overlap_y = max(0.0, min(emaxy, bminy + height) - max(eminy, bminy))
    return min(1.0, (overlap_x * overlap_y) / (width * height))


def count_statement(meta: LayerMeta, found: Conditions) -> Fragment:
    """SELECT count(*) for the conditions; a lone spatial test counts on the R-tree without the table."""
    table = f"{quote_identifier(meta.table)} AS {quote_identifier(ALIAS)}"
    if found.where == TRUE and len(found.spatial) == 1 and meta.rtree and found.spatial[0].operation != "disjoint":
        test = found.spatial[0]
        minx, miny, maxx, maxy = test.bounds
        fetched = (
            f"(SELECT g.{quote_identifier(meta.geometry_column)} FROM {quote_identifier(meta.table)} AS g "
            f"WHERE g.{quote_identifier(meta.fid_column)} = r.id)"
        )
        exact, exact_params = _exact(test, fetched, test.wkb)
        return Fragment(
            f"SELECT count(*) FROM {quote_identifier(meta.rtree)} AS r "
            f"WHERE r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ? AND {exact}",
            (maxx, minx, maxy, miny) + exact_params,
        )
    where = all_of([found.where, *spatial_fragments(meta, found.spatial, None)])
    return Fragment(f"SELECT count(*) FROM {table} WHERE {where.sql}", where.params)
