"""Utility outage notices: a text table whose address column lists many buildings per notice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from assets.addresses import parse_address_list
from assets.records import RawRecord, SourceTable
from assets.sources.tabular import read_csv

BUILDING = "_building"  # the parsed BuildingAddress travels with the record to the geocoder


def read_notices(
    path: Path, source: str, encoding: str, delimiter: str, expected: set[str], address_column: str
) -> SourceTable:
    """One record per building a notice names. Its id is the notice number (first column, which
    is how utilities number notices) plus the building, so it is stable across re-publications."""
    table = read_csv(path, source, encoding, delimiter, expected | {address_column})
    return replace(table, columns=[*table.columns, "record_id"], records=_expand(table, address_column))


def _expand(table: SourceTable, address_column: str) -> Iterator[RawRecord]:
    notice_column = table.columns[0] if table.columns else None
    for record in table.records:
        if record.error or address_column not in record.values:
            yield record
            continue
        text = str(record.values.get(address_column) or "")
        buildings, not_understood = parse_address_list(text)
        if not buildings and not not_understood:
            yield replace(record, error="the notice lists no address", error_field=address_column)
        # each address a notice lists is a record of its own: numbered, so that its reject is told
        # apart from its neighbours' (a bad date rejects every building of the notice)
        numbers = iter(_numbered(record.number, len(not_understood) + len(buildings)))
        for fragment in not_understood:
            yield replace(
                record,
                number=next(numbers),
                values={**record.values, address_column: fragment},
                error=f"address not understood: {fragment!r}",
                error_field=address_column,
            )
        notice = str(record.values.get(notice_column) or "").strip()
        for building in buildings:
            single = f"{building.street}, {building.house}"
            yield replace(
                record,
                number=next(numbers),
                values={
                    **record.values,
                    address_column: single,
                    BUILDING: building,
                    "record_id": f"{notice}/{building.street}/{building.house}",
                },
            )


def _numbered(number: str, count: int) -> list[str]:
    """`line 4` for a notice naming one address; `line 4, address 2 of 3` when it names several."""
    return [number] if count == 1 else [f"{number}, address {k} of {count}" for k in range(1, count + 1)]
