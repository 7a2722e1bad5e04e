"""CSV registers broken the ways clerks and exporters break them: encodings, delimiters, quoting, headers."""

from __future__ import annotations

from tests.corpus import Case, named
from tests.corpus.layers import WORKS
from tests.test_bad_input import GOOD_POINT, HEADER


def row(work_id: str, network: str = "Теплосеть", start: str = "01.11.2026", end: str = "10.11.2026") -> str:
    return f"{work_id};{network};{start};{end};{GOOD_POINT}"


def works(lines: list[str], encoding: str = "cp1251", newline: str = "\n", header: str = HEADER) -> bytes:
    return newline.join([header, *lines]).encode(encoding)


def case(id: str, data: bytes, records: int, **kwargs) -> Case:
    return Case(id, WORKS, named("works.csv", data), records, **kwargs)


GOOD3 = [row("W-1"), row("W-2", "Водопровод"), row("W-3")]

CASES = [
    # encodings
    case("utf8-declared-cp1251", works(GOOD3, "utf-8"), 3, expect="records", published=3),
    case("utf8-bom", works(GOOD3, "utf-8-sig"), 3, expect="records", published=3),
    # a BOM says the encoding outright; Excel's "Unicode text" export is UTF-16LE with one
    case("utf16le-bom", "\ufeff".encode("utf-16-le") + works(GOOD3, "utf-16-le"), 3, expect="records", published=3),
    case("utf16be-bom", "\ufeff".encode("utf-16-be") + works(GOOD3, "utf-16-be"), 3, expect="records", published=3),
    case("utf16-no-bom", works(GOOD3, "utf-16-le"), 3),
    case(
        "mixed-cp1251-and-utf8-rows",
        works([row("W-1")], "cp1251") + b"\n" + row("W-2", "Водопровод").encode("utf-8"),
        2,
        expect="records",
    ),
    case(
        "undefined-cp1251-byte",
        works([row("W-1")]) + b"\nW-2;\x98;01.11.2026;;" + GOOD_POINT.encode(),
        2,
        expect="records",
        published=1,
        reason="not cp1251 text",
    ),
    case("koi8r-declared-cp1251", works(GOOD3, "koi8-r"), 3),
    # delimiters and quoting
    case("comma-delimited", works(GOOD3).replace(b";", b","), 3, expect="file", reason="not found"),
    case("tab-delimited", works(GOOD3).replace(b";", b"\t"), 3, expect="file", reason="not found"),
    case("stray-delimiter", works([row("W-1"), row("W-2") + ";лишнее"]), 2, expect="records", published=1),
    case("missing-cell", works([row("W-1"), "W-2;Теплосеть;01.11.2026;" + GOOD_POINT]), 2, expect="records"),
    case(
        "unbalanced-quote",
        works([row("W-1"), 'W-2;"Теплосеть;01.11.2026;;' + GOOD_POINT, row("W-3")]),
        3,
        expect="records",
        published=2,
    ),
    case(
        "quote-never-closed-to-the-end",
        works([row("W-1"), 'W-2;"Теплосеть;01.11.2026;;' + GOOD_POINT] + [row(f"W-{n}") for n in range(3, 30)]),
        29,
        expect="records",
    ),
    case("quoted-delimiter-in-a-value", works([row("W-1", '"Тепло;сеть"'), row("W-2")]), 2, expect="records"),
    case("quoted-line-break-in-a-value", works([row("W-1", '"Тепло\nсеть"'), row("W-2")]), 2, expect="records"),
    case("doubled-quotes-inside", works([row("W-1", '"Тепло""сеть"""'), row("W-2")]), 2, expect="records"),
    case("quote-in-the-middle-of-a-cell", works([row("W-1", 'Тепло"сеть'), row("W-2")]), 2, expect="records"),
    # line ends and padding
    case("crlf-line-ends", works(GOOD3, newline="\r\n"), 3, expect="records", published=3),
    case("cr-only-line-ends", works(GOOD3, newline="\r"), 3, expect="records", published=3),
    case("blank-rows-between", works([row("W-1"), "", "   ", row("W-2"), "", ""]), 2, published=2),
    case("rows-of-empty-cells", works([row("W-1"), ";;;;", ";;;;", row("W-2")]), 2, published=2),
    case("trailing-delimiter-everywhere", works([r + ";" for r in GOOD3], header=HEADER + ";"), 3, published=3),
    case("no-final-newline-vs-many", works(GOOD3) + b"\n\n\n\n", 3, published=3),
    # header problems
    case("empty-file", b"", 0, expect="file", reason="empty"),
    case("whitespace-only-file", b"  \n\n \r\n", 0, expect="file", reason="empty"),
    case("header-only", works([]), 0, published=0),
    case("header-only-no-newline", HEADER.encode("cp1251"), 0, published=0),
    case("no-header-data-first", works(GOOD3[1:], header=GOOD3[0]), 3, expect="file", reason="not found"),
    case(
        "missing-column",
        works(["W-1;01.11.2026;10.11.2026;" + GOOD_POINT], header="Номер;Начало;Окончание;WKT"),
        1,
        expect="file",
        reason="Вид сетей",
    ),
    # two columns of one name: which one is the id? Taking either silently publishes a wrong value
    case("duplicate-column", works([row("W-1") + ";W-9"], header=HEADER + ";Номер"), 1, expect="file", reason="Номер"),
    case("extra-unknown-columns", works([r + ";x;y" for r in GOOD3], header=HEADER + ";Прим;Ещё"), 3, published=3),
    case("header-names-padded", works(GOOD3, header=" Номер ; Вид сетей ;Начало;Окончание; WKT"), 3, published=3),
    case("header-in-other-case", works(GOOD3, header=HEADER.upper()), 3),
    case("excel-sep-line-first", b"sep=;\n" + works(GOOD3), 3),
    case("header-with-unbalanced-quote", works(GOOD3, header='"Номер;Вид сетей;Начало;Окончание;WKT'), 3),
    case("header-repeated-mid-file", works([row("W-1"), HEADER, row("W-2")]), 3, expect="records"),
    # cells as data, not instructions
    case(
        "formula-cells",
        works([row("W-1", '=HYPERLINK("http://example.org/?"&A1;"click")'), row("W-2", "+7(3952)000"), row("W-3")]),
        3,
        expect="records",
        published=1,
    ),
    case("huge-cell", works([row("W-1", "Т" * 300_000), row("W-2")]), 2, expect="records", published=1),
    case("huge-unquoted-line", works([row("W-1"), "x" * 2_000_000, row("W-2")]), 3, expect="records"),
    case("nul-bytes-in-a-row", works([row("W-1")]) + b"\nW-2;\x00\x00;01.11.2026;;" + GOOD_POINT.encode(), 2),
    case("nul-bytes-everywhere", works(GOOD3).replace(b";", b";\x00"), 3),
    case("binary-garbage", bytes(range(256)) * 64, 0, expect="file"),
    case("control-characters-in-cells", works([row("W-1\x07\x1b"), row("W-2")]), 2, expect="records"),
]
