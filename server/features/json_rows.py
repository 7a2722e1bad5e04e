"""A page's properties written as JSON by SQLite itself (`json_object`), where it writes them as the page would.

Rendered in Python, each property of a feature is a value made from the row, put in a dict and written out again by
orjson: a small bbox's 10 features of 17 text properties cost ~28 µs after the rows were read, ~12 µs with the
properties as one JSON text per row, taken as it is (orjson.Fragment). Small bbox, 1M points, 1 worker, 8
connections, fresh servers, two each way, 3 x 10 s: 3,570-3,639 against 3,133-3,435 req/s.

SQLite's `json_object` writes TEXT, INTEGER and NULL exactly as orjson writes what Python reads of them: a string with
`"` and `\\` escaped, the control characters as \\b \\t \\n \\f \\r or \\u00xx (lower-case hex) and everything else
as its UTF-8, an integer in decimal, null. Not so a REAL (15 significant digits where Python writes the shortest
that reads back the same), a BLOB (an error, where the page writes hex) and a boolean (0/1, where the page writes
false/true). So a page takes SQLite's JSON only when none of its properties is a boolean, a blob or a number (whose
values are REAL), the file's text is UTF-8, and no value of the page is a REAL or a BLOB: a column of TEXT affinity
cannot hold a REAL, every other is tested per row (NULL for the row then), and a BLOB fails the statement; either
way the page is read again the Python way (`read_as_json` says which). Text that is not valid UTF-8, which a
GeoPackage must not hold and the pipeline never writes, is passed on as its bytes here, where the Python way fails
the page (sqlite3 cannot decode it): checking every page for it would cost what this saves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.published.layer import LayerMeta
from server.published.sql import Fragment

CONVERTED_KINDS = frozenset({"boolean", "blob", "number"})  # see above: the page's own rendering (output.json_value)
MAX_PROPERTIES = 63  # json_object takes at most 127 arguments (SQLITE_MAX_FUNCTION_ARG), two per property


def json_properties(meta: LayerMeta, output: Sequence[str], sql_of: Callable[[str], str]) -> Fragment | None:
    """The SELECT column of `output`'s properties as one JSON object (UTF-8 bytes), NULL for a row holding a REAL;
    None when SQLite would not write these properties as the page does. `sql_of`: a property's expression. The
    names travel as parameters, as values do (server.published.sql)."""
    if not meta.utf8 or len(output) > MAX_PROPERTIES:
        return None
    if any(meta.columns.get(name, "string") in CONVERTED_KINDS for name in output):
        return None
    pairs = ", ".join(f"?, {sql_of(name)}" for name in output)
    written = f"CAST(json_object({pairs}) AS BLOB)"
    tested = [f"typeof({sql_of(name)}) = 'real'" for name in output if name not in meta.text_affinity]
    sql = f"CASE WHEN {' OR '.join(tested)} THEN NULL ELSE {written} END" if tested else written
    return Fragment(sql, tuple(output))


def read_as_json(rows: Sequence[tuple], column: int) -> bool:
    """Whether every row's properties came as JSON (a row holding a REAL has NULL in `column`)."""
    return all(row[column] is not None for row in rows)
