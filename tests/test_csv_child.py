"""A CSV's pieces made by a child process (`assets.sources.csv_child`): the records the in-line reader gives, in
order; the file read is the one opened, whatever happens to its name; a reader that stops early leaves no process
and no open file behind; a reader process that dies is an error naming the file, never a shorter table."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import assets.sources.csv_pieces as csv_pieces
from assets.records import BatchedRecords, ColumnBatch, SourceError
from assets.sources.tabular import read_csv


def _register(path: Path, rows: int, name: str = "имя") -> Path:
    lines = ["id;name;note"] + [f"R-{i};{name} {i};" + ('"open' if i % 97 == 0 else "x") for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="cp1251")
    return path


def _readers() -> list[int]:
    """This process's reader children alive (assets/sources/csv_child.py run as a script), found by their parent id
    (a thread's /proc "children" list is not reliable while tasks run)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            ours = int(parent) == os.getpid() and state != "Z"
            if ours and b"csv_child.py" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _seen(table) -> list[tuple]:
    return [(r.number, r.values, r.error) for r in table.records]


@pytest.fixture
def small_pieces(monkeypatch):
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 512)  # passed on to the child: many pieces of a small file
    monkeypatch.setattr(csv_pieces, "READ_IN_CHILD", True)


def test_the_child_reads_what_the_line_reader_reads(tmp_path, monkeypatch, small_pieces):
    path = _register(tmp_path / "r.csv", 3000)
    table = read_csv(path, "r.csv", "cp1251", ";", {"id"})
    batches = table.records.batches
    assert _readers(), "the pieces come from a child process"
    got = _seen(table)
    monkeypatch.setattr(csv_pieces, "READ_IN_CHILD", False)
    monkeypatch.setattr(csv_pieces, "READ_AHEAD", 0)
    in_line = _seen(read_csv(path, "r.csv", "cp1251", ";", {"id"}))
    assert got == in_line
    assert len(got) == 3000 and sum(1 for r in got if r[2]) == 31
    batches.close()


def test_the_child_reads_the_file_that_was_opened(tmp_path, small_pieces):
    path = _register(tmp_path / "r.csv", 2000)
    table = read_csv(path, "r.csv", "cp1251", ";", {"id"})
    os.replace(_register(tmp_path / "next.csv", 10, name="другое"), path)  # the next delivery, moved in meanwhile
    got = _seen(table)
    assert len(got) == 2000
    assert got[1][1] == {"id": "R-1", "name": "имя 1", "note": "x"}


def test_a_reader_that_stops_early_leaves_no_process_and_no_open_file(tmp_path, small_pieces):
    before = len(os.listdir("/proc/self/fd"))
    table = read_csv(_register(tmp_path / "r.csv", 5000), "r.csv", "cp1251", ";", {"id"})
    assert isinstance(table.records, BatchedRecords)
    batches = table.records.batches
    first = next(item for item in batches if isinstance(item, ColumnBatch))
    assert first.numbers[0] == "line 3"  # line 2 has an open quote
    assert _readers()
    batches.close()  # what garbage collection or an exception does to the reader
    table.close()
    assert not _readers()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_reader_process_that_dies_is_an_error_naming_the_file(tmp_path, small_pieces):
    table = read_csv(_register(tmp_path / "r.csv", 20000), "r.csv", "cp1251", ";", {"id"})
    batches = table.records.batches
    next(item for item in batches if isinstance(item, ColumnBatch))
    (reader,) = _readers()
    os.kill(reader, signal.SIGKILL)  # the machine's out-of-memory killer, an operator's kill -9
    with pytest.raises(SourceError, match=r"^r\.csv: the CSV reader process stopped \(signal 9\)"):
        for _ in batches:  # the pieces already handed over, then the error: never a quiet end of the file
            pass
    table.close()
    assert not _readers()


def test_a_file_of_a_few_pieces_is_read_without_a_child(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_pieces, "READ_IN_CHILD", True)
    table = read_csv(_register(tmp_path / "r.csv", 3000), "r.csv", "cp1251", ";", {"id"})  # ~60 KB: one piece
    assert not _readers()  # a child starts with the table (test_the_child_reads_what_the_line_reader_reads)
    assert len(_seen(table)) == 3000
