"""Where the SQL of a feature query depends on the engine: folding, LIKE, exact spatial tests, time columns, free
text and NULL order. `SqlDialect` is SQLite over the GeoPackage (our Python SQL functions); the PostgreSQL one is
`server.features.pg_sql.PostgresDialect`. Everything else (parsing, typing literals, paging) is shared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import shapely

from server.features.filter_parse import like_glob
from server.published.sql import ACCENT_FOLD, CASEFOLD, FALSE, SPATIAL_TEST, TRUE, Fragment, any_of


class SqlDialect:
    """SQLite: values travel as `?`, geometry tests call `gpkg_spatial_test`, NULLs sort first ascending."""

    name = "sqlite"

    def casefold(self, sql: str, kind: str) -> str:
        return f"{CASEFOLD}({sql})"

    def accent_fold(self, sql: str, kind: str) -> str:
        return f"{ACCENT_FOLD}({sql})"

    def like(
        self, subject: Fragment, kind: str, pattern: str, *, negated: bool, wildcard: str, escape: str
    ) -> Fragment:
        # GLOB, not LIKE: SQLite's LIKE ignores ASCII case only, CQL2 LIKE is case-sensitive.
        glob = like_glob(pattern, wildcard=wildcard, single="_", escape=escape)
        word = "NOT GLOB" if negated else "GLOB"
        return Fragment(f"{subject.sql} {word} ?", subject.params + (glob,))

    def spatial_test(self, geometry_sql: str, operation: str, literal: shapely.Geometry) -> Fragment:
        """The exact test, row by row (no index in front)."""
        return Fragment(f"{SPATIAL_TEST}({geometry_sql}, ?, ?)", (operation, shapely.to_wkb(literal)))

    def time_column(self, sql: str) -> str:
        # the unary + keeps SQLite off the time indexes (see query.TimeWindow.fragment)
        return "+" + sql

    def free_text(self, texts: Sequence[str], terms: Sequence[str]) -> Fragment:
        """Any term in any of the text expressions, ignoring case; terms are already case-folded."""
        if not terms or not texts:
            return TRUE if not terms else FALSE
        # one Python call per row, not per column: the text fields joined by a unit separator no term contains
        joined = " || char(31) || ".join(f"coalesce({expr}, '')" for expr in texts)
        return any_of(Fragment(f"instr({CASEFOLD}({joined}), ?) > 0", (term,)) for term in terms)

    def order_term(self, expr: str, descending: bool, nullable: bool) -> str:
        return f"{expr} {'DESC' if descending else 'ASC'}"

    def literal(self, value: Any, kind: str | None) -> Any:
        """A literal compared with a property of `kind`, as this engine needs it (SQLite's affinity does the rest)."""
        return value


SQLITE = SqlDialect()
