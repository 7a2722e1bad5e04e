"""CSV and XLSX registers as cities export them: cp1251, `;`, broken quoting, stray blank rows."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from assets.records import BatchedRecords, ColumnBatch, RawRecord, RowBatch, SourceError, SourceTable

# A quoted field may legitimately span lines (notes with line breaks); past this many lines an
# open quote is a broken row, and the reader resynchronises on the next physical line.
MAX_LINES_PER_RECORD = 20
FALLBACK_ENCODINGS = ("utf-8-sig", "cp1251")
BATCH = 256  # records judged together (one csv.reader for their quoted rows); small enough to die young for the GC


HEAD_BYTES = 256 * 1024  # holds the header line of any real register
# longest first: the UTF-32LE mark begins with the UTF-16LE one; the codecs consume the mark
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
UNDECODABLE = "\ufffd"


def choose_encoding(head: bytes, declared: str, source: str, expected_columns: set[str]) -> tuple[str, str | None]:
    """The encoding to read the file with and, if the declared one was wrong, a warning naming it.

    Cities re-save registers in Excel and the encoding silently changes; cp1251 decodes any UTF-8
    byte sequence into mojibake without an error, so the header is the judge: the encoding under
    which the expected column names appear wins. Only the head of the file is read for this.
    """
    if not head.strip():
        raise SourceError(source, "the file is empty")
    declared = "utf-8-sig" if declared.lower().replace("_", "-") in ("utf-8", "utf8") else declared
    bom = next((encoding for mark, encoding in BOMS if head.startswith(mark)), None)
    if bom is not None:  # a byte-order mark says the encoding outright (Excel's "Unicode text" is UTF-16LE)
        same = codecs.lookup(bom).name == codecs.lookup(declared).name
        return bom, None if same else f"declared encoding {declared} does not fit the file; read it as {bom}"
    candidates = [declared, *(e for e in FALLBACK_ENCODINGS if e != declared)]
    for encoding in candidates:
        # a stray undecodable byte in some row must not disqualify the right encoding: that row
        # alone is rejected later; the header decides
        text = head.decode(encoding, errors="replace")
        first_line = text.splitlines()[0] if text else ""
        if not expected_columns or any(col in first_line for col in expected_columns):
            warning = (
                None
                if encoding == declared
                else f"declared encoding {declared} does not fit the file; read it as {encoding}"
            )
            return encoding, warning
    return declared, None  # the header matches nothing: the column check names what is missing


def _logical_records(lines: Iterable[str], first: int = 1) -> Iterator[tuple[int, str | None, str]]:
    """(first physical line number, text or None if broken, raw) for each record of a CSV text whose
    first line is line `first`, streaming: only the lines of the record being assembled are held."""
    source = iter(lines)
    pending: deque[str] = deque()

    def pull() -> bool:
        line = next(source, None)
        if line is None:
            return False
        pending.append(line.rstrip("\r\n"))
        return True

    number = first
    while True:
        if not pending:
            for line in source:  # balanced lines, nearly all of them, go straight through
                line = line.rstrip("\r\n")
                if line.count('"') % 2 == 0:
                    yield number, line, line
                    number += 1
                else:
                    pending.append(line)
                    break
            else:
                return
        chunk, used = pending[0], 1
        while chunk.count('"') % 2 and used <= MAX_LINES_PER_RECORD and (used < len(pending) or pull()):
            chunk += "\n" + pending[used]
            used += 1
        if chunk.count('"') % 2:
            yield number, None, pending.popleft()  # resynchronise on the next physical line
            number += 1
            continue
        for _ in range(used):
            pending.popleft()
        yield number, chunk, chunk
        number += used


def read_csv(path: Path, source: str, encoding: str, delimiter: str, expected: set[str]) -> SourceTable:
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as exc:
        raise SourceError(source, f"cannot read the file: {exc.strerror}") from None
    chosen, warning = choose_encoding(head, encoding, source, expected)
    from assets.sources import csv_child, csv_pieces  # they import this module

    handle = open(path, "rb")  # noqa: SIM115 - closed by _closing
    # a file of a few pieces is read before a child process would have started
    in_child = (
        csv_pieces.READ_IN_CHILD and os.fstat(handle.fileno()).st_size > csv_child.CHILD_PIECES * csv_pieces.PIECE_BYTES
    )
    pieces = csv_pieces.read_pieces(handle, chosen, csv_child.HEADER_BYTES if in_child else None)
    if pieces is not None:
        header_text, body = pieces
        header = [name.strip() for name in next(csv.reader([header_text], delimiter=delimiter))]
        if len(header) <= csv_pieces.MAX_PLAIN_WIDTH:
            close = handle.close
            if in_child:  # the child reads the file again from its start
                body.close()
                child = csv_child.ChildPieces(handle, header, source, delimiter, chosen)
                close = lambda: (child.close(), handle.close())  # noqa: E731 - a table never read stops its child
                # a thread of this process takes each piece out of the pipe as soon as the child has it
                items = csv_pieces.prefetched(child, csv_child.PIECES_AHEAD)
            else:
                items = csv_pieces.prefetched(
                    csv_pieces.column_pieces(body, header, source, delimiter, chosen), csv_pieces.READ_AHEAD
                )
            if warning:
                items = _after(RawRecord(source, "file", {}, error=warning, error_field="encoding"), items)
            return SourceTable(source, header, BatchedRecords(_closing(items, handle)), close=close)
    handle.close()  # a header over several lines, wider than the plain-row test, or no text: the line reader alone
    text = open(path, encoding=chosen, errors="replace", newline="")  # noqa: SIM115 - closed by _csv_rows
    records = _logical_records(text)
    try:
        _, header_text, _ = next(records)
    except StopIteration:
        text.close()
        raise SourceError(source, "the file is empty") from None
    if header_text is None:
        text.close()
        raise SourceError(source, "the header row has an unbalanced quote")
    header = [name.strip() for name in next(csv.reader([header_text], delimiter=delimiter))]
    batches = _closing(_csv_rows(records, header, source, delimiter, warning, chosen), text)
    return SourceTable(source, header, BatchedRecords(batches), close=text.close)


def _after(first: RawRecord, items: Iterator[RawRecord | ColumnBatch]) -> Iterator[RawRecord | ColumnBatch]:
    yield first
    yield from items


def _closing(records: Iterator, handle) -> Iterator:
    try:
        yield from records
    finally:
        handle.close()


def _csv_rows(
    records, header: list[str], source: str, delimiter: str, warning: str | None, encoding: str
) -> Iterator[RawRecord | RowBatch]:
    if warning:
        yield RawRecord(source, "file", {}, error=warning, error_field="encoding")
    batch: list[tuple[int, str | None, str]] = []
    for record in records:
        batch.append(record)
        if len(batch) == BATCH:
            yield from _judged(batch, header, source, delimiter, encoding)
            batch = []
    yield from _judged(batch, header, source, delimiter, encoding)


def _judged(
    batch: list[tuple[int, str | None, str]], header: list[str], source: str, delimiter: str, encoding: str
) -> Iterator[RawRecord | RowBatch]:
    """The batch's rejects and its runs of well-formed rows (RowBatch), in order; the cells as one
    `csv.reader` per record gives them."""
    padding = delimiter + " \t"
    limit = csv.field_size_limit()
    cells: list[list[str] | csv.Error | None] = [None] * len(batch)
    shared = []  # single-line records with quotes: one reader for all of them
    for position, (_, text, raw) in enumerate(batch):
        if UNDECODABLE in raw or text is None:
            continue
        # blank or only padding: a text that starts with neither cannot be (a strip copies the row)
        if (not text or text[0].isspace() or text[0] in padding) and (not text.strip() or not text.strip(padding)):
            continue
        if '"' not in text and "\0" not in text and len(text) <= limit:
            cells[position] = text.split(delimiter)  # no quote: the reader would split it the same way
        elif "\n" in text:
            cells[position] = _row(text, delimiter)
        else:
            shared.append(position)
    for position, row in zip(shared, _rows([batch[p][1] for p in shared], delimiter), strict=True):
        cells[position] = row
    numbers: list[str] = []
    rows: list[list[str]] = []
    width = len(header)
    for (line_no, text, raw), row in zip(batch, cells, strict=True):
        if row.__class__ is list and len(row) == width:  # an undecodable row has no cells
            numbers.append(f"line {line_no}")  # the common case first: a well-formed row
            rows.append(row)
            continue
        if row is None and text is not None and UNDECODABLE not in raw:
            continue  # blank rows and rows of empty cells are padding, not records
        if rows:
            yield RowBatch(source, header, numbers, rows)
            numbers, rows = [], []
        number = f"line {line_no}"
        if UNDECODABLE in raw:
            yield RawRecord(source, number, {"_raw": raw}, error=f"bytes that are not {encoding} text in this row")
            continue
        if text is None:
            yield RawRecord(
                source, number, {"_raw": raw}, error="unbalanced quotes: the row is cut or a quote is not closed"
            )
            continue
        if isinstance(row, csv.Error):
            yield RawRecord(source, number, {"_raw": raw}, error=f"malformed CSV row: {row}")
            continue
        if len(row) != len(header):
            yield RawRecord(
                source,
                number,
                {"_raw": raw},
                error=f"expected {len(header)} columns, found {len(row)} (a stray delimiter or quote?)",
            )
            continue
        raise AssertionError(f"{source} {number}: a well-formed row was not batched")
    if rows:
        yield RowBatch(source, header, numbers, rows)


def _row(text: str, delimiter: str) -> list[str] | csv.Error:
    try:
        return next(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return exc


def _rows(texts: list[str], delimiter: str) -> list[list[str] | csv.Error]:
    """Each single-line text's cells (or error), read by one `csv.reader` over all of them: a reader per
    row costs more than the row. CPython's reader starts afresh on each next(), also after an error."""
    out: list[list[str] | csv.Error] = []
    while len(out) < len(texts):
        start = len(out)
        reader = csv.reader((texts[i] for i in range(start, len(texts))), delimiter=delimiter, strict=True)
        while len(out) < len(texts):
            before = reader.line_num
            try:
                row: list[str] | csv.Error = next(reader)
            except csv.Error as exc:
                row = exc
            if reader.line_num - before != 1:
                # an open quote ran on into the next text; read alone, the text ends there: a fresh
                # reader for it, and another for the texts after it
                out.append(_row(texts[len(out)], delimiter))
                break
            out.append(row)
    return out


def read_xlsx(path: Path, source: str, sheet: str | None) -> SourceTable:
    """Every cell the sheet holds, read with calamine: the `<dimension>` a workbook declares is often
    stale (exporters forget to update it), and a reader that trusts it drops the rows beyond it."""
    import python_calamine  # imported here: only XLSX sources pay for it

    unreadable = (OSError, python_calamine.CalamineError)
    try:
        book = python_calamine.CalamineWorkbook.from_path(str(path))
    except unreadable as exc:
        raise SourceError(source, f"not a readable XLSX workbook ({exc.__class__.__name__}: {exc})") from None
    try:
        if sheet is not None and sheet not in book.sheet_names:
            raise SourceError(source, f"no sheet {sheet!r}; the workbook has {book.sheet_names}")
        # rows from A1 whatever the first used cell, so that row numbers are Excel's
        rows = book.get_sheet_by_name(sheet or book.sheet_names[0]).to_python(skip_empty_area=False)
    except unreadable as exc:
        raise SourceError(source, f"cannot read the sheet ({exc.__class__.__name__}: {exc})") from None
    finally:
        book.close()
    if not rows or all(_empty(cell) for cell in rows[0]):
        raise SourceError(source, "the sheet is empty (no header row)")
    header = [str(cell).strip() if not _empty(cell) else "" for cell in rows[0]]
    return SourceTable(source, header, _xlsx_rows(rows, header, source))


def _empty(cell: object) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _cell(cell: object) -> object:
    if cell == "":
        return None  # calamine writes an empty cell as "": None, as for every other source
    if type(cell) is dt.date:
        # calamine turns any date cell at midnight into a date, even one formatted with a time;
        # a cell is a moment, as Excel (and openpyxl) see it
        return dt.datetime(cell.year, cell.month, cell.day)
    return cell


def _xlsx_rows(rows: list[list], header: list[str], source: str) -> Iterator[RawRecord]:
    for excel_row, cells in enumerate(rows[1:], start=2):
        if all(_empty(cell) for cell in cells):
            continue
        values = {name: _cell(cell) for name, cell in zip(header, cells, strict=False) if name}
        yield RawRecord(source, f"row {excel_row}", values)
