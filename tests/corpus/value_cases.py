"""Values clerks type: dates in every form, numbers with spaces and commas, placeholders, yes/no, codes."""

from __future__ import annotations

from tests.corpus import Case, named
from tests.corpus.csv_cases import row, works
from tests.corpus.layers import BUILDINGS, BUILDINGS_HEADER, STREETS, STREETS_HEADER, WORKS
from tests.test_bad_input import GOOD_POINT, SWAPPED_POINT


def buildings(lines: list[str]) -> bytes:
    return "\n".join([BUILDINGS_HEADER, *lines]).encode()


def building(code: str, floors="5", area="1200,5", heated="да", built="01.09.1975", lon="104.28", lat="52.287") -> str:
    return f"{code};{floors};{area};{heated};{built};{lon};{lat}"


def typed(id: str, lines: list[str], published: int | None = None, **kwargs) -> Case:
    return Case(
        id,
        BUILDINGS,
        named("buildings.csv", buildings(lines)),
        len(lines),
        "records",
        "buildings",
        published=published,
        **kwargs,
    )


def dated(id: str, lines: list[str], published: int | None = None, **kwargs) -> Case:
    return Case(id, WORKS, named("works.csv", works(lines)), len(lines), "records", published=published, **kwargs)


def wkt(id: str, text: str, published: int | None = None, **kwargs) -> Case:
    lines = [f"W-1;Теплосеть;01.11.2026;;{text}", f"W-2;Теплосеть;01.11.2026;;{GOOD_POINT}"]
    return Case(id, WORKS, named("works.csv", works(lines)), 2, "records", published=published, **kwargs)


def sections(id: str, text: str, published: int | None = None, **kwargs) -> Case:
    data = "\n".join(
        [STREETS_HEADER, f"S-1;ул. Ленина;{text}", "S-2;ул. Мира;LINESTRING (104.28 52.28, 104.29 52.285)"]
    )
    return Case(
        id, STREETS, named("sections.csv", data.encode()), 2, "records", "streets", published=published, **kwargs
    )


CASES = [
    # dates
    dated("date-1900-implausible", [row("W-1", start="01.01.1900"), row("W-2")], published=1, reason="1990"),
    dated("date-year-3026", [row("W-1", start="01.11.3026", end=""), row("W-2")], published=1),
    dated("date-31-february", [row("W-1", start="31.02.2026"), row("W-2")], published=1, reason="not a date"),
    dated("date-iso-with-offset", [row("W-1", start="2026-11-01T10:00:00+08:00"), row("W-2")], published=2),
    dated("date-iso-utc-z", [row("W-1", start="2026-11-01T02:00:00Z"), row("W-2")], published=2),
    dated("date-epoch-seconds-in-a-csv", [row("W-1", start="1667612760"), row("W-2")]),
    dated("date-excel-serial", [row("W-1", start="46327"), row("W-2")]),
    dated("date-two-digit-year", [row("W-1", start="01.11.26"), row("W-2")]),
    dated("date-us-order", [row("W-1", start="11/25/2026"), row("W-2")]),
    dated("date-words", [row("W-1", start="первое ноября"), row("W-2")], published=1),
    dated("all-rows-rejected", [row("W-1", start="вчера"), row("W-2", "Ливнёвка")], published=0),
    dated("end-before-start", [row("W-1", start="10.11.2026", end="01.11.2026"), row("W-2")], published=1),
    dated("dst-gap-local-time", [row("W-1", start="31.03.2024"), row("W-2")]),
    # required, allowed, duplicates
    dated("required-id-missing", [row(""), row("W-2")], published=1, reason="required"),
    dated("required-id-whitespace", [row("   "), row("W-2")], published=1, reason="required"),
    dated("required-start-missing", [row("W-1", start=""), row("W-2")], published=1, reason="required"),
    dated("value-not-allowed", [row("W-1", "Ливнёвка"), row("W-2")], published=1, reason="allowed"),
    dated("value-mapped-any-case", [row("W-1", "  ТЕПЛОСЕТЬ "), row("W-2", "водопровод")], published=2),
    dated("duplicate-ids", [row("W-1"), row("W-1", "Водопровод"), row("W-2"), row("W-2")], published=2),
    dated("duplicate-ids-differing-in-space", [row("W-1"), row(" W-1 ")]),
    # numbers, booleans, placeholders
    typed("numbers-with-spaces-and-commas", [building("B-1", "1 2", "1 234,5"), building("B-2", area="1\u00a0200,75")]),
    typed("number-with-two-decimal-marks", [building("B-1", area="1.234,5"), building("B-2")]),
    typed("integer-with-a-fraction", [building("B-1", floors="5,5"), building("B-2")], published=1),
    typed("integer-as-excel-float", [building("B-1", floors="5.0"), building("B-2")], published=2),
    typed("number-is-text", [building("B-1", area="много"), building("B-2")], published=1),
    typed(
        "booleans-in-words",
        [building("B-1", heated="Да"), building("B-2", heated="нет"), building("B-3", heated="yes")],
        published=3,
    ),
    typed("boolean-unknown-word", [building("B-1", heated="возможно"), building("B-2")], published=1),
    typed(
        "placeholders-in-typed-cells",
        [building("B-1", floors="Не заполнено", built="Незаполнено"), building("B-2", area="н/д"), building("B-3")],
        published=3,
    ),
    typed("dash-placeholders", [building("B-1", floors="-", area="—", built="-"), building("B-2")], published=2),
    typed("date-cell-with-time", [building("B-1", built="01.09.1975 00:00"), building("B-2")]),
    # x/y geometry
    typed("xy-swapped", [building("B-1", lon="52.287", lat="104.28"), building("B-2")], published=1, reason="extent"),
    typed("xy-missing", [building("B-1", lon="", lat=""), building("B-2")], published=1, reason="no geometry"),
    typed("xy-not-numbers", [building("B-1", lon="восток", lat="север"), building("B-2")], published=1),
    typed("xy-comma-decimals", [building("B-1", lon="104,28", lat="52,287"), building("B-2")], published=2),
    typed("xy-degrees-minutes", [building("B-1", lon="104°17'", lat="52°17'"), building("B-2")], published=1),
    typed("xy-nan-and-inf", [building("B-1", lon="nan", lat="inf"), building("B-2")], published=1),
    # WKT
    wkt("wkt-broken", "POINT (3335093.2 384985.6", published=1, reason="WKT"),
    wkt("wkt-empty", "POINT EMPTY", published=1, reason="empty"),
    wkt("wkt-3d", "POINT Z (3335093.2 384985.6 450)", published=2),
    wkt("wkt-measured", "POINT M (3335093.2 384985.6 7)"),
    wkt("wkt-ewkt-srid-prefix", "SRID=3857;POINT (3335093.2 384985.6)"),
    wkt("wkt-swapped-axes", SWAPPED_POINT, published=1, reason="extent"),
    wkt("wkt-wrong-crs-lonlat-in-msk", "POINT (104.28 52.287)", published=1, reason="extent"),
    wkt("wkt-nan-coordinates", "POINT (nan nan)", published=1),
    wkt("wkt-polygon-in-point-layer", "POLYGON ((3335093 384985, 3335193 384985, 3335193 385085, 3335093 384985))"),
    wkt("wkt-geometrycollection", f"GEOMETRYCOLLECTION ({GOOD_POINT}, {GOOD_POINT})"),
    wkt("wkt-wkb-hex", "0101000000CDCCCC4C1E71494166666666067F1741"),
    sections("line-curved", "CIRCULARSTRING (104.28 52.28, 104.285 52.29, 104.29 52.28)"),
    sections("line-compoundcurve", "COMPOUNDCURVE ((104.28 52.28, 104.29 52.285))"),
    sections("line-degenerate-two-identical-points", "LINESTRING (104.28 52.28, 104.28 52.28)", published=1),
    sections("line-single-point", "LINESTRING (104.28 52.28)", published=1),
    sections(
        "line-multilinestring-in-line-layer",
        "MULTILINESTRING ((104.28 52.28, 104.29 52.285), (104.3 52.3, 104.31 52.31))",
    ),
    sections("line-crossing-the-extent", "LINESTRING (104.28 52.28, 105.5 52.285)", published=1, reason="extent"),
]
