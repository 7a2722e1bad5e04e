"""The units every reader yields and every stage passes on: raw records, rejects, source errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class SourceError(Exception):
    """A whole source file is unusable (missing, empty, wrong encoding, truncated, unknown columns)."""

    def __init__(self, source: str, message: str):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message

    def __reduce__(self):  # pickled as made (a reader process hands its errors over): not from the joined text
        return type(self), (self.source, self.message)


@dataclass
class RawRecord:
    """One row or feature as read, before any typing; `number` is what a person finds in the file."""

    source: str
    number: str  # "row 14" (spreadsheet numbering, header = row 1) or "feature 3"
    values: dict[str, Any]
    geometry: Any = None  # shapely geometry in the source CRS, for vector formats
    error: str | None = None  # the reader could not make sense of this record
    error_field: str | None = None


def raw_text(values: dict[str, Any]) -> str:
    """A rejected record's cells as one line for the rejects file (the reader's own `_` keys left out)."""
    return "; ".join(f"{k}={v}" for k, v in values.items() if not str(k).startswith("_") and v not in (None, ""))[:500]


@dataclass
class RowBatch:
    """Consecutive well-formed rows of a delimited file, their cells in header order: a reader that
    has them as lists passes them on as they are, and `collect` types them column by column (a dict
    per row and a Python step per cell cost more than the rest of the ingest at a million rows)."""

    source: str
    header: list[str]
    numbers: list[str]
    rows: list[list[str]]

    def records(self) -> Iterator[RawRecord]:
        for number, row in zip(self.numbers, self.rows, strict=True):
            yield RawRecord(self.source, number, dict(zip(self.header, row, strict=True)))


@dataclass
class ColumnBatch:
    """A piece of a delimited file: its well-formed rows in file order as Arrow text columns (header
    order), and the records rejected among them, each after the number of rows that precede it.
    Built for a million rows at a time what RowBatch is for a few hundred: `collect` types whole columns."""

    source: str
    header: list[str]
    lines: Any  # numpy int64: the file line of each row (`collect` makes their "line N" in Arrow)
    columns: list[Any]  # pyarrow StringArray per header column, no nulls
    rejects: list[tuple[int, RawRecord]] = field(default_factory=list)
    # per column, its dictionary encoding (pyarrow DictionaryArray) where the reader made one (a column of
    # repeated texts), else None: made by the read-ahead thread without the GIL, not by the build's own thread
    encoded: list[Any] | None = None

    @property
    def numbers(self) -> list[str]:
        return [f"line {n}" for n in self.lines.tolist()]

    def records(self) -> Iterator[RawRecord]:
        rejects = iter(self.rejects)
        pending = next(rejects, None)
        texts = [column.to_pylist() for column in self.columns]
        for position, number in enumerate(self.numbers):
            while pending is not None and pending[0] <= position:
                yield pending[1]
                pending = next(rejects, None)
            yield RawRecord(self.source, number, dict(zip(self.header, (t[position] for t in texts), strict=True)))
        while pending is not None:
            yield pending[1]
            pending = next(rejects, None)


class BatchedRecords(Iterator[RawRecord]):
    """A reader's records one by one, in file order, over a stream that has its runs of well-formed
    rows as RowBatch or ColumnBatch; `collect` reads `batches` instead (one or the other, never both). A table whose
    records are replaced (`dataclasses.replace(table, records=...)`) loses the batches with them."""

    def __init__(self, batches: Iterator[RawRecord | RowBatch | ColumnBatch]):
        self.batches = batches
        self._records = self._flattened()

    def _flattened(self) -> Iterator[RawRecord]:
        for item in self.batches:
            if isinstance(item, (RowBatch, ColumnBatch)):
                yield from item.records()
            else:
                yield item

    def __next__(self) -> RawRecord:
        return next(self._records)


@dataclass
class SourceTable:
    """A source opened for reading: its columns are known before any record is read."""

    source: str
    columns: list[str]
    records: Iterator[RawRecord]
    close: Callable[[], None] = lambda: None  # for a reader that stops before the last record
    crs: str | None = None  # the CRS the file itself states (WKT), None when it states none
    # GeoJSON has no header: its columns are read off its features, so one without features has
    # every column the catalog asks for, and no record in any of them (valid and empty: the map clears)
    columns_open: bool = False

    def __enter__(self) -> SourceTable:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class Reject:
    source: str
    record: str
    field: str
    reason: str
    raw: str = ""

    def as_row(self) -> dict[str, str]:
        return {
            "source_file": self.source,
            "record": self.record,
            "field": self.field,
            "reason": self.reason,
            "raw": self.raw,
        }


@dataclass
class Counts:
    read: int = 0
    published: int = 0
    repaired: int = 0
    rejected: int = 0
    skipped: int = 0  # records that belong to another layer of the same feed (`select`)
    by_source: dict[str, int] = field(default_factory=dict)
