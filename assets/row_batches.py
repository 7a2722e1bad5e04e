"""A CSV's runs of split rows (RowBatch) into `collect`'s columns, placeholder cells emptied.

The record path of `collect` costs a dict per record and a Python step per cell: at a million rows more
than the rest of the ingest. Here each run's cells are transposed and passed through their column's
lookup in one call, with the same outcome cell for cell (tests/test_csv_batches.py, benchmarks/diff_ingest.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.records import BatchedRecords, ColumnBatch, Reject, RowBatch, raw_text

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
    rows: int | None = None,
    arrow: frozenset[str] = frozenset(),
) -> Iterator[pa.Array]:
    """The record numbers ("line 14", Arrow texts) of the well-formed rows, whose cells are appended to `data`
    column by column, a numpy array of objects per run (None for a placeholder: trimmed and casefolded one of
    `words`, not `kept` by the column's values mapping); the reader's rejects and file warnings go to `rejects`
    and `warnings`. Each run's cells go through their column's `_Shared`, or, in a column of mostly distinct
    texts after the first
    SHARING_SAMPLE records, only the texts of at most `short` characters are tested: exactly what
    `collect`'s record path does per cell. The numbers are yielded each time at least `rows` are in (the
    caller takes the cells out of `data`, `rejects` and `warnings` then) and once at the end. The cells of
    the `arrow` columns (the WKT, which only Arrow and GEOS read) stay Arrow arrays, a placeholder null."""
    shared = {column: _Shared(words, kept[column]) for column in data}
    distinct: dict[str, bool] = {}  # column → stopped sharing, decided at SHARING_SAMPLE records
    numbers: list[np.ndarray | list[str]] = []  # a piece's line numbers, a run's record numbers
    count = 0  # records in `numbers`
    seen = 0  # records before this chunk's
    for item in records.batches:
        if rows is not None and count >= rows:
            yield record_numbers(numbers)
            seen += count
            numbers, count = [], 0
            # Arrow's allocator keeps the pieces' freed buffers for reuse; the rest of the build is Python's
            pa.default_memory_pool().release_unused()
        if isinstance(item, ColumnBatch):
            for _, reject in item.rejects:
                rejects.append(
                    Reject(
                        reject.source, reject.number, reject.error_field or "", reject.error, raw_text(reject.values)
                    )
                )
            columns, lines = item.columns, item.lines
            encoded = item.encoded or [None] * len(columns)
            if not distinct and seen + count + len(lines) >= SHARING_SAMPLE:
                cut = SHARING_SAMPLE - seen - count
                head = [c.slice(0, cut) for c in columns]
                _add_columns(data, shared, distinct, item.header, head, words, kept, short, arrow, [None] * len(head))
                numbers.append(lines[:cut])
                count += len(numbers[-1])
                columns, lines = [c.slice(cut) for c in columns], lines[cut:]
                encoded = [None] * len(columns)  # coded here: the reader's dictionaries hold the head's texts too
                distinct.update({c: len(s) > SHARING_SAMPLE // 2 for c, s in shared.items()})
                for column in (c for c, stopped in distinct.items() if stopped):
                    shared[column].clear()
            _add_columns(data, shared, distinct, item.header, columns, words, kept, short, arrow, encoded)
            numbers.append(lines)
            count += len(lines)
            continue
        if not isinstance(item, RowBatch):
            if item.number == "file":
                warnings.append(f"{item.source}: {item.error}")
                continue
            assert item.error, "a reader passes on a record outside a RowBatch only to reject it"
            rejects.append(Reject(item.source, item.number, item.error_field or "", item.error, raw_text(item.values)))
            continue
        batch_rows, item_numbers = item.rows, item.numbers
        if not distinct and seen + count + len(batch_rows) >= SHARING_SAMPLE:
            # the sharing is decided after exactly SHARING_SAMPLE records: this run is split there
            cut = SHARING_SAMPLE - seen - count
            _add_rows(data, shared, distinct, item.header, batch_rows[:cut], words, kept, short, arrow)
            numbers.append(item_numbers[:cut])
            count += len(numbers[-1])
            batch_rows, item_numbers = batch_rows[cut:], item_numbers[cut:]
            distinct.update({c: len(s) > SHARING_SAMPLE // 2 for c, s in shared.items()})
            for column in (c for c, stopped in distinct.items() if stopped):
                shared[column].clear()  # ids, WKT, phone numbers: a dict of them would only cost memory
        _add_rows(data, shared, distinct, item.header, batch_rows, words, kept, short, arrow)
        numbers.append(item_numbers)
        count += len(item_numbers)
    # Arrow's allocator keeps the pieces' freed buffers for reuse; the rest of the build is Python's
    pa.default_memory_pool().release_unused()
    yield record_numbers(numbers)


def record_numbers(parts: list[np.ndarray | list[str]]) -> pa.Array:
    """One Arrow text array of record numbers: a piece's line numbers (numpy) become "line N" in Arrow, not
    a Python string each; a run's numbers are texts already."""
    arrays = [
        pa.array(part, pa.string())
        if isinstance(part, list)
        else pc.binary_join_element_wise("line ", pc.cast(pa.array(part, pa.int64()), pa.string()), "")
        for part in parts
        if len(part)
    ]
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())


def _add_rows(
    data: dict[str, list],
    shared: dict[str, _Shared],
    distinct: dict[str, bool],
    header: list[str],
    rows: list[list[str]],
    words: set[str],
    kept: dict[str, set[str]],
    short: int,
    arrow: frozenset[str] = frozenset(),
) -> None:
    if not rows:
        return
    position = {name: i for i, name in enumerate(header)}  # a name twice: the record dict kept the last
    cells = list(zip(*rows, strict=True))
    for column, values in data.items():
        if column not in position:
            values.append(np.full(len(rows), None, dtype=object))
        elif not distinct.get(column):
            values.append(np.fromiter(map(shared[column].__getitem__, cells[position[column]]), object, len(rows)))
        else:
            dropped = kept[column]
            values.append(
                np.fromiter(
                    (
                        None if len(v) <= short and (w := v.strip().casefold()) in words and w not in dropped else v
                        for v in cells[position[column]]
                    ),
                    object,
                    len(rows),
                )
            )
        if column in arrow:
            values[-1] = pa.array(values[-1], pa.string())


def _add_columns(
    data: dict[str, list],
    shared: dict[str, _Shared],
    distinct: dict[str, bool],
    header: list[str],
    columns: list[pa.Array],
    words: set[str],
    kept: dict[str, set[str]],
    short: int,
    arrow: frozenset[str] = frozenset(),
    encoded: list[pa.DictionaryArray | None] | None = None,
) -> None:
    """`_add_rows` for Arrow columns: a sharing column's distinct texts go through its `_Shared` once per
    piece (coded by `encoded`, the columns' dictionary encodings where the reader made them); in a column of
    distinct texts only the short ones that could be a placeholder are tested."""
    rows = len(columns[0]) if columns else 0
    if not rows:
        return
    position = {name: i for i, name in enumerate(header)}
    never = _never_placeholder(words)
    for column, values in data.items():
        if column not in position:
            values.append(np.full(rows, None, dtype=object) if column not in arrow else pa.nulls(rows, pa.string()))
            continue
        cells = columns[position[column]]
        if not distinct.get(column):
            made = encoded[position[column]] if encoded else None
            encoded_cells = made if made is not None else pc.dictionary_encode(cells)
            lookup = shared[column].__getitem__
            mapped = np.array([None, *map(lookup, encoded_cells.dictionary.to_pylist())], dtype=object)[1:]
            codes = encoded_cells.indices.to_numpy(zero_copy_only=False)
            if column in arrow:  # the placeholders' cells made null
                empty = np.array([value is None for value in mapped], dtype=bool)
                values.append(_nulled(cells, empty[codes]))
                continue
            values.append(mapped[codes])
            continue
        maybe = pc.less_equal(pc.utf8_length(cells), short)
        if never:
            maybe = pc.and_(maybe, pc.invert(pc.match_substring_regex(cells, never)))
        dropped = kept[column]
        candidates = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
        if column in arrow:
            words_of = cells.take(pa.array(candidates)).to_pylist()
            placeholder = np.zeros(rows, dtype=bool)
            for i, text in zip(candidates.tolist(), words_of, strict=True):
                word = text.strip().casefold()
                placeholder[i] = word in words and word not in dropped
            values.append(_nulled(cells, placeholder))
            continue
        texts = cells.to_numpy(zero_copy_only=False)
        if not texts.flags.writeable:
            texts = texts.copy()
        for i in candidates.tolist():
            word = texts[i].strip().casefold()
            if word in words and word not in dropped:
                texts[i] = None
        values.append(texts)


def _nulled(cells: pa.Array, empty: np.ndarray) -> pa.Array:
    """`cells` with those where `empty` holds null."""
    return pc.if_else(pa.array(empty), pa.scalar(None, pa.string()), cells) if empty.any() else cells


def _never_placeholder(words: set[str]) -> str:
    """RE2 class of the ASCII characters no placeholder holds: a text with one of them, not space, keeps
    it through strip() and casefold() (ASCII casefolds to lower case), so it is none of `words`."""
    letters = set("".join(words))
    chars = [chr(c) for c in range(128) if not chr(c).isspace() and chr(c).lower() not in letters]
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]" if chars else ""
