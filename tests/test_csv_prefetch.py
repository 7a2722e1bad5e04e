"""A CSV's pieces are read by a thread of their own one piece ahead (`csv_pieces.prefetched`): the same
items in the same order, the reader's errors raised where they happened, and no thread or open file
left behind by a reader that stops early."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import assets.sources.csv_pieces as csv_pieces
from assets.records import BatchedRecords, ColumnBatch
from assets.sources.csv_pieces import prefetched
from assets.sources.tabular import read_csv


def _register(path: Path, rows: int) -> Path:
    lines = ["id;name;note"] + [f"R-{i};имя {i};" + ('"open' if i % 97 == 0 else "x") for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="cp1251")
    return path


def _csv_threads(besides: frozenset[threading.Thread] = frozenset()) -> list[threading.Thread]:
    """The read-ahead threads alive, but `besides` (those of readers other tests left to the garbage collector)."""
    return [t for t in threading.enumerate() if t.name == "csv-pieces" and t not in besides]


def test_items_come_in_order_and_an_error_where_it_happened():
    def items():
        yield from range(5)
        raise ValueError("the fifth item is unreadable")

    others = frozenset(_csv_threads())
    got = []
    with pytest.raises(ValueError, match="fifth item"):
        for item in prefetched(items()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert not _csv_threads(others)


def test_a_csv_read_ahead_is_the_csv_read_in_line(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 512)
    monkeypatch.setattr(csv_pieces, "READ_IN_CHILD", False)  # a thread of this process (the child: test_csv_child)
    path = _register(tmp_path / "r.csv", 2000)
    ahead = list(read_csv(path, "r.csv", "cp1251", ";", {"id"}).records)
    monkeypatch.setattr(csv_pieces, "READ_AHEAD", 0)  # the pieces read in this thread
    in_line = list(read_csv(path, "r.csv", "cp1251", ";", {"id"}).records)
    assert [(r.number, r.values, r.error) for r in ahead] == [(r.number, r.values, r.error) for r in in_line]
    assert sum(1 for r in ahead if r.error) == 21


def test_a_reader_that_stops_early_leaves_no_thread_and_no_open_file(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 512)
    monkeypatch.setattr(csv_pieces, "READ_IN_CHILD", False)
    others = frozenset(_csv_threads())
    table = read_csv(_register(tmp_path / "r.csv", 5000), "r.csv", "cp1251", ";", {"id"})
    assert isinstance(table.records, BatchedRecords)
    batches = table.records.batches
    first = next(item for item in batches if isinstance(item, ColumnBatch))
    assert first.numbers[0] == "line 3"  # line 2 has an open quote
    assert _csv_threads(others)
    batches.close()  # what garbage collection or an exception does to the reader
    assert not _csv_threads(others)
    table.close()
