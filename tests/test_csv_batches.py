"""A CSV's runs of split rows are collected column by column exactly as record by record: same table,
same placeholders emptied (also after the 20,000-record sharing decision), same rejects and counts."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from assets.normalize import SHARING_SAMPLE, collect
from assets.records import BatchedRecords, SourceTable
from assets.sources.tabular import read_csv
from layers.catalog import SourceSpec

PLACEHOLDERS = ["Не заполнено", "-", "н/д", "нет данных"]
SPEC = SourceSpec.model_validate(
    {
        "path": "register.csv",
        "format": "csv",
        "delimiter": ";",
        "encoding": "utf-8",
        "columns": {"id": "a", "mid": "b", "rep": "c", "extra": "d"},
        "values": {"c": {"Нет данных": "none"}},  # a placeholder word the mapping keeps in this column
    }
)


def _cell(rng: random.Random, i: int, kind: str) -> str:
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(PLACEHOLDERS) + rng.choice(["", " ", " " * 30])  # long padding: past the short test
    if roll < 0.05:
        return rng.choice(["", "  "])
    if kind == "unique":
        return f"ID-{i}" if roll > 0.1 else "  НЕ ЗАПОЛНЕНО" + " " * rng.randint(0, 30)
    if kind == "some":
        return f"v{i % 15000}"
    return rng.choice(["a", "b", "Нет данных", "c"])


def _register(path: Path, rows: int) -> Path:
    rng = random.Random(rows)
    lines = ["id;mid;rep;dup;extra;dup"]  # `dup` twice and unused: the record's dict keeps the last
    for i in range(rows):
        cells = [_cell(rng, i, "unique"), _cell(rng, i, "some"), _cell(rng, i, "rep"), _cell(rng, i, "unique")]
        lines.append(";".join([*cells, f'"q;{_cell(rng, i, "rep")}"', _cell(rng, i, "some")]))
        if i % 997 == 0:
            lines.append('bad;"row')  # unbalanced quote: rejected
        if i % 1301 == 0:
            lines.append(";;;;;")  # padding: skipped
        if i % 1709 == 0:
            lines.append("a;b")  # too few columns: rejected
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("rows", [0, 7, SHARING_SAMPLE - 1, SHARING_SAMPLE, SHARING_SAMPLE + 1, 2 * SHARING_SAMPLE + 5])
def test_batches_collect_as_records(tmp_path: Path, rows: int) -> None:
    path = _register(tmp_path / "register.csv", rows)
    batched = read_csv(path, "register.csv", "utf-8", ";", set(SPEC.columns))
    assert isinstance(batched.records, BatchedRecords)
    by_batch = collect(batched, SPEC, PLACEHOLDERS)
    plain = read_csv(path, "register.csv", "utf-8", ";", set(SPEC.columns))
    by_record = collect(SourceTable(plain.source, plain.columns, iter(list(plain.records))), SPEC, PLACEHOLDERS)

    pd.testing.assert_frame_equal(by_batch.table, by_record.table, check_exact=True)
    for column in by_batch.table:
        for a, b in zip(by_batch.table[column], by_record.table[column], strict=True):
            assert type(a) is type(b) and (a == b or (a != a and b != b))  # None stays None, NaN stays NaN
    assert [r.as_row() for r in by_batch.rejects] == [r.as_row() for r in by_record.rejects]
    assert (by_batch.read, by_batch.warnings) == (by_record.read, by_record.warnings)
    if rows > 2 * SHARING_SAMPLE:  # long padded placeholders after the decision stay text in `id`
        assert by_batch.table["id"].iloc[SHARING_SAMPLE:].str.strip().str.casefold().eq("не заполнено").any()


def test_replaced_records_are_collected_not_the_batches(tmp_path: Path) -> None:
    """A reader that rewrites a CSV's records (notices) replaces the batches with them."""
    path = _register(tmp_path / "register.csv", 10)
    table = read_csv(path, "register.csv", "utf-8", ";", set(SPEC.columns))
    first = next(iter(table.records))
    rewritten = SourceTable(table.source, table.columns, iter([first]))
    assert len(collect(rewritten, SPEC, PLACEHOLDERS).table) == 1
