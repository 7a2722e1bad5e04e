"""A GeoPackage's spatial index (the `gpkg_rtree_index` extension) written in bulk from the features' boxes.

GDAL builds the same index feature by feature in a thread while it writes, then flushes it at close, the GIL
held: on a million points written from a ready Arrow table that was 4 s of a 7 s write. Here the tree is
packed by Sort-Tile-Recursive from numpy arrays and its nodes are written straight into SQLite's R*Tree shadow
tables, as GDAL's own bulk loader and SQLite's `rtree.c` lay them out (node = 2-byte depth, 2-byte cell count,
then cells of a big-endian 64-bit id and four big-endian 32-bit floats: minx, maxx, miny, maxy). The virtual
table, its triggers and the extension's registration are the ones GDAL writes, so GDAL, QGIS and SQLite's
`rtreecheck()` see the index they expect.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import numpy as np
import shapely

from server.published.sql import quote_identifier

# SQLite's rtree.c: at most 51 cells a node, whatever the page size (RTREE_MAXCELLS)
RTREE_MAXCELLS = 51
CHUNK = 65_536  # features a step where a whole-layer temporary is not needed
# the scratch file beside the GeoPackage (named after it: a killed writer's is cleaned up with its file)
SCRATCH_SUFFIX = "-rtree"
CELL = np.dtype([("id", ">i8"), ("minx", ">f4"), ("maxx", ">f4"), ("miny", ">f4"), ("maxy", ">f4")])
# the GeoPackage 1.2 table, as GDAL creates it (a file written without an extension has none)
EXTENSIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT,column_name TEXT,extension_name TEXT NOT NULL,"
    "definition TEXT NOT NULL,scope TEXT NOT NULL,CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))"
)
EXTENSION = ("gpkg_rtree_index", "http://www.geopackage.org/spec120/#extension_rtree", "write-only")

# GDAL's triggers (ogr/ogrsf_frmts/gpkg, GDAL 3.6-3.12) that keep the index right when a client edits the
# layer: ST_* are GDAL's and SpatiaLite's SQL functions, resolved by whoever edits, as with a GDAL-made file.
TRIGGERS = """
CREATE TRIGGER "{r}_insert" AFTER INSERT ON "{t}" WHEN (new."{g}" NOT NULL AND NOT ST_IsEmpty(NEW."{g}")) BEGIN INSERT OR REPLACE INTO "{r}" VALUES (NEW."{f}",ST_MinX(NEW."{g}"), ST_MaxX(NEW."{g}"),ST_MinY(NEW."{g}"), ST_MaxY(NEW."{g}")); END;
CREATE TRIGGER "{r}_update1" AFTER UPDATE OF "{g}" ON "{t}" WHEN OLD."{f}" = NEW."{f}" AND (NEW."{g}" NOTNULL AND NOT ST_IsEmpty(NEW."{g}")) BEGIN INSERT OR REPLACE INTO "{r}" VALUES (NEW."{f}",ST_MinX(NEW."{g}"), ST_MaxX(NEW."{g}"),ST_MinY(NEW."{g}"), ST_MaxY(NEW."{g}")); END;
CREATE TRIGGER "{r}_update2" AFTER UPDATE OF "{g}" ON "{t}" WHEN OLD."{f}" = NEW."{f}" AND (NEW."{g}" ISNULL OR ST_IsEmpty(NEW."{g}")) BEGIN DELETE FROM "{r}" WHERE id = OLD."{f}"; END;
CREATE TRIGGER "{r}_update3" AFTER UPDATE ON "{t}" WHEN OLD."{f}" != NEW."{f}" AND (NEW."{g}" NOTNULL AND NOT ST_IsEmpty(NEW."{g}")) BEGIN DELETE FROM "{r}" WHERE id = OLD."{f}"; INSERT OR REPLACE INTO "{r}" VALUES (NEW."{f}",ST_MinX(NEW."{g}"), ST_MaxX(NEW."{g}"),ST_MinY(NEW."{g}"), ST_MaxY(NEW."{g}")); END;
CREATE TRIGGER "{r}_update4" AFTER UPDATE ON "{t}" WHEN OLD."{f}" != NEW."{f}" AND (NEW."{g}" ISNULL OR ST_IsEmpty(NEW."{g}")) BEGIN DELETE FROM "{r}" WHERE id IN (OLD."{f}", NEW."{f}"); END;
CREATE TRIGGER "{r}_delete" AFTER DELETE ON "{t}" WHEN old."{g}" NOT NULL BEGIN DELETE FROM "{r}" WHERE id = OLD."{f}"; END;
"""  # noqa: E501 - GDAL's text, one statement a line


def boxes(shapes: np.ndarray, fids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the fids of the shapes that have a box, their boxes as 32-bit rows of minx, maxx, miny, maxy rounded
    outward): missing and empty geometries are not indexed, as GDAL's trigger has it. A chunk at a time: the
    64-bit bounds of a million shapes at once would be 32 MB more at the publication's peak."""
    box = np.empty((len(shapes), 4), dtype=np.float32)
    for start in range(0, len(shapes), CHUNK):
        bounds = shapely.bounds(shapes[start : start + CHUNK])  # minx, miny, maxx, maxy; NaN: missing, empty
        box[start : start + CHUNK] = float32_outward(bounds[:, [0, 2, 1, 3]])
    present = ~np.isnan(box[:, 0])
    if present.all():
        return np.array(fids, dtype=np.int64), box
    return np.asarray(fids, dtype=np.int64)[present], box[present]


def float32_outward(box: np.ndarray) -> np.ndarray:
    """Boxes as 32-bit floats that contain the 64-bit ones: minimums rounded down, maximums up (SQLite's
    rtreeValueDown / rtreeValueUp), so that no feature falls outside its own box."""
    rounded = box.astype(np.float32)
    low, high = rounded[:, [0, 2]], rounded[:, [1, 3]]
    low[:] = np.where(low > box[:, [0, 2]], np.nextafter(low, np.float32(-np.inf)), low)
    high[:] = np.where(high < box[:, [1, 3]], np.nextafter(high, np.float32(np.inf)), high)
    return np.column_stack([low[:, 0], high[:, 0], low[:, 1], high[:, 1]])


def _str_order(box: np.ndarray, capacity: int) -> np.ndarray:
    """Sort-Tile-Recursive order of `box` (rows of minx, maxx, miny, maxy): vertical slices by the centres' x,
    each slice by y; consecutive runs of `capacity` rows are then nodes that cover compact areas."""
    count = len(box)
    slices = int(np.ceil(np.sqrt(-(-count // capacity))))
    slice_of = np.empty(count, dtype=np.int32)
    slice_of[np.argsort(box[:, 0] + box[:, 1], kind="stable")] = np.arange(count, dtype=np.int32) // (slices * capacity)
    return np.lexsort((box[:, 2] + box[:, 3], slice_of))


def _level_sizes(count: int, capacity: int) -> list[int]:
    """Nodes per level, the leaves first, up to the one root."""
    sizes = [max(1, -(-count // capacity))]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // capacity))
    return sizes


def _write_levels(db: sqlite3.Connection, ids: np.ndarray, box: np.ndarray, node_size: int) -> None:
    """Pack the tree level by level from the leaves up and write each level's nodes as soon as it is packed
    (only the leaves are large). Numbering as rtree.c wants it: the root is node 1, then the levels from the top
    down; each feature's leaf goes to the rowid table, each node's parent to the parent table."""
    capacity = min(RTREE_MAXCELLS, (node_size - 4) // CELL.itemsize)
    sizes = _level_sizes(len(ids), capacity)
    first_number = np.cumsum([1, *sizes[::-1]])[:-1][::-1]  # per level, leaves first
    node = np.dtype(
        {"names": ["depth", "count", "cells"], "formats": [">u2", ">u2", (CELL, capacity)], "itemsize": node_size}
    )
    for level, size in enumerate(sizes):
        order = _str_order(box, capacity)
        ids, box = ids[order], box[order]  # the level's own arrays go: only the sorted copies stay
        del order
        nodes = np.zeros(size, dtype=node)
        nodes["depth"][0] = len(sizes) - 1 if size == 1 else 0  # the root says how deep the tree is
        nodes["count"] = np.diff(np.minimum(np.arange(size + 1) * capacity, len(ids)))
        cells = nodes["cells"]
        for name, column in (("id", ids if level == 0 else ids + first_number[level - 1]), *_coordinates(box)):
            padded = np.zeros(size * capacity, dtype=column.dtype)
            padded[: len(column)] = column
            cells[name] = padded.reshape(size, capacity)
        raw = nodes.view(np.uint8).reshape(size, node_size)
        db.executemany(
            "INSERT INTO node (nodeno, data) VALUES (?, ?)",
            ((int(first_number[level]) + n, raw[n].tobytes()) for n in range(size)),
        )
        del nodes, cells, raw
        parent_of = first_number[level] + np.arange(len(ids)) // capacity  # the node each cell is in
        if level == 0:
            by_fid = np.argsort(ids, kind="stable")  # rowid order: SQLite appends instead of splitting pages
            for start in range(0, len(by_fid), CHUNK):
                chosen = by_fid[start : start + CHUNK]
                db.executemany(
                    "INSERT INTO rowid (rowid, nodeno) VALUES (?, ?)",
                    zip(ids[chosen].tolist(), parent_of[chosen].tolist(), strict=True),
                )
            del by_fid
        else:
            db.executemany(
                "INSERT INTO parent (nodeno, parentnode) VALUES (?, ?)",
                zip((ids + first_number[level - 1]).tolist(), parent_of.tolist(), strict=True),
            )
        if size == 1:
            return
        first = np.arange(0, len(ids), capacity)
        box = np.column_stack(  # each node's box: the union of its cells' boxes
            [
                np.minimum.reduceat(box[:, 0], first),
                np.maximum.reduceat(box[:, 1], first),
                np.minimum.reduceat(box[:, 2], first),
                np.maximum.reduceat(box[:, 3], first),
            ]
        )
        ids = np.arange(size, dtype=np.int64)  # the nodes' places in their level, numbered by first_number


def _coordinates(box: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(name, box[:, n]) for n, name in enumerate(("minx", "maxx", "miny", "maxy"))]


@contextlib.contextmanager
def spatial_index_beside(
    path: Path, table: str, geometry_column: str, fid_column: str, fids: np.ndarray, shapes: np.ndarray
):
    """Add the spatial index of `table` to the GeoPackage at `path` (written without one) from the features'
    `fids` and `shapes` (both as published). The tree is packed and written to a file beside `path` by a thread
    while the body of the `with` runs (meant for SQLite's own work on `path`, which releases the GIL: the B-tree
    indexes), then copied into `path` (SQLite copies the rows of a table into an empty one of the same shape
    page by page)."""
    name = f"rtree_{table}_{geometry_column}"
    with sqlite3.connect(path) as db:
        # a temporary file, fsynced once before it is renamed: a synced commit here flushed the whole fresh file
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute(f"CREATE VIRTUAL TABLE {quote_identifier(name)} USING rtree(id, minx, maxx, miny, maxy)")
        (node_size,) = db.execute(
            f"SELECT length(data) FROM {quote_identifier(name + '_node')} WHERE nodeno = 1"
        ).fetchone()
    db.close()
    beside = path.with_name(path.name + SCRATCH_SUFFIX)
    outcome: list[BaseException] = []
    worker = threading.Thread(
        target=_written_or_failed,
        args=(outcome, _write_tree, beside, node_size, fids, shapes),
        name="rtree",
        daemon=True,
    )
    worker.start()
    try:
        yield
    except BaseException:
        worker.join()
        _remove(beside)
        raise
    worker.join()
    try:
        if outcome:
            raise outcome[0]
        _copy_tree(path, beside, name, table, geometry_column, fid_column)
    finally:
        _remove(beside)


def _remove(scratch: Path) -> None:
    # never in place of the error being raised: a scratch file left behind goes with the next publication's
    # clean-up of killed writers' files (assets.publish.remove_stale_parts)
    with contextlib.suppress(OSError):
        scratch.unlink(missing_ok=True)


def _written_or_failed(outcome: list[BaseException], write, *args) -> None:
    try:
        write(*args)
    except BaseException as error:  # noqa: BLE001 - re-raised by the thread that waits for it
        outcome.append(error)


def _write_tree(beside: Path, node_size: int, fids: np.ndarray, shapes: np.ndarray) -> None:
    beside.unlink(missing_ok=True)
    with sqlite3.connect(beside) as db:
        db.execute("PRAGMA journal_mode = OFF")  # a scratch file
        db.execute("PRAGMA synchronous = OFF")
        # the shapes of rtree.c's shadow tables
        db.execute("CREATE TABLE node(nodeno INTEGER PRIMARY KEY, data)")
        db.execute("CREATE TABLE parent(nodeno INTEGER PRIMARY KEY, parentnode)")
        db.execute("CREATE TABLE rowid(rowid INTEGER PRIMARY KEY, nodeno)")
        ids, box = boxes(shapes, fids)
        if len(ids):
            _write_levels(db, ids, box, node_size)
        else:
            db.execute("INSERT INTO node (nodeno, data) VALUES (1, zeroblob(?))", (node_size,))
    db.close()


def _copy_tree(path: Path, beside: Path, name: str, table: str, geometry_column: str, fid_column: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = OFF")  # a temporary file, fsynced before it is renamed
        db.execute("PRAGMA synchronous = OFF")
        db.execute("ATTACH DATABASE ? AS beside", (str(beside),))
        for part in ("node", "parent", "rowid"):
            db.execute(f"DELETE FROM main.{quote_identifier(f'{name}_{part}')}")
            db.execute(f"INSERT INTO main.{quote_identifier(f'{name}_{part}')} SELECT * FROM beside.{part}")
        db.commit()
        db.execute("DETACH DATABASE beside")
        names = {
            key: value.replace('"', '""')
            for key, value in {"r": name, "t": table, "g": geometry_column, "f": fid_column}.items()
        }
        db.executescript(TRIGGERS.format(**names))
        db.execute(EXTENSIONS_TABLE)
        db.execute(
            "INSERT INTO gpkg_extensions (table_name, column_name, extension_name, definition, scope)"
            " VALUES (?, ?, ?, ?, ?)",
            (table, geometry_column, *EXTENSION),
        )
    db.close()
