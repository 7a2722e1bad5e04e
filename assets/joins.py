"""Attribute tables joined onto a source (deputies onto districts, officers onto precincts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from assets.records import Reject, SourceError
from assets.sources.tabular import read_csv, read_xlsx
from layers.catalog import JoinSpec, SourceSpec


def join_key(value: object) -> str | None:
    """Keys compare as text, with numbers written plainly: 7, 7.0, "7" and " 07 " all meet."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip()
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        return text.lower() or None
    return str(int(number)) if number.is_integer() else text


@dataclass
class JoinOutcome:
    rejects: list[Reject] = field(default_factory=list)
    unmatched_records: int = 0


def apply_joins(table: pd.DataFrame, source: SourceSpec, resolve, label) -> tuple[pd.DataFrame, JoinOutcome]:
    """`table` with the joined columns added under their own names; rows of a joined table that
    match no record are rejects (an office listed for a district that does not exist is news)."""
    outcome = JoinOutcome()
    by_field = {target: column for column, target in source.columns.items()}
    for join in source.joins:
        rows = _load(join, resolve(join.path), label(join.path))
        ((left_field, right_column),) = join.match.items()
        left = table[by_field[left_field]].map(join_key)
        lookup: dict[str, dict] = {}
        for number, values in rows:
            key = join_key(values.get(right_column))
            if key in lookup:
                outcome.rejects.append(Reject(label(join.path), number, right_column, f"duplicate key {key!r}"))
                continue
            lookup[key] = values
        wanted = set(left.dropna())
        for number, values in rows:
            key = join_key(values.get(right_column))
            if key not in wanted:
                outcome.rejects.append(
                    Reject(
                        label(join.path),
                        number,
                        right_column,
                        f"matches no {left_field} of the layer",
                        str(values.get(right_column)),
                    )
                )
        for column in join.columns:
            table[column] = left.map(lambda k, c=column, rows=lookup: rows.get(k, {}).get(c))
        outcome.unmatched_records += int((~left.isin(lookup)).sum())
    return table, outcome


def _load(join: JoinSpec, path: Path, label: str) -> list[tuple[str, dict]]:
    if not path.exists():
        raise SourceError(label, f"file not found (looked for {path})")
    if join.format == "csv":
        table = read_csv(path, label, join.encoding, join.delimiter, set(join.columns) | set(join.match.values()))
    else:
        table = read_xlsx(path, label, join.sheet)
    missing = [c for c in [*join.columns, *join.match.values()] if c not in table.columns]
    if missing:
        raise SourceError(label, f"column(s) {missing} not found; the file has {table.columns}")
    return [(r.number, r.values) for r in table.records if not r.error]


def joined_columns(source: SourceSpec) -> dict[str, str]:
    """The source's column mapping extended with the joined tables' columns."""
    mapping = dict(source.columns)
    for join in source.joins:
        mapping.update(join.columns)
    return mapping
