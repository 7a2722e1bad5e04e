"""SQL text for the GeoPackage provider: the one identifier-quoting function and parameterised fragments."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# SQL functions we register on every connection (see provider_layer.connect); named here so that the
# modules writing SQL and the one registering the Python code agree.
SPATIAL_TEST = "gpkg_spatial_test"
CASEFOLD = "casefold"
ACCENT_FOLD = "accent_fold"


def casefold(value: object) -> object:
    """CASEI and q: Unicode case folding (SQLite's own lower() and LIKE fold ASCII only, not Cyrillic)."""
    return value.casefold() if isinstance(value, str) else value


def accent_fold(value: object) -> object:
    """ACCENTI: combining marks dropped, so "ё" compares equal to "е"."""
    if not isinstance(value, str):
        return value
    decomposed = unicodedata.normalize("NFD", value)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def quote_identifier(name: str) -> str:
    """The only way an identifier enters our SQL: double-quoted with embedded quotes doubled.
    Values never do; they always travel as `?` parameters."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def column(alias: str, name: str) -> str:
    return f"{quote_identifier(alias)}.{quote_identifier(name)}"


@dataclass(frozen=True)
class Fragment:
    """A piece of SQL and the values of its `?` placeholders, in order."""

    sql: str
    params: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        # A cheap guard against a placeholder/value mismatch surfacing later as a confusing sqlite error.
        if self.sql.count("?") != len(self.params):
            raise ValueError(f"{self.sql.count('?')} placeholders but {len(self.params)} values in {self.sql!r}")


# keywords, not 1/0: PostgreSQL wants a boolean in WHERE (SQLite ≥ 3.23 reads them as 1 and 0)
TRUE = Fragment("TRUE")
FALSE = Fragment("FALSE")


def all_of(fragments: Iterable[Fragment]) -> Fragment:
    parts = [f for f in fragments if f != TRUE]
    if not parts:
        return TRUE
    if len(parts) == 1:
        return parts[0]
    return Fragment(" AND ".join(f"({f.sql})" for f in parts), tuple(p for f in parts for p in f.params))


def any_of(fragments: Iterable[Fragment]) -> Fragment:
    parts = [f for f in fragments if f != FALSE]
    if not parts:
        return FALSE
    if len(parts) == 1:
        return parts[0]
    return Fragment(" OR ".join(f"({f.sql})" for f in parts), tuple(p for f in parts for p in f.params))


def negate(fragment: Fragment) -> Fragment:
    return Fragment(f"NOT ({fragment.sql})", fragment.params)


def sql_integer(value: int) -> int | float:
    """SQLite integers are 64-bit and the driver refuses a larger Python int; as REAL it still compares as the
    number it is (an id or count that large simply matches nothing)."""
    return value if -(2**63) <= value < 2**63 else float(value)
