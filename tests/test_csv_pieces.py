"""A CSV read in pieces, its plain rows split by Arrow, gives record for record what the line reader gives:
multi-line and broken quotes (also across piece ends), CR, CRLF and mixed line ends, undecodable bytes,
NUL, blank and padding rows, wrong widths, placeholders, in UTF-8 and cp1251."""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import pytest

import assets.sources.csv_pieces as csv_pieces
from assets.normalize import collect
from assets.records import BatchedRecords, RawRecord
from assets.sources.tabular import _csv_rows, _logical_records, read_csv
from layers.catalog import SourceSpec

SPEC = SourceSpec.model_validate(
    {"path": "f.csv", "format": "csv", "delimiter": ";", "columns": {"a": "a", "b": "b", "c": "c"}}
)
CELLS = ["x", "нет", " нет ", "-", "", '"q"', '"a;b"', '"a""b"', '"multi\nline"', '"open', 'a"b', '"x"y', "\0", "  "]
CELLS += ["Не заполнено", "ПРИВЕТ", '"\r\n"', "ß", "ok 12", "\xa0x", "x\x98"]
ODD_LINES = ["", ";;", " ", "\t;", ";a;b", '"', '"""', "a;b", "a;b;c;d", "\xa0x;y;z"]


def _line(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(ODD_LINES)
    return ";".join(rng.choice(CELLS) for _ in range(3 if rng.random() < 0.9 else rng.choice([2, 4])))


def _file(rng: random.Random, path: Path, encoding: str) -> None:
    ends = rng.choice(["\n", "\r\n", "\r", None])
    body = "".join(
        _line(rng) + (ends or rng.choice(["\n", "\r\n", "\r"])) for _ in range(rng.choice([0, 1, 5, 60, 400]))
    )
    if rng.random() < 0.3:
        body = body.rstrip("\r\n")
    text = rng.choice(["a;b;c", 'a;"b";c', "a;b"]) + rng.choice(["\n", "\r\n"]) + body
    data = text.encode(encoding, errors="replace")
    path.write_bytes(
        data.replace("x\x98".encode(encoding, errors="replace"), b"x\x98" if encoding == "cp1251" else b"x\xff")
    )


def _by_lines(path: Path, encoding: str) -> list[RawRecord]:
    """The line reader alone: every record through `_logical_records` and `_judged`."""
    with open(path, encoding=encoding, errors="replace", newline="") as text:
        records = _logical_records(text)
        _, header_text, _ = next(records)
        header = [name.strip() for name in next(csv.reader([header_text], delimiter=";"))]
        return list(BatchedRecords(_csv_rows(records, header, "f.csv", ";", None, encoding)))


def _seen(records) -> list[tuple]:
    return [(r.number, r.values, r.error, r.error_field) for r in records]


@pytest.mark.parametrize("seed", range(60))
def test_pieces_read_as_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    encoding = rng.choice(["utf-8-sig", "cp1251"])
    path = tmp_path / "f.csv"
    _file(rng, path, encoding)
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", rng.choice([16, 64, 300, 1 << 20]))  # piece ends anywhere
    table = read_csv(path, "f.csv", encoding, ";", set())
    assert _seen(table.records) == _seen(_by_lines(path, encoding))


def test_collected_pieces_keep_placeholders_and_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`collect` over ColumnBatch pieces = `collect` over the same records one by one."""
    rng = random.Random(7)
    path = tmp_path / "f.csv"
    path.write_text("a;b;c\n" + "".join(_line(rng) + "\n" for _ in range(3000)), encoding="utf-8")
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 4096)
    nulls = ["нет", "-", "Не заполнено"]
    by_pieces = collect(read_csv(path, "f.csv", "utf-8", ";", set()), SPEC, nulls)
    plain = read_csv(path, "f.csv", "utf-8", ";", set())
    by_record = collect(type(plain)(plain.source, plain.columns, iter(list(plain.records))), SPEC, nulls)
    assert by_pieces.table.astype(object).fillna("∅").to_dict() == by_record.table.astype(object).fillna("∅").to_dict()
    assert [r.as_row() for r in by_pieces.rejects] == [r.as_row() for r in by_record.rejects]
    assert by_pieces.read == by_record.read


def test_spaces_are_those_of_str_isspace() -> None:
    spaces = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert spaces == csv_pieces.SPACES


@pytest.mark.parametrize("width", [1001, 1002, 1500])
def test_a_header_wider_than_the_plain_row_test_is_read_by_lines(tmp_path: Path, width: int) -> None:
    """RE2 repeats a group at most 1,000 times: a 1,500-column export raised ArrowInvalid instead of being read."""
    path = tmp_path / "f.csv"
    rows = [";".join(f"h{i}" for i in range(width))]
    rows += [";".join(f"v{r}_{i}" for i in range(width)) for r in range(5)] + [";".join(["x"] * (width - 1))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    table = read_csv(path, "f.csv", "utf-8", ";", set())
    assert _seen(table.records) == _seen(_by_lines(path, "utf-8"))
    assert len(_seen(_by_lines(path, "utf-8"))) == 6
