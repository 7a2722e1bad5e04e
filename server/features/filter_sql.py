"""CQL2 filters (pygeofilter ASTs) compiled to parameterised SQL (SQLite, or PostgreSQL through a dialect) over the
exposed columns.

pygeofilter's own SQL backend pastes values into the SQL text, so we compile the AST ourselves:
identifiers through `quote_identifier` (done by the caller when it builds the queryables), values
as `?`. Spatial predicates call a Python SQL function (no SpatiaLite); the ones at the top level of
the filter are handed back so the provider can put the R-tree in front of them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import shapely
import shapely.geometry
from pygeofilter import ast, values

from layers.timewindow import TimeQueryError, as_date_text, bound, day_end, day_start, stored_text
from server.features.crs import lonlat_from
from server.features.dialect import SQLITE, SqlDialect
from server.features.filter_parse import FilterError, envelope_box, transpose_de9im
from server.published.sql import (
    FALSE,
    TRUE,
    Fragment,
    accent_fold,
    all_of,
    any_of,
    casefold,
    negate,
    sql_integer,
)


@dataclass(frozen=True)
class Queryable:
    sql: str  # a quoted column reference, or NULL for a listed field the file lacks
    kind: str  # string, integer, number, boolean, date, datetime


_BOX_WKB = struct.Struct("<BIII10d")  # little-endian polygon, one ring of five points


@dataclass(frozen=True)
class SpatialTest:
    """Feature geometry `operation` query geometry (lon/lat). `box`: an axis-aligned rectangle tested
    with intersects, for which an R-tree envelope inside the rectangle already proves the match."""

    operation: str
    geometry: shapely.Geometry
    box: bool = False

    @classmethod
    def of_box(cls, minx: float, miny: float, maxx: float, maxy: float) -> SpatialTest:
        """`bbox=`: intersects a rectangle, its bounds and WKB (the bytes shapely writes for it) made without GEOS."""
        minx, miny, maxx, maxy = float(minx), float(miny), float(maxx), float(maxy)
        test = cls("intersects", shapely.box(minx, miny, maxx, maxy), box=True)
        test.__dict__["_bounds"] = (minx, miny, maxx, maxy)
        ring = (maxx, miny, maxx, maxy, minx, maxy, minx, miny, maxx, miny)  # shapely.box's order (counter-clockwise)
        test.__dict__["_wkb"] = _BOX_WKB.pack(1, 3, 1, 5, *ring)
        return test

    @property
    def wkb(self) -> bytes:
        """The query geometry's WKB, made once: the count's and the page's statements and cache keys all ask
        (kept in __dict__ directly, as Conditions.signature does, to avoid cached_property's shared lock)."""
        kept = self.__dict__.get("_wkb")
        if kept is None:
            kept = self.__dict__["_wkb"] = shapely.to_wkb(self.geometry)
        return kept

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """The query geometry's (minx, miny, maxx, maxy), made once: the R-tree's ranges, the exact test's shortcut
        and the cost model each ask, several times a request (a GEOS call each)."""
        kept = self.__dict__.get("_bounds")
        if kept is None:
            kept = self.__dict__["_bounds"] = tuple(self.geometry.bounds)
        return kept


@dataclass(frozen=True)
class CompiledFilter:
    where: Fragment
    spatial: tuple[SpatialTest, ...]


SPATIAL_OPERATIONS = {
    ast.GeometryIntersects: "intersects",
    ast.GeometryDisjoint: "disjoint",
    ast.GeometryContains: "contains",
    ast.GeometryWithin: "within",
    ast.GeometryTouches: "touches",
    ast.GeometryCrosses: "crosses",
    ast.GeometryOverlaps: "overlaps",
    ast.GeometryEquals: "equals",
}
# feature OP literal == literal MIRROR(OP) feature
MIRRORED = {"contains": "within", "within": "contains"}
COMPARISONS = {
    ast.ComparisonOp.EQ: "=",
    ast.ComparisonOp.NE: "<>",
    ast.ComparisonOp.LT: "<",
    ast.ComparisonOp.LE: "<=",
    ast.ComparisonOp.GT: ">",
    ast.ComparisonOp.GE: ">=",
}
ARITHMETIC = {op: op.value for op in ast.ArithmeticOp}  # + - * /
TEMPORAL_KINDS = ("date", "datetime")


@dataclass(frozen=True)
class _Sql:
    fragment: Fragment
    kind: str


@dataclass(frozen=True)
class _Value:
    value: Any


def compile_filter(
    node: ast.Node,
    queryables: Mapping[str, Queryable],
    geometry_sql: str,
    geometry_names: set[str],
    local: tzinfo,
    dialect: SqlDialect = SQLITE,
) -> CompiledFilter:
    compiler = _Compiler(queryables, geometry_sql, geometry_names, local, dialect)
    spatial: list[SpatialTest] = []
    rest: list[Fragment] = []
    for conjunct in _conjuncts(node):
        test = compiler.spatial_test(conjunct)
        if test is not None and test.operation != "disjoint":
            spatial.append(test)  # the provider puts the R-tree in front of it
        else:
            rest.append(compiler.condition(conjunct))
    return CompiledFilter(all_of(rest), tuple(spatial))


def _conjuncts(node: ast.Node) -> list[ast.Node]:
    if isinstance(node, ast.And):
        return _conjuncts(node.lhs) + _conjuncts(node.rhs)
    return [node]


class _Compiler:
    def __init__(
        self,
        queryables: Mapping[str, Queryable],
        geometry_sql: str,
        geometry_names: set[str],
        local,
        dialect: SqlDialect = SQLITE,
    ):
        self.dialect = dialect
        self.queryables = queryables
        self.geometry_sql = geometry_sql
        self.geometry_names = geometry_names
        self.local = local

    # ------------------------------------------------------------------ conditions

    def condition(self, node: Any) -> Fragment:  # noqa: C901 - one dispatch table, flat
        if isinstance(node, ast.And):
            return all_of([self.condition(node.lhs), self.condition(node.rhs)])
        if isinstance(node, ast.Or):
            return any_of([self.condition(node.lhs), self.condition(node.rhs)])
        if isinstance(node, ast.Not):
            return negate(self.condition(node.sub_node))
        if isinstance(node, ast.Comparison):
            lhs, rhs = self.bind(self.operand(node.lhs), self.operand(node.rhs))
            return Fragment(f"{lhs.sql} {COMPARISONS[node.op]} {rhs.sql}", lhs.params + rhs.params)
        if isinstance(node, ast.Between):
            subject = self.operand(node.lhs)
            lhs, low = self.bind(subject, self.operand(node.low))
            _, high = self.bind(subject, self.operand(node.high))
            word = "NOT BETWEEN" if node.not_ else "BETWEEN"
            return Fragment(f"{lhs.sql} {word} {low.sql} AND {high.sql}", lhs.params + low.params + high.params)
        if isinstance(node, ast.Like):
            return self.like(node)
        if isinstance(node, ast.In):
            subject = self.operand(node.lhs)
            options = [self.bind(subject, self.operand(option))[1] for option in node.sub_nodes]
            if not options:
                return TRUE if node.not_ else FALSE
            lhs = self.sql_of(subject)
            word = "NOT IN" if node.not_ else "IN"
            placeholders = ", ".join(o.sql for o in options)
            params = lhs.params + tuple(p for o in options for p in o.params)
            return Fragment(f"{lhs.sql} {word} ({placeholders})", params)
        if isinstance(node, ast.IsNull):
            if isinstance(node.lhs, ast.Attribute) and node.lhs.name in self.geometry_names:
                subject = Fragment(self.geometry_sql)
            else:
                subject = self.sql_of(self.operand(node.lhs))
            return Fragment(f"{subject.sql} IS {'NOT ' if node.not_ else ''}NULL", subject.params)
        if isinstance(node, ast.Exists):
            present = isinstance(node.lhs, ast.Attribute) and (
                node.lhs.name in self.queryables or node.lhs.name in self.geometry_names
            )
            return TRUE if present != node.not_ else FALSE
        if isinstance(node, ast.Include):
            return FALSE if node.not_ else TRUE
        if isinstance(node, ast.TemporalPredicate):
            return self.temporal(node)
        test = self.spatial_test(node)
        if test is not None:
            # not at the top level (under OR/NOT): no R-tree help, the exact test on every row
            return self.dialect.spatial_test(self.geometry_sql, test.operation, test.geometry)
        if isinstance(node, (ast.SpatialDistancePredicate, ast.ArrayPredicate)):
            raise FilterError(f"{type(node).__name__} is not supported by this server")
        if isinstance(node, bool):
            return TRUE if node else FALSE
        raise FilterError(f"unsupported filter expression {type(node).__name__}")

    def like(self, node: ast.Like) -> Fragment:
        operand = self.operand(node.lhs)
        kind = operand.kind if isinstance(operand, _Sql) else "string"
        subject = self.sql_of(operand)
        pattern = node.pattern
        if isinstance(pattern, ast.Function):  # CASEI('%ЛЕНИНА%'): folded here, the property is folded in SQL
            folded = self.function(pattern)
            pattern = folded.value if isinstance(folded, _Value) else None
        if not isinstance(pattern, str):
            raise FilterError("LIKE needs a text pattern")
        if node.nocase:
            subject = Fragment(self.dialect.casefold(subject.sql, kind), subject.params)
            pattern = pattern.casefold()
        # CQL2 fixes the wildcards as % and _ with \ escaping; pygeofilter reports "." as the single
        # character wildcard, which would make "ул. Ленина" match "улX Ленина", so _ it is (in the dialect).
        return self.dialect.like(
            subject, kind, pattern, negated=node.not_, wildcard=node.wildcard or "%", escape=node.escapechar or "\\"
        )

    def temporal(self, node: ast.TemporalPredicate) -> Fragment:
        subject = self.operand(node.lhs)
        if not isinstance(subject, _Sql) or subject.kind not in TEMPORAL_KINDS:
            raise FilterError("temporal predicates compare a date or date-time property with a time")
        start, end = self.time_range(node.rhs, subject.kind)
        column = subject.fragment
        present = Fragment(f"{column.sql} IS NOT NULL", column.params)

        def compare(op: str, value: str | None) -> Fragment:
            if value is None:
                return TRUE
            return Fragment(f"{column.sql} {op} ?", column.params + (value,))

        if isinstance(node, ast.TimeAfter):
            return compare(">", end) if end is not None else FALSE
        if isinstance(node, ast.TimeBefore):
            return compare("<", start) if start is not None else FALSE
        if isinstance(node, ast.TimeDuring):
            return all_of([compare(">", start), compare("<", end), present])
        if isinstance(node, (ast.TimeOverlaps, ast.TimeEquals)):
            # pygeofilter maps CQL2 T_INTERSECTS to TimeOverlaps; an instant property "overlapping" an
            # interval can only mean lying within it, which is T_INTERSECTS for instants.
            return all_of([compare(">=", start), compare("<=", end), present])
        if isinstance(node, ast.TimeBeforeOrDuring):
            return all_of([compare("<=", end), present])
        if isinstance(node, ast.TimeDuringOrAfter):
            return all_of([compare(">=", start), present])
        raise FilterError(f"{type(node).__name__} is not supported for instant (single property) times")

    def time_range(self, value: Any, kind: str) -> tuple[str | None, str | None]:
        """First and last stored value an instant or interval covers, in the column's storage form."""
        if isinstance(value, values.Interval):
            start = None if value.start is None else self.time_range(value.start, kind)[0]
            end = None if value.end is None else self.time_range(value.end, kind)[1]
            return start, end
        if isinstance(value, ast.Function):
            value = self.function_value(value)
        if isinstance(value, timedelta):
            raise FilterError("durations in intervals are not supported; give both ends as times")
        if isinstance(value, datetime):
            text = stored_text(value, self.local)
            return (as_date_text(text, self.local),) * 2 if kind == "date" else (text, text)
        if isinstance(value, date):
            if kind == "date":
                return value.isoformat(), value.isoformat()
            return day_start(value, self.local), day_end(value, self.local)
        if isinstance(value, str):
            try:
                first, last = bound(value, end=False, local=self.local), bound(value, end=True, local=self.local)
            except TimeQueryError as exc:
                raise FilterError(str(exc)) from None
            if kind == "date":
                return as_date_text(first, self.local), as_date_text(last, self.local)
            return first, last
        raise FilterError(f"{value!r} is not a time")

    # ------------------------------------------------------------------ spatial

    def spatial_test(self, node: Any) -> SpatialTest | None:
        """The predicate as (operation, literal) when it is a spatial one on our geometry, else None."""
        if isinstance(node, ast.BBox):
            self.require_geometry(node.lhs)
            literal = lonlat_from(shapely.box(node.minx, node.miny, node.maxx, node.maxy), node.crs)
            return SpatialTest("intersects", literal, box=node.crs is None)
        if isinstance(node, ast.Relate):
            literal, mirrored = self.spatial_operands(node.lhs, node.rhs)
            pattern = transpose_de9im(node.pattern) if mirrored else node.pattern
            return SpatialTest(f"relate:{pattern}", literal)
        operation = SPATIAL_OPERATIONS.get(type(node))
        if operation is None:
            return None
        literal, mirrored = self.spatial_operands(node.lhs, node.rhs)
        literal_node = node.lhs if mirrored else node.rhs
        if mirrored:
            operation = MIRRORED.get(operation, operation)
        box = operation == "intersects" and isinstance(literal_node, values.Envelope | ast.Function)
        return SpatialTest(operation, literal, box=box)

    def spatial_operands(self, lhs: Any, rhs: Any) -> tuple[shapely.Geometry, bool]:
        """The literal, and whether the feature geometry is on the right (the operation mirrors)."""
        if self.is_geometry_attribute(lhs):
            return self.geometry_literal(rhs), False
        if self.is_geometry_attribute(rhs):
            return self.geometry_literal(lhs), True
        raise FilterError("spatial predicates compare the feature geometry with a geometry literal")

    def is_geometry_attribute(self, node: Any) -> bool:
        return isinstance(node, ast.Attribute) and node.name in self.geometry_names

    def require_geometry(self, node: Any) -> None:
        if not self.is_geometry_attribute(node):
            raise FilterError(f"BBOX applies to the geometry ({sorted(self.geometry_names)[0]})")

    def geometry_literal(self, node: Any) -> shapely.Geometry:
        if isinstance(node, values.Geometry):
            crs = node.geometry.get("crs", {}).get("properties", {}).get("name")
            try:
                geometry = shapely.geometry.shape(node.geometry)
            except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException) as exc:
                raise FilterError(f"invalid geometry in filter: {exc}") from None
            geometry = lonlat_from(geometry, crs)
        elif isinstance(node, values.Envelope):
            geometry = envelope_box(node)
        elif isinstance(node, ast.Function) and node.name.lower() == "bbox" and len(node.arguments) == 4:
            minx, miny, maxx, maxy = (float(v) for v in node.arguments)
            geometry = shapely.box(minx, miny, maxx, maxy)
        else:
            raise FilterError("spatial predicates need a geometry literal (WKT, GeoJSON or BBOX)")
        if geometry.is_empty:
            raise FilterError("empty geometry in filter")
        return geometry

    # ------------------------------------------------------------------ scalar operands

    def operand(self, node: Any) -> _Sql | _Value:
        if isinstance(node, ast.Attribute):
            if node.name in self.geometry_names:
                raise FilterError(f"{node.name!r} is the geometry: use spatial predicates on it")
            queryable = self.queryables.get(node.name)
            if queryable is None:
                raise FilterError(f"{node.name!r} is not a queryable of this collection")
            return _Sql(Fragment(queryable.sql), queryable.kind)
        if isinstance(node, ast.Function):
            return self.function(node)
        if isinstance(node, ast.Arithmetic):
            lhs, rhs = self.bind(self.operand(node.lhs), self.operand(node.rhs))
            return _Sql(Fragment(f"({lhs.sql} {ARITHMETIC[node.op]} {rhs.sql})", lhs.params + rhs.params), "number")
        if isinstance(node, (str, int, float, bool, date, datetime)) or node is None:
            return _Value(node)
        raise FilterError(f"unsupported value in filter: {type(node).__name__}")

    def function(self, node: ast.Function) -> _Sql | _Value:
        name = node.name.lower()
        if name in ("lower", "casei", "accenti"):
            if len(node.arguments) != 1:
                raise FilterError(f"{node.name} takes one argument")
            folder = self.dialect.accent_fold if name == "accenti" else self.dialect.casefold
            argument = self.operand(node.arguments[0])
            if isinstance(argument, _Value):
                return _Value(accent_fold(argument.value) if name == "accenti" else casefold(argument.value))
            folded = folder(argument.fragment.sql, argument.kind)
            return _Sql(Fragment(folded, argument.fragment.params), argument.kind)
        return _Value(self.function_value(node))

    def function_value(self, node: ast.Function) -> date | datetime:
        name = node.name.lower()
        if name not in ("timestamp", "date") or len(node.arguments) != 1 or not isinstance(node.arguments[0], str):
            raise FilterError(f"unknown function {node.name}()")
        text = node.arguments[0]
        try:
            if name == "date":
                return date.fromisoformat(text)
            return datetime.fromisoformat(text)
        except ValueError:
            raise FilterError(f"{node.name}({text!r}) is not a valid {name}") from None

    def bind(self, a: _Sql | _Value, b: _Sql | _Value) -> tuple[Fragment, Fragment]:
        """Both sides as SQL; a literal takes the storage form of the property it is compared with."""
        kind = a.kind if isinstance(a, _Sql) else b.kind if isinstance(b, _Sql) else None
        return self.sql_of(a, kind), self.sql_of(b, kind)

    def sql_of(self, operand: _Sql | _Value, kind: str | None = None) -> Fragment:
        if isinstance(operand, _Sql):
            return operand.fragment
        value = self.storage_value(operand.value, kind)
        return Fragment("NULL") if value is None else Fragment("?", (self.dialect.literal(value, kind),))

    def storage_value(self, value: Any, kind: str | None) -> Any:  # noqa: C901 - a type table
        if value is None:
            return None
        if isinstance(value, bool):
            if kind not in (None, "boolean", "integer", "number"):
                raise FilterError(f"cannot compare a {kind} property with a boolean")
            return int(value)
        if isinstance(value, datetime):
            text = stored_text(value, self.local)
            return as_date_text(text, self.local) if kind == "date" else text
        if isinstance(value, date):
            return day_start(value, self.local) if kind == "datetime" else value.isoformat()
        if isinstance(value, str) and kind == "datetime":
            try:
                return bound(value, end=False, local=self.local)
            except TimeQueryError:
                return value  # not a time: compare as text, as the client wrote it
        if isinstance(value, str) and kind == "boolean" and value.lower() in ("true", "false"):
            return int(value.lower() == "true")
        if isinstance(value, int):
            return sql_integer(value)
        return value
