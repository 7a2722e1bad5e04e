"""The ingest's fast paths give exactly what the general ones give: the text typing of text-only columns
cell by cell, the city-extent test of points by their coordinates, geocoding memoised across chunks, plain WKT
points made once in EPSG:4326, repeated ids judged for the whole layer at once, a mapped text field judged
once per distinct text."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import pytest
import shapely

from assets import coerce, normalize
from assets.address_words import normalize_house, normalize_street
from assets.geocode import AddressIndex
from assets.geometry import SPACES, parse_wkt, parse_wkt_points, points_to_wgs84, to_wgs84, within_box
from assets.ingest import _first_of_each_id
from assets.normalize import RECORD_NUMBERS, ROW
from assets.records import Reject
from assets.sources import csv_pieces
from layers.catalog import FieldSpec

TEXT = pd.StringDtype("python", na_value=np.nan)


def by_distinct_value(raw: pd.Series) -> list:
    """`as_text` as it was written first: each distinct value (pandas' factorisation) judged once."""
    codes, distinct = pd.factorize(raw, use_na_sentinel=True)
    clean = [coerce.as_text(pd.Series([value], dtype=object)).values[0] for value in distinct]
    return [None if code < 0 else clean[code] for code in codes]


@pytest.mark.parametrize(
    "cells",
    [
        pd.array(["ОР-1", " ОР-2 ", "a  b", None, "", "  ", "x\ty", "\u00a0z", "ОР-1"], dtype=TEXT),
        pd.array([None, None], dtype=TEXT),
        pd.array([], dtype=TEXT),
        ["ok", None, np.nan, pd.NA, " padded", "ok"],
        # a factorisation takes 1, 1.0 and True for one value: a column with them keeps being judged that way
        [1, 1.0, True, "1", None],
        [True, 1, "x"],
        [12.0, "a", np.nan],
        # a column of a few repeated texts (judged once each) and one of distinct texts (tested in runs)
        pd.array(["Выдан", " Выдан ", None, "Закрыт  до 5.06", "Выдан"] * 5000, dtype=TEXT),
        pd.array(
            [f"ОР-{i}" if i % 997 else f" ОР-{i}\n" for i in range(3000)] + ["", None, "a\u00a0b", "ОР-1"], dtype=TEXT
        ),
        [f"+7 (3952) {i:06d}" for i in range(600)] + [None, "  ", "x"],
    ],
)
def test_text_typing_is_that_of_each_distinct_value(cells):
    raw = pd.Series(cells) if not isinstance(cells, list) else pd.Series(cells, dtype=object)
    typed = coerce.as_text(raw)
    assert typed.values.tolist() == by_distinct_value(raw)
    assert typed.values.dtype == object
    assert not typed.failed.any()


def test_points_within_the_extent_as_geos_says():
    extent = (103.9, 52.1, 104.6, 52.5)
    rng = np.random.default_rng(7)
    x, y = rng.uniform(103.8, 104.7, 5000), rng.uniform(52.0, 52.6, 5000)
    x[:20], x[20:40], y[40:60], y[60:80] = 103.9, 104.6, 52.1, 52.5  # on the edges: not within
    x[80], x[81], y[82] = np.nan, np.inf, -np.inf
    x[83], x[84] = np.nextafter(103.9, 200), np.nextafter(104.6, 0)
    shapes = shapely.points(x, y).astype(object)
    shapes[90:98] = [
        None,
        shapely.Point(),
        shapely.Point(104, 52.3, 5),
        shapely.LineString([(104, 52.2), (104.1, 52.3)]),
        shapely.box(103.95, 52.2, 104, 52.3),
        shapely.box(103.85, 52.2, 104, 52.3),
        shapely.MultiPoint([(104, 52.3)]),
        shapely.LineString([(103.9, 52.2), (104.1, 52.3)]),
    ]
    box = shapely.box(*extent)
    assert within_box(shapes, extent).tolist() == shapely.within(shapes, box).tolist()
    assert within_box(np.array([], dtype=object), extent).tolist() == []


def test_a_text_is_matched_once_and_as_match_text_does():
    register = AddressIndex(
        [("ул. Ленина", "5", "a"), ("ул. Ленина", "7к2", "b"), ("пер. Почтовый", "3", "c"), ("ул. Ленина", "5", "d")]
    )
    for text in ["ул. Ленина, 5", "Ленина 7 корп. 2", "Почтовый 3", "ул. Ленина, 7", "что-то"]:
        assert register.match_text_once(text) == register.match_text(text)
        assert register.match_text_once(text) is register.match_text_once(text)


def test_street_and_house_keys_of_numbers_keep_their_type():
    # 5 and 5.0 are one key to a plain cache: their texts differ
    assert normalize_house(5) == normalize_house("5")
    assert normalize_house(5.0) == normalize_house("5.0")
    assert normalize_street("Ленина ул.") == normalize_street("улица Ленина")


def test_a_function_of_repeated_texts_is_that_of_each_distinct_value():
    lookup = {"теплосеть": "heat", "водопровод": "water"}
    function = lambda v: lookup.get(v.strip().lower(), v.strip()) if isinstance(v, str) else v  # noqa: E731
    raw = pd.Series(pd.array(["Теплосеть", " Водопровод", None, "Связь ", "Теплосеть"] * 5000, dtype=TEXT))
    expected = coerce._each_distinct(raw, lambda values: [function(v) for v in values], function(None))
    assert coerce.by_distinct(raw, function).tolist() == expected.tolist()
    assert coerce.by_distinct(raw, function).dtype == expected.dtype


def test_wkt_read_from_arrow_texts_as_from_python_strings():
    texts = [
        "POINT (1 2)",
        "  POINT (3.5 -4)\t",
        "\u3000POINT (5 6)\u2028",
        "POINT(7 8)",
        "POINT (1e3 2)",
        "POINT Z (1 2 3)",
        "LINESTRING (0 0, 1 1)",
        "CIRCULARSTRING (0 0, 1 1, 2 0)",
        "not wkt",
        "",
        "   ",
        None,
        "POINT (1 2)\n",
        "xPOINT (1 2)",
    ]
    from_python = parse_wkt(np.array(texts, dtype=object))
    from_arrow = parse_wkt(pa.chunked_array([pa.array(texts[:5], pa.string()), pa.array(texts[5:], pa.string())]))
    assert shapely.equals_exact(from_python, from_arrow, tolerance=0).tolist() == [g is not None for g in from_python]
    assert (shapely.is_missing(from_python) == shapely.is_missing(from_arrow)).all()
    assert shapely.to_wkb(from_python).tolist() == shapely.to_wkb(from_arrow).tolist()
    assert shapely.to_wkb(parse_wkt(pa.array(texts, pa.string()))).tolist() == shapely.to_wkb(from_python).tolist()


def test_the_spaces_around_a_point_are_those_str_strip_removes():
    assert set(SPACES) == {chr(c) for c in range(0x110000) if chr(c).isspace()} == set(csv_pieces.SPACES)


@pytest.mark.parametrize(
    "cells",
    [
        pd.array(["01.02.2024", "03.04.2024", None, "01.02.2024", "", np.nan] * 5000, dtype=TEXT),
        pd.array(["x", None, pd.NA, "x"] * 6000, dtype=object),
        pd.array([f"ОР-{i}" for i in range(30000)], dtype=TEXT),
        [1, 1.0, True, "1", None] * 5000,
    ],
)
def test_texts_are_coded_as_pandas_codes_them(cells):
    raw = pd.Series(cells) if not isinstance(cells, list) else pd.Series(cells, dtype=object)
    codes, distinct = coerce.factorized(raw)
    expected_codes, expected_distinct = pd.factorize(raw, use_na_sentinel=True)
    assert codes.tolist() == expected_codes.tolist()
    assert list(np.asarray(distinct, dtype=object)) == list(np.asarray(expected_distinct, dtype=object))


MSK38 = pyproj.CRS.from_proj4(
    "+proj=tmerc +lat_0=0 +lon_0=106.03333333333 +k=1 +x_0=3250000 +y_0=-5213101.65 +ellps=krass "
    "+towgs84=23.57,-140.95,-79.8,0,0.35,0.79,-0.22 +units=m +no_defs"
)


@pytest.mark.parametrize("crs", [MSK38, pyproj.CRS.from_epsg(4326)])
@pytest.mark.parametrize("others", [False, True])
def test_plain_points_made_in_wgs84_are_those_reprojected(crs, others):
    rng = np.random.default_rng(3)
    texts = [
        f"POINT ({3312943.03 + rng.random() * 30000:.2f} {388680.52 + rng.random() * 20000:.2f})" for _ in range(500)
    ]
    texts += [" POINT (3320000 390000) ", "POINT (1" + "0" * 400 + " 2)", "", None, "not wkt"]
    if others:  # not only plain points: the reprojection of the rest goes by `shapely.transform`
        texts += [
            "POINT Z (3320000 390000 5)",
            "LINESTRING (3320000 390000, 3320100 390100)",
            "MULTIPOINT ((3320000 390000))",
        ]
    arrow = pa.array(texts, pa.string())
    general = to_wgs84(parse_wkt(arrow), crs)
    parsed, plain, x, y = parse_wkt_points(arrow)
    assert plain.sum() == 501 and shapely.is_missing(parsed[plain]).all()
    parsed = to_wgs84(parsed, crs)
    parsed[plain] = points_to_wgs84(x, y, crs)
    assert shapely.to_wkb(parsed).tolist() == shapely.to_wkb(general).tolist()


def test_a_plain_row_holds_an_even_number_of_quotes():
    # the CSV pieces count quotes (records over several lines) only on the lines that are no plain row
    lines = ["".join(chars) for n in range(7) for chars in itertools.product('"; a', repeat=n)]
    for width in (1, 2, 3):
        plain = pc.match_substring_regex(pa.array(lines), csv_pieces.plain_row_pattern(";", width)).to_pylist()
        assert sum(plain) > 20
        assert all(line.count('"') % 2 == 0 for line, match in zip(lines, plain, strict=True) if match)


def first_of_each_id_by_rows(sources: list[list[pd.DataFrame]], id_field: str) -> tuple[list[Reject], np.ndarray]:
    """`ingest._first_of_each_id` as it was written first: the whole layer's ids, sources and record numbers
    joined, a reject per row of `iterrows`, the first record of each id looked up by `.at`."""
    pieces = [piece for chunks in sources for piece in chunks]
    ids = pd.concat([piece[id_field] for piece in pieces], ignore_index=True)
    duplicated = ids.duplicated(keep="first")
    twice = ids.isin(ids[duplicated]).to_numpy()
    rows = pd.concat([piece[[id_field, "_source", ROW]] for piece in pieces], ignore_index=True)
    first_seen = rows[twice][~duplicated[twice].to_numpy()].set_index(id_field)
    rejects = [
        Reject(
            row["_source"],
            str(row[ROW]),
            id_field,
            f"duplicate {id_field} {row[id_field]!r}: first seen in "
            f"{first_seen.at[row[id_field], '_source']} {first_seen.at[row[id_field], ROW]}",
            str(row[id_field]),
        )
        for _, row in rows[duplicated].iterrows()
    ]
    return rejects, duplicated.to_numpy()


@pytest.mark.parametrize("kind", ["text", "integer"])
def test_repeated_ids_are_rejected_as_row_by_row(kind):
    rng = np.random.default_rng(5)

    def piece(source: str, start: int, n: int) -> pd.DataFrame:
        numbers = rng.integers(0, 300, n)
        ids = [f"ОР-{k}" for k in numbers] if kind == "text" else pd.array(numbers, "Int64")
        frame = pd.DataFrame({"permit_id": pd.Series(ids, dtype=object if kind == "text" else "Int64")})
        frame["_source"] = source
        frame[ROW] = pd.array([f"line {start + i}" for i in range(n)], dtype=RECORD_NUMBERS)
        return frame

    sources = [[piece("a.csv", 2, 120), piece("a.csv", 122, 0), piece("a.csv", 122, 90)], [piece("b.csv", 2, 150)]]
    rejects, duplicated = _first_of_each_id(sources, SimpleNamespace(id_field="permit_id"))
    expected_rejects, expected = first_of_each_id_by_rows(sources, "permit_id")
    assert len(rejects) > 50 and rejects == expected_rejects
    assert duplicated.tolist() == expected.tolist()


NETWORKS = {"Теплосеть": "heat", "Водопровод": "water", " связь ": "telecom", "Пусто": "  два  пробела "}


@pytest.mark.parametrize(
    "cells",
    [
        pd.array(
            ["Теплосеть", " водопровод", None, "Связь", "теплосеть ", "", "  ", "ГАЗ", "Пусто"] * 3000, dtype=TEXT
        ),
        pd.array(["Теплосеть", None] * 5000, dtype=object),
        pd.array([None] * 100, dtype=TEXT),
    ],
)
@pytest.mark.parametrize("allowed", [None, ["heat", "water", "telecom"]])
@pytest.mark.parametrize("required", [False, True])
def test_a_mapped_text_field_is_judged_once_per_distinct_text(cells, allowed, required):
    raw = pd.Series(cells, index=pd.RangeIndex(7, 7 + len(cells)))
    spec = FieldSpec(
        name="network", type="string", title={"ru": "Сети", "en": "Network"}, required=required, allowed=allowed
    )
    mapped, typed, outside, missing = normalize._coded_field(raw, spec, NETWORKS)
    expected_mapped = normalize._mapped(raw, NETWORKS)
    expected = coerce.as_text(expected_mapped)
    pd.testing.assert_series_equal(mapped, expected_mapped)
    pd.testing.assert_series_equal(typed.values, expected.values)
    pd.testing.assert_series_equal(typed.failed, expected.failed)
    assert typed.reason == expected.reason
    if allowed is None:
        assert outside is None
    else:
        expected_outside = expected.values.notna() & ~expected.values.isin(allowed)
        pd.testing.assert_series_equal(outside, expected_outside)
    if required:
        pd.testing.assert_series_equal(missing, expected.values.isna())
    else:
        assert missing is None


def test_a_mapped_field_of_distinct_texts_or_numbers_goes_the_general_way():
    spec = FieldSpec(name="network", type="string", title={"ru": "Сети", "en": "Network"})
    assert normalize._coded_field(pd.Series([f"ОР-{i}" for i in range(3000)], dtype=TEXT), spec, NETWORKS) is None
    assert normalize._coded_field(pd.Series([1, True, "1"] * 100, dtype=object), spec, NETWORKS) is None
    number = FieldSpec(name="network", type="integer", title={"ru": "Сети", "en": "Network"})
    assert normalize._coded_field(pd.Series(["1", "2"] * 100, dtype=TEXT), number, NETWORKS) is None
