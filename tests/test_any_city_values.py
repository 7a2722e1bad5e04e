"""Cell values as registers write them: placeholders for "empty" (`Не заполнено`) are empty before
typing, and dates outside a plausible window (01.01.1900) are rejected with the bound they cross."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from assets import coerce
from tests.any_city import build, cells, make_city, reasons

IRKUTSK = """
name: {ru: Иркутск, en: Irkutsk}
timezone: Asia/Irkutsk
extent: [103.95, 52.15, 104.55, 52.45]
"""

HOUSES_YAML = """
title: {ru: Дома, en: Houses}
description: {ru: Реестр жилого фонда, en: Housing register}
domain: reference
geometry_type: Point
id_field: house_id
fields:
  - {name: house_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: address, type: string, title: {ru: Адрес, en: Address}}
  - {name: built, type: integer, title: {ru: Год постройки, en: Year built}}
  - {name: floors, type: integer, title: {ru: Этажность, en: Floors}}
  - {name: commissioned, type: date, title: {ru: Дата ввода, en: Commissioned}}
  - {name: gas, type: boolean, title: {ru: Газ, en: Gas}}
  - {name: kind, type: string, title: {ru: Тип, en: Kind}}
sources:
  - path: houses.csv
    format: csv
    delimiter: ";"
    columns: {Код: house_id, Адрес: address, Год постройки: built, Этажность: floors, Дата ввода: commissioned,
              Газ: gas, Тип: kind}
    geometry: {x: Долгота, y: Широта}
"""
HEADER = "Код;Адрес;Год постройки;Этажность;Дата ввода;Газ;Тип;Долгота;Широта"


def houses_city(tmp_path, rows: list[str], layer_yaml: str = HOUSES_YAML, city_yaml: str = IRKUTSK):
    paths = make_city(tmp_path, city_yaml, {"houses": layer_yaml})
    (paths.sample_dir / "houses.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return paths


def test_placeholders_in_integer_and_date_columns_publish_every_building(tmp_path):
    rows = [
        "H-1;ул. Ленина, 1;1957;5;12.03.1995;да;жилой;104.28;52.29",
        "H-2;ул. Ленина, 3;Не заполнено;Незаполнено;не заполнено;Не заполнено;жилой;104.29;52.29",
        "H-3;ул. Ленина, 5; Незаполнено ;н/д;НЕ ЗАПОЛНЕНО;н/д;нет данных;104.30;52.29",
        "H-4;ул. Ленина, 7;#N/A;N/A;NULL;null;—;104.31;52.29",
    ]
    result = build(houses_city(tmp_path, rows), "houses")
    assert result.rejects == []
    assert list(result.frame.house_id) == ["H-1", "H-2", "H-3", "H-4"]
    assert cells(result.frame.built) == [1957, None, None, None]
    assert cells(result.frame.floors) == [5, None, None, None]
    assert cells(result.frame.commissioned) == ["1995-03-12", None, None, None]
    assert cells(result.frame.gas) == [True, None, None, None]
    assert cells(result.frame.kind) == ["жилой", "жилой", None, None]


def test_a_dash_is_empty_not_false_unless_the_catalog_says_otherwise(tmp_path):
    rows = ["H-1;;;;;-;;104.28;52.29", "H-2;;;;;нет;;104.29;52.29"]
    result = build(houses_city(tmp_path / "default", rows), "houses")
    assert cells(result.frame.gas) == [None, False]  # placeholders come first: "-" says nothing
    # a source that writes "-" for "no" says so: its own nulls list, or a values mapping
    no_dash = HOUSES_YAML.replace("    format: csv\n", "    format: csv\n    nulls: [Не заполнено]\n")
    result = build(houses_city(tmp_path / "own_list", rows, no_dash), "houses")
    assert result.frame.gas.tolist() == [False, False]
    mapped = HOUSES_YAML.replace("    format: csv\n", "    format: csv\n    values: {gas: {'-': нет}}\n")
    result = build(houses_city(tmp_path / "mapped", rows, mapped), "houses")
    assert result.frame.gas.tolist() == [False, False]


def test_the_city_replaces_the_default_placeholders(tmp_path):
    rows = ["H-1;;нд;;;;;104.28;52.29", "H-2;;Не заполнено;;;;;104.29;52.29"]
    result = build(houses_city(tmp_path, rows, city_yaml=IRKUTSK + "nulls: [нд]\n"), "houses")
    assert list(result.frame.house_id) == ["H-1"]
    assert reasons(result) == {"line 3": "built: not a whole number"}


def test_a_placeholder_where_the_geometry_should_be_is_no_geometry_not_bad_wkt(tmp_path):
    layer = HOUSES_YAML.replace("geometry: {x: Долгота, y: Широта}", "geometry: {wkt: Долгота}")
    rows = ["H-1;;;;;;;Не заполнено;", "H-2;;;;;;;POINT (104.28 52.29);"]
    result = build(houses_city(tmp_path, rows, layer), "houses")
    assert list(result.frame.house_id) == ["H-2"]
    assert reasons(result) == {"line 2": "geometry: no geometry: neither coordinates nor a known address"}


def test_a_date_before_the_citys_earliest_is_rejected_with_the_bound(tmp_path):
    rows = ["H-1;;;;01.01.1900;;;104.28;52.29", "H-2;;;;31.12.1989;;;104.29;52.29", "H-3;;;;01.01.1990;;;104.3;52.29"]
    result = build(houses_city(tmp_path, rows), "houses")
    assert list(result.frame.house_id) == ["H-3"]
    reason = "commissioned: before 1990-01-01, the earliest plausible date for this field"
    assert reasons(result) == {"line 2": reason, "line 3": reason}


def test_a_field_overrides_the_window_and_the_clock_places_its_end(tmp_path):
    layer = HOUSES_YAML.replace(
        "type: date, title:", "type: date, dates: {earliest: 1850-01-01, latest_years_ahead: 1}, title:"
    )
    rows = ["H-1;;;;01.01.1900;;;104.28;52.29", "H-2;;;;24.11.2027;;;104.29;52.29", "H-3;;;;25.11.2027;;;104.3;52.29"]
    paths = houses_city(tmp_path, rows, layer)
    result = build(paths, "houses", now=dt.datetime(2026, 11, 24, 4, tzinfo=dt.UTC))
    assert list(result.frame.house_id) == ["H-1", "H-2"]
    assert reasons(result) == {
        "line 4": "commissioned: after 2027-11-24, the latest plausible date for this field (1 year from today)"
    }
    result = build(paths, "houses", now=dt.datetime(2026, 11, 25, 4, tzinfo=dt.UTC))
    assert list(result.frame.house_id) == ["H-1", "H-2", "H-3"]


def test_1900_in_a_datetime_column_is_rejected_not_published_as_1899(tmp_path):
    """01.01.1900 local Irkutsk time is 1899-12-31T17:02:55Z (local mean time before 1920): the bound
    is the city's local day, the reason names it."""
    works = """
    title: {ru: Работы, en: Works}
    description: {ru: Тест, en: Test}
    domain: repairs
    geometry_type: Point
    id_field: work_id
    temporal: {start: start_time, end: end_time}
    fields:
      - {name: work_id, type: string, required: true, title: {ru: Номер, en: Number}}
      - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
      - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
    sources:
      - path: works.csv
        format: csv
        columns: {Номер: work_id, Начало: start_time, Окончание: end_time}
        geometry: {x: X, y: Y}
    """
    paths = make_city(tmp_path, IRKUTSK, {"works": works})
    (paths.sample_dir / "works.csv").write_text(
        "Номер,Начало,Окончание,X,Y\nW-1,01.01.1900,,104.28,52.29\nW-2,01.01.1990,01.01.2200,104.28,52.29\n"
        "W-3,01.01.1990,Не заполнено,104.28,52.29\n",
        encoding="utf-8",
    )
    result = build(paths, "works", now=dt.datetime(2026, 11, 24, tzinfo=dt.UTC))
    assert list(result.frame.work_id) == ["W-3"]
    assert reasons(result) == {
        "line 2": "start_time: before 1990-01-01, the earliest plausible date for this field",
        "line 3": "end_time: after 2041-11-24, the latest plausible date for this field (15 years from today)",
    }
    assert str(result.frame.start_time.iloc[0]) == "1989-12-31 16:00:00+00:00"


def test_placeholders_and_windows_are_plain_functions():
    raw = pd.Series(["Не заполнено", " н/Д ", "12", None, 3.0, "-"])
    assert coerce.placeholders(raw, ["не заполнено", "Н/Д"]).tolist() == [True, True, False, False, False, False]
    dates = pd.Series(["1989-12-31", "1990-01-01", None, "2041-11-25"], dtype=object)
    early, late = coerce.outside_dates(dates, dt.date(1990, 1, 1), dt.date(2041, 11, 24), "Asia/Irkutsk")
    assert early.tolist() == [True, False, False, False] and late.tolist() == [False, False, False, True]


def test_placeholders_in_a_joined_table_are_empty_too(tmp_path):
    layer = HOUSES_YAML.replace(
        "  - {name: kind, type: string,",
        "  - {name: manager, type: string, title: {ru: УК, en: Manager}}\n  - {name: kind, type: string,",
    ) + (
        "    joins:\n"
        "      - {path: managers.csv, format: csv, delimiter: ';', match: {house_id: Код}, columns: {УК: manager}}\n"
    )
    paths = houses_city(tmp_path, ["H-1;;;;;;;104.28;52.29", "H-2;;;;;;;104.29;52.29"], layer)
    (paths.sample_dir / "managers.csv").write_text("Код;УК\nH-1;УК Центр\nH-2;Не заполнено\n", encoding="utf-8")
    result = build(paths, "houses")
    assert cells(result.frame.manager) == ["УК Центр", None]
