"""A delimited file read in pieces of a few MB: its plain rows split by Arrow's CSV parser, every other
line by the line-by-line reader of `assets.sources.tabular`, with the same outcome record for record.

A plain row is one physical line, balanced quotes, not inside a multi-line record, exactly the header's
number of fields, each either unquoted without a quote or fully quoted with doubled quotes inside, no
NUL, no undecodable byte, not blank or padding. The line reader and Arrow give such a line the same
cells. Nearly every line of a register is plain: the rest (broken quotes, records spanning lines, bad
bytes, wrong widths, blank rows) goes through `_logical_records` and `_judged` as before
(tests/test_csv_pieces.py reads the same files both ways).
"""

from __future__ import annotations

import codecs
import csv
import queue
import threading
from collections.abc import Iterator
from typing import BinaryIO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv

from assets.records import ColumnBatch, RawRecord, RowBatch
from assets.sources.tabular import BATCH, MAX_LINES_PER_RECORD, UNDECODABLE, _judged, _logical_records

T = TypeVar("T")
PIECE_BYTES = 8 * 1024 * 1024
# pieces read ahead by a thread of their own (`prefetched`); 0: read in the caller's thread
READ_AHEAD = 1
# the pieces read by a child process instead (assets.sources.csv_child), whatever READ_AHEAD says
READ_IN_CHILD = True
# RE2 repeats a group at most 1,000 times: a wider header is read by the line reader alone
MAX_PLAIN_WIDTH = 1001
# cells of a piece's column that tell repeated texts from distinct ones before the whole column is encoded
REPEAT_SAMPLE = 2_000
# what str.isspace() holds true (checked by tests/test_csv_pieces.py): a line that starts with one of
# these or with the delimiter may be blank or padding, which the line reader skips
SPACES = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _class(chars: str) -> str:
    """`chars` inside an RE2 character class."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)


def plain_row_pattern(delimiter: str, width: int) -> str:
    """RE2 pattern of a plain row of `width` fields (see the module's docstring)."""
    d = _class(delimiter)
    never = _class('"\0' + UNDECODABLE)
    field = f'(?:[^{never}{d}]*|"(?:[^{never}]|"")*")'
    return f"^[^{_class(SPACES)}{d}]" if width < 1 else f"^(?:{field})(?:{d}{field}){{{width - 1}}}$"


def read_pieces(
    handle: BinaryIO, encoding: str, size: int | None = None
) -> tuple[str, Iterator[tuple[bytes, bool]]] | None:
    """(the header line, the text after it in pieces, as UTF-8), or None when the header line is not one balanced
    line (or there is no text): the line reader judges such a file. `size`: bytes read a piece (PIECE_BYTES)."""
    texts = _texts(handle, encoding, size or PIECE_BYTES)
    text, last = next(texts)
    header, _, rest = text.partition(b"\n")
    header_text = header.decode("utf-8")
    if not text or header_text.count('"') % 2:
        return None

    def body() -> Iterator[tuple[bytes, bool]]:
        yield rest, last
        yield from texts

    return header_text, body()


def _texts(handle: BinaryIO, encoding: str, size: int) -> Iterator[tuple[bytes, bool]]:
    """(text, last) pieces of the decoded file as UTF-8, each ending after a line break (the last one: where the
    file ends), line breaks made "\\n": the lines `open(..., newline="")` gives, without their ends. Decoded, then
    encoded again: the rest of the work on a piece is Arrow's, on UTF-8 bytes, and a Python `str` of it would be
    copied into UTF-8 by Arrow and have its line breaks replaced, the GIL held all along, which the build's own
    thread waits for (on a million cp1251 rows: ~1.1 s of the ~1.7 s this thread held it)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    rest = b""
    while True:
        data = handle.read(size)
        # the decoder replaces what it cannot decode, so the text is valid Unicode ("replace": only a guard)
        text = rest + decoder.decode(data, final=not data).encode("utf-8", "replace")
        if not data:
            yield _newlines(text), True
            return
        cut = text.rfind(b"\n") + 1  # a "\r" before it belongs to it; a "\r" at the end may precede a "\n"
        if cut:
            rest = text[cut:]
            yield _newlines(text[:cut]), False
        else:
            rest = text


def _newlines(text: bytes) -> bytes:
    """CR LF and CR made LF, by Arrow: bytes.replace holds the GIL (a Windows export's million line ends, 0.8 s)."""
    if b"\r" not in text:
        return text
    one = _one_text(text)
    for end in ("\r\n", "\r"):
        one = pc.replace_substring(one, end, "\n")
    return one[0].as_buffer().to_pybytes()


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """`items`, made by a thread of their own up to `depth` ahead of the caller: Arrow's CSV parser and its
    regular expressions run without the GIL, beside the caller's work on the previous piece. An error of
    `items` is raised to the caller where the item would have come; a caller that stops early stops the
    thread (and closes `items`) before going on. `depth` 0: `items` as they are."""
    if depth < 1:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((True, item)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, raised there
            offer((False, error))
            return
        offer((False, None))

    worker = threading.Thread(target=produce, name="csv-pieces", daemon=True)
    worker.start()
    try:
        while True:
            more, value = ready.get()
            if more:
                yield value
            elif value is None:
                return
            else:
                raise value
    finally:
        stop.set()
        worker.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


def column_pieces(
    body: Iterator[tuple[bytes, bool]], header: list[str], source: str, delimiter: str, encoding: str
) -> Iterator[ColumnBatch]:
    """The records after the header line (line 1) as one ColumnBatch per piece."""
    plain = plain_row_pattern(delimiter, len(header))
    starts_plain = plain_row_pattern(delimiter, 0)
    limit = csv.field_size_limit()
    number, carried = 2, b""
    for text, last in body:
        # Arrow's allocator (mimalloc) keeps freed blocks in the heap of the thread that made them: this
        # thread's, when the pieces are read ahead, which only this thread can give back
        pa.default_memory_pool().release_unused()
        batch, carried, used = _piece(
            carried + text, last, number, header, source, delimiter, encoding, (plain, starts_plain, limit)
        )
        number += used
        if batch is not None:
            yield batch


def _piece(
    text: bytes,
    last: bool,
    number: int,
    header: list[str],
    source: str,
    delimiter: str,
    encoding: str,
    tests: tuple[str, str, int],
) -> tuple[ColumnBatch | None, bytes, int]:
    """(the piece's records, the text (UTF-8) of the lines left for the next piece, lines used)."""
    if not text:
        return None, b"", 0
    plain, starts_plain, limit = tests
    lines = pc.split_pattern(_one_text(text), "\n").flatten()
    if text.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    count = len(lines)
    slow = ~(
        pc.and_(
            pc.and_(pc.match_substring_regex(lines, plain), pc.match_substring_regex(lines, starts_plain)),
            pc.less_equal(pc.utf8_length(lines), limit),
        ).to_numpy(zero_copy_only=False)
    )
    # a plain row's quotes pair up (each quoted field holds two and doubled ones): the lines with an odd
    # number of them are among the others, whose quotes alone are counted
    others = np.flatnonzero(slow)
    quotes = pc.count_substring(lines.take(pa.array(others)), '"').to_numpy(zero_copy_only=False)
    odd = others[quotes % 2 == 1]
    cut = count
    k = 0
    while k < len(odd):  # records over several lines, as `_logical_records` pairs them
        j = odd[k]
        if k + 1 < len(odd) and odd[k + 1] - j <= MAX_LINES_PER_RECORD:
            slow[j : odd[k + 1] + 1] = True
            k += 2
            continue
        if not last and k + 1 == len(odd) and j + MAX_LINES_PER_RECORD >= count:
            cut = int(j)  # the record may go on in the next piece: it starts the next piece
            break
        slow[j] = True
        k += 1
    carried = b""
    if cut < count:
        carried = ("\n".join(lines.slice(cut).to_pylist()) + "\n").encode("utf-8")
        if cut == 0:
            return None, carried, 0
    slow = slow[:cut]
    fast = np.flatnonzero(~slow)
    # the other lines, run by run, through the line reader
    slow_numbers: list[int] = []
    slow_rows: list[list[str]] = []
    rejects: list[tuple[int, RawRecord]] = []
    edges = np.flatnonzero(np.diff(np.concatenate(([False], slow, [False])).astype(np.int8)))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        records = _logical_records(lines.slice(start, end - start).to_pylist(), number + int(start))
        batch: list = []
        for record in [*records, None]:
            if record is not None:
                batch.append(record)
                if len(batch) < BATCH:
                    continue
            for item in _judged(batch, header, source, delimiter, encoding):
                if isinstance(item, RowBatch):
                    slow_numbers += [int(n[5:]) for n in item.numbers]
                    slow_rows += item.rows
                else:
                    rejects.append((int(item.number[5:]), item))
            batch = []
    plain_lines = lines.slice(0, cut) if len(fast) == cut else lines.take(pa.array(fast))  # mostly all of them
    columns = _plain_cells(plain_lines, len(header), delimiter) if len(fast) else None
    at = fast + number
    if slow_rows:
        cells = list(zip(*slow_rows, strict=True))
        extra = [pa.array(c, pa.string()) for c in cells]
        columns = extra if columns is None else [pa.concat_arrays([a, b]) for a, b in zip(columns, extra, strict=True)]
        at = np.concatenate((at, np.array(slow_numbers, dtype=np.int64)))
        order = np.argsort(at, kind="stable")
        at = at[order]
        take = pa.array(order)
        columns = [c.take(take) for c in columns]
    if columns is None:
        columns = [pa.array([], pa.string()) for _ in header]
    placed = [(int(np.searchsorted(at, line)), record) for line, record in rejects]
    return ColumnBatch(source, header, at, columns, placed, [_repeated_encoded(c) for c in columns]), carried, cut


def _repeated_encoded(cells: pa.Array) -> pa.DictionaryArray | None:
    """The column's dictionary encoding if its texts repeat (at most half of them distinct, in its first
    REPEAT_SAMPLE cells and in all), else None: the build codes a column of repeated texts by its distinct ones
    (`row_batches._add_columns`). The sample spares hashing every cell of a column of ids or WKT."""
    sample = cells.slice(0, REPEAT_SAMPLE)
    if 2 * pc.count_distinct(sample).as_py() > len(sample):
        return None
    encoded = pc.dictionary_encode(cells)
    return encoded if 2 * len(encoded.dictionary) <= len(cells) else None


def _one_text(text: bytes) -> pa.Array:
    """`text` (valid UTF-8) as an Arrow array of that one text, its bytes not copied."""
    kind, offsets = (pa.string(), np.int32) if len(text) < 2**31 else (pa.large_string(), np.int64)
    ends = pa.py_buffer(np.array([0, len(text)], dtype=offsets))
    return pa.Array.from_buffers(kind, 1, [None, ends, pa.py_buffer(text)])


def _plain_cells(lines: pa.Array, width: int, delimiter: str) -> list[pa.Array]:
    joined = pc.binary_join_element_wise(lines, "", "\n")
    end = int(np.frombuffer(joined.buffers()[1], np.int32)[joined.offset + len(joined)])
    start = int(np.frombuffer(joined.buffers()[1], np.int32)[joined.offset])
    names = [f"c{i}" for i in range(width)]
    table = arrow_csv.read_csv(
        pa.BufferReader(joined.buffers()[2].slice(start, end - start)),
        read_options=arrow_csv.ReadOptions(column_names=names),
        parse_options=arrow_csv.ParseOptions(
            delimiter=delimiter,
            quote_char='"',
            double_quote=True,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        ),
        convert_options=arrow_csv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    if table.num_rows != len(lines):
        raise AssertionError(f"Arrow read {table.num_rows} plain rows of {len(lines)}")
    return [table.column(i).combine_chunks() for i in range(width)]
