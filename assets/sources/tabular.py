"""CSV and XLSX registers as cities export them: cp1251, `;`, broken quoting, stray blank rows."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

from assets.records import RawRecord, SourceError, SourceTable

# A quoted field may legitimately span lines (notes with line breaks); past this many lines an
# open quote is a broken row, and the reader resynchronises on the next physical line.
MAX_LINES_PER_RECORD = 20
FALLBACK_ENCODINGS = ("utf-8-sig", "cp1251")


def decode_text(raw: bytes, declared: str, source: str, expected_columns: set[str]) -> tuple[str, str | None]:
    """Text of the file and, if the declared encoding was wrong, a warning naming the one used.

    Cities re-save registers in Excel and the encoding silently changes; cp1251 decodes any UTF-8
    byte sequence into mojibake without an error, so the header is the judge: the encoding under
    which the expected column names appear wins.
    """
    if not raw.strip():
        raise SourceError(source, "the file is empty")
    declared = "utf-8-sig" if declared.lower().replace("_", "-") in ("utf-8", "utf8") else declared
    candidates = [declared, *(e for e in FALLBACK_ENCODINGS if e != declared)]
    decoded: dict[str, str] = {}
    for encoding in candidates:
        try:
            decoded[encoding] = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        first_line = decoded[encoding].splitlines()[0] if decoded[encoding] else ""
        if not expected_columns or any(col in first_line for col in expected_columns):
            warning = (
                None
                if encoding == declared
                else (f"declared encoding {declared} does not fit the file; read it as {encoding}")
            )
            return decoded[encoding], warning
    if declared in decoded:  # decodes, but the header matches nothing: let the column check speak
        return decoded[declared], None
    raise SourceError(
        source, f"cannot decode the file as {declared} (the declared encoding) nor as {', '.join(FALLBACK_ENCODINGS)}"
    )


def _logical_records(text: str) -> Iterator[tuple[int, str | None, str]]:
    """(first physical line number, text or None if broken, raw) for each record of a CSV text."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start = index
        chunk = lines[index]
        while chunk.count('"') % 2 and index + 1 < len(lines) and index - start < MAX_LINES_PER_RECORD:
            index += 1
            chunk += "\n" + lines[index]
        if chunk.count('"') % 2:
            yield start + 1, None, lines[start]
            index = start + 1
            continue
        yield start + 1, chunk, chunk
        index += 1


def read_csv(path: Path, source: str, encoding: str, delimiter: str, expected: set[str]) -> SourceTable:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(source, f"cannot read the file: {exc.strerror}") from None
    text, warning = decode_text(raw, encoding, source, expected)
    records = _logical_records(text)
    try:
        _, header_text, _ = next(records)
    except StopIteration:
        raise SourceError(source, "the file is empty") from None
    if header_text is None:
        raise SourceError(source, "the header row has an unbalanced quote")
    header = [name.strip() for name in next(csv.reader([header_text], delimiter=delimiter))]
    return SourceTable(source, header, _csv_rows(records, header, source, delimiter, warning))


def _csv_rows(records, header: list[str], source: str, delimiter: str, warning: str | None) -> Iterator[RawRecord]:
    if warning:
        yield RawRecord(source, "file", {}, error=warning, error_field="encoding")
    for line_no, text, raw in records:
        number = f"line {line_no}"
        if text is None:
            yield RawRecord(
                source, number, {"_raw": raw}, error="unbalanced quotes: the row is cut or a quote is not closed"
            )
            continue
        if not text.strip() or not text.strip(delimiter + " \t"):
            continue  # blank rows and rows of empty cells are padding, not records
        try:
            cells = next(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
        except csv.Error as exc:
            yield RawRecord(source, number, {"_raw": raw}, error=f"malformed CSV row: {exc}")
            continue
        if len(cells) != len(header):
            yield RawRecord(
                source,
                number,
                {"_raw": raw},
                error=f"expected {len(header)} columns, found {len(cells)} (a stray delimiter or quote?)",
            )
            continue
        yield RawRecord(source, number, dict(zip(header, cells, strict=True)))


def read_xlsx(path: Path, source: str, sheet: str | None) -> SourceTable:
    import openpyxl  # imported here: only XLSX sources pay for it

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise SourceError(source, f"not a readable XLSX workbook ({exc.__class__.__name__}: {exc})") from None
    if sheet is not None and sheet not in book.sheetnames:
        raise SourceError(source, f"no sheet {sheet!r}; the workbook has {book.sheetnames}")
    rows = book[sheet or book.sheetnames[0]].iter_rows(values_only=True)
    header_row = next(rows, None)
    if header_row is None or not any(cell is not None for cell in header_row):
        raise SourceError(source, "the sheet is empty (no header row)")
    header = [str(cell).strip() if cell is not None else "" for cell in header_row]
    return SourceTable(source, header, _xlsx_rows(book, rows, header, source))


def _xlsx_rows(book, rows, header: list[str], source: str) -> Iterator[RawRecord]:
    try:
        for excel_row, cells in enumerate(rows, start=2):
            if all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells):
                continue
            values = {name: cell for name, cell in zip(header, cells, strict=False) if name}
            yield RawRecord(source, f"row {excel_row}", values)
    finally:
        book.close()
