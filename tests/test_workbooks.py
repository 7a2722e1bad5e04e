"""Workbooks are read by the cells they hold, not by the size they declare: a stale `<dimension>`
loses no row, and row numbers, dates and numbers read as they always did."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest

from assets.records import SourceError
from assets.sources.tabular import read_xlsx
from layers.settings import REPO_ROOT
from tests.test_bad_input import build, make_city

SAMPLE = REPO_ROOT / "data" / "sample" / "irkutsk"

WORKS_XLSX_YAML = """
title: {ru: Аварийные работы, en: Emergency works}
description: {ru: Тестовый слой, en: Test layer}
domain: repairs
geometry_type: Point
id_field: permit_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: permit_id, type: string, required: true, title: {ru: Номер, en: Number}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
sources:
  - path: works.xlsx
    format: xlsx
    sheet: Аварийные работы
    crs: msk38-3
    columns: {№ ордера: permit_id, Начало: start_time, Окончание: end_time}
    geometry: {wkt: WKT (МСК-38)}
"""


def with_stale_dimension(source: Path, target: Path, ref: str = "A1:J10") -> Path:
    """The workbook with its first sheet claiming to span only `ref`, as careless exporters write it."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data, replaced = re.subn(rb'<dimension ref="[^"]*"', f'<dimension ref="{ref}"'.encode(), data)
                assert replaced == 1
            zout.writestr(item, data)
    return target


def test_a_stale_dimension_loses_no_row(tmp_path):
    paths = make_city(tmp_path, {"works": WORKS_XLSX_YAML})
    with_stale_dimension(SAMPLE / "repairs" / "emergency_works.xlsx", paths.sample_dir / "works.xlsx")
    result = build(paths)
    rejected = {r.record for r in result.rejects}
    published = set(result.frame["_record"]) if "_record" in result.frame else set()
    assert len(result.frame) + len(rejected) == 40, (len(result.frame), sorted(rejected))
    assert len(result.frame) > 9  # beyond the declared ten rows
    assert not published & rejected
    # rows without WKT are rejected with a reason naming their Excel row, not dropped
    assert rejected and all(re.fullmatch(r"row \d+", r) for r in rejected)


@pytest.mark.parametrize(
    ("workbook", "sheet", "rows"),
    [("repairs/emergency_works.xlsx", "Аварийные работы", 40), ("zones/officers.xlsx", "Участковые", 40)],
)
def test_joined_and_source_workbooks_read_every_row_whatever_the_dimension(tmp_path, workbook, sheet, rows):
    stale = with_stale_dimension(SAMPLE / workbook, tmp_path / "stale.xlsx", ref="A1:B2")
    with read_xlsx(stale, "stale.xlsx", sheet) as table:
        records = list(table.records)
    assert len(records) == rows
    assert records[-1].number == f"row {rows + 1}"


def test_header_and_row_numbers_are_excels(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Лист"
    sheet.append(["Номер", "Когда", "Сумма", "Пусто"])
    sheet.append([12, dt.datetime(2026, 11, 23, 14, 45), 1.5, None])
    sheet.append([None, None, None, None])
    sheet.append(["А-2", dt.datetime(2026, 11, 30), "7", None])
    path = tmp_path / "cells.xlsx"
    book.save(path)
    with read_xlsx(path, "cells.xlsx", "Лист") as table:
        assert table.columns == ["Номер", "Когда", "Сумма", "Пусто"]
        records = list(table.records)
    assert [r.number for r in records] == ["row 2", "row 4"]
    assert records[0].values == {"Номер": 12, "Когда": dt.datetime(2026, 11, 23, 14, 45), "Сумма": 1.5, "Пусто": None}
    assert records[1].values["Когда"] == dt.datetime(2026, 11, 30)
    assert records[1].values["Сумма"] == "7"
    with pytest.raises(SourceError, match="cells.xlsx: no sheet 'Другой'"):
        read_xlsx(path, "cells.xlsx", "Другой")
