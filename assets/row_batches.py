"""A CSV's runs of split rows (RowBatch) into `collect`'s columns, placeholder cells emptied.

The record path of `collect` costs a dict per record and a Python step per cell: at a million rows more
than the rest of the ingest. Here each run's cells are transposed and passed through their column's
lookup in one call, with the same outcome cell for cell (tests/test_csv_batches.py, benchmarks/diff_ingest.py).
"""

from __future__ import annotations

from assets.records import BatchedRecords, Reject, RowBatch, raw_text

# after this many records, a column whose values are mostly distinct stops sharing its strings
SHARING_SAMPLE = 20_000


class _Shared(dict):
    """One column's distinct strings, each mapped to itself or, for a placeholder, to None; the test
    runs when a string first enters the column (`__missing__`), so a lookup per cell costs a C call."""

    def __init__(self, words: set[str], kept: set[str]):
        super().__init__()
        self.words, self.kept = words, kept

    def __missing__(self, value: str) -> str | None:
        word = value.strip().casefold()
        known = self[value] = None if word in self.words and word not in self.kept else value
        return known


def collect_rows(
    records: BatchedRecords,
    rejects: list[Reject],
    warnings: list[str],
    data: dict[str, list],
    words: set[str],
    kept: dict[str, set[str]],
    short: int,
) -> list[str]:
    """The record numbers of the well-formed rows, whose cells are appended to `data` column by column
    (None for a placeholder: trimmed and casefolded one of `words`, not `kept` by the column's values
    mapping); the reader's rejects and file warnings go to `rejects` and `warnings`. Each run's cells go
    through their column's `_Shared`, or, in a column of mostly distinct texts after the first
    SHARING_SAMPLE records, only the texts of at most `short` characters are tested: exactly what
    `collect`'s record path does per cell."""
    shared = {column: _Shared(words, kept[column]) for column in data}
    distinct: dict[str, bool] = {}  # column → stopped sharing, decided at SHARING_SAMPLE records
    numbers: list[str] = []
    for item in records.batches:
        if not isinstance(item, RowBatch):
            if item.number == "file":
                warnings.append(f"{item.source}: {item.error}")
                continue
            assert item.error, "a reader passes on a record outside a RowBatch only to reject it"
            rejects.append(Reject(item.source, item.number, item.error_field or "", item.error, raw_text(item.values)))
            continue
        rows, item_numbers = item.rows, item.numbers
        if not distinct and len(numbers) + len(rows) >= SHARING_SAMPLE:
            # the sharing is decided after exactly SHARING_SAMPLE records: this run is split there
            cut = SHARING_SAMPLE - len(numbers)
            _add_rows(data, shared, distinct, item.header, rows[:cut], words, kept, short)
            numbers += item_numbers[:cut]
            rows, item_numbers = rows[cut:], item_numbers[cut:]
            distinct.update({c: len(s) > SHARING_SAMPLE // 2 for c, s in shared.items()})
            for column in (c for c, stopped in distinct.items() if stopped):
                shared[column].clear()  # ids, WKT, phone numbers: a dict of them would only cost memory
        _add_rows(data, shared, distinct, item.header, rows, words, kept, short)
        numbers += item_numbers
    return numbers


def _add_rows(
    data: dict[str, list],
    shared: dict[str, _Shared],
    distinct: dict[str, bool],
    header: list[str],
    rows: list[list[str]],
    words: set[str],
    kept: dict[str, set[str]],
    short: int,
) -> None:
    if not rows:
        return
    position = {name: i for i, name in enumerate(header)}  # a name twice: the record dict kept the last
    cells = list(zip(*rows, strict=True))
    for column, values in data.items():
        if column not in position:
            values.extend([None] * len(rows))
        elif not distinct.get(column):
            values.extend(map(shared[column].__getitem__, cells[position[column]]))
        else:
            dropped = kept[column]
            values.extend(
                [
                    None if len(v) <= short and (w := v.strip().casefold()) in words and w not in dropped else v
                    for v in cells[position[column]]
                ]
            )
