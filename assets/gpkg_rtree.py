"""A GeoPackage's spatial index (the `gpkg_rtree_index` extension) written in bulk from the features' boxes.

GDAL builds the same index feature by feature while it writes, then flushes it at close: on a million points
that was 4 s of a 7 s write, the GIL held throughout. Here the tree is packed by Sort-Tile-Recursive from
numpy arrays and its nodes are written straight into SQLite's R*Tree shadow tables, as GDAL's own bulk loader
and SQLite's `rtree.c` lay them out (node = 2-byte depth, 2-byte cell count, then cells of a big-endian 64-bit
id and four big-endian 32-bit floats: minx, maxx, miny, maxy). The virtual table, its triggers and the
extension's registration are the ones GDAL writes, so GDAL, QGIS and SQLite's `rtreecheck()` see the index
they expect.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import numpy as np
import shapely

# SQLite's rtree.c: at most 51 cells a node, whatever the page size (RTREE_MAXCELLS)
RTREE_MAXCELLS = 51
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


def boxes(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the shapes that have a box, their boxes as minx, maxx, miny, maxy): missing and empty
    geometries are not indexed, as GDAL's trigger has it."""
    bounds = shapely.bounds(shapes)  # minx, miny, maxx, maxy; NaN for missing and empty
    present = np.flatnonzero(~np.isnan(bounds).any(axis=1))
    return present, bounds[present][:, [0, 2, 1, 3]]


def float32_outward(box: np.ndarray) -> np.ndarray:
    """Boxes as 32-bit floats that contain the 64-bit ones: minimums rounded down, maximums up (SQLite's
    rtreeValueDown / rtreeValueUp), so that no feature falls outside its own box."""
    rounded = box.astype(np.float32)
    low, high = rounded[:, [0, 2]], rounded[:, [1, 3]]
    low[:] = np.where(low > box[:, [0, 2]], np.nextafter(low, np.float32(-np.inf)), low)
    high[:] = np.where(high < box[:, [1, 3]], np.nextafter(high, np.float32(np.inf)), high)
    return np.column_stack([low[:, 0], high[:, 0], low[:, 1], high[:, 1]])


def _str_groups(box: np.ndarray, capacity: int) -> np.ndarray:
    """Sort-Tile-Recursive order of `box` (rows of minx, maxx, miny, maxy): vertical slices by the centres' x,
    each slice by y; consecutive runs of `capacity` rows are then nodes that cover compact areas."""
    count = len(box)
    nodes = -(-count // capacity)
    slices = int(np.ceil(np.sqrt(nodes)))
    per_slice = slices * capacity
    cx = box[:, 0] + box[:, 1]
    cy = box[:, 2] + box[:, 3]
    by_x = np.argsort(cx, kind="stable")
    slice_of = np.empty(count, dtype=np.int64)
    slice_of[by_x] = np.arange(count) // per_slice
    return np.lexsort((cy, slice_of))


def _packed_levels(ids: np.ndarray, box: np.ndarray, capacity: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The tree's levels from the leaves up, each as (cell ids, cell boxes, first cell of each node, with the
    end appended): a leaf's cells are features, an inner node's are the nodes of the level below."""
    levels = []
    while True:
        order = _str_groups(box, capacity)
        ids, box = ids[order], box[order]
        starts = np.arange(0, len(ids) + capacity, capacity)
        starts[-1] = len(ids)
        starts = np.unique(starts)
        levels.append((ids, box, starts))
        if len(starts) == 2:
            return levels
        first = starts[:-1]
        # each node's box: the union of its cells' boxes
        box = np.column_stack(
            [
                np.minimum.reduceat(box[:, 0], first),
                np.maximum.reduceat(box[:, 1], first),
                np.minimum.reduceat(box[:, 2], first),
                np.maximum.reduceat(box[:, 3], first),
            ]
        )
        ids = np.arange(len(first), dtype=np.int64)  # positions in this level, numbered once all are known


def _node_blobs(levels, node_size: int) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    """(the blob of every node by node number - 1, each feature's leaf, parent of each node but the root):
    the root is node 1, then the levels from the top down."""
    counts = [len(starts) - 1 for _, _, starts in levels]  # nodes per level, leaves first
    first_number = {}
    number = 1
    for level in reversed(range(len(levels))):
        first_number[level] = number
        number += counts[level]
    depth = len(levels) - 1
    blobs: list[bytes] = []
    parents = []
    leaf_of = None
    for level in reversed(range(len(levels))):
        ids, box, starts = levels[level]
        cells = np.empty(len(ids), dtype=CELL)
        cells["id"] = ids if level == 0 else ids + first_number[level - 1]
        cells["minx"], cells["maxx"], cells["miny"], cells["maxy"] = box[:, 0], box[:, 1], box[:, 2], box[:, 3]
        raw = cells.tobytes()
        for start, end in zip(starts[:-1], starts[1:], strict=True):
            header = (depth if level == depth else 0).to_bytes(2, "big") + int(end - start).to_bytes(2, "big")
            body = raw[start * CELL.itemsize : end * CELL.itemsize]
            blobs.append(header + body + bytes(node_size - 4 - len(body)))
        node_numbers = first_number[level] + np.repeat(np.arange(len(starts) - 1), np.diff(starts))
        if level == 0:
            leaf_of = (ids, node_numbers)
        else:
            parents.append((ids + first_number[level - 1], node_numbers))
    child, parent = (np.concatenate(p) for p in zip(*parents, strict=True)) if parents else (np.empty(0, np.int64),) * 2
    return blobs, leaf_of, child, parent


@contextlib.contextmanager
def spatial_index_beside(
    path: Path, table: str, geometry_column: str, fid_column: str, fids: np.ndarray, box: np.ndarray
):
    """Add the spatial index of `table` to the GeoPackage at `path` (written without one) from `fids` and their
    `box`es (see `boxes`). The tree is packed and written to a file beside `path` by a thread while the body of the
    `with` runs (meant for SQLite's own work on `path`, which releases the GIL: the B-tree indexes), then copied
    into `path` (SQLite copies the rows of a table into an empty one of the same shape page by page)."""
    name = f"rtree_{table}_{geometry_column}"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE VIRTUAL TABLE {quote(name)} USING rtree(id, minx, maxx, miny, maxy)")
        (node_size,) = db.execute(f"SELECT length(data) FROM {quote(name + '_node')} WHERE nodeno = 1").fetchone()
    db.close()
    beside = path.with_name(path.name + "-rtree")
    outcome: list[BaseException] = []
    worker = threading.Thread(
        target=_written_or_failed, args=(outcome, _write_tree, beside, node_size, fids, box), name="rtree", daemon=True
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


def _write_tree(beside: Path, node_size: int, fids: np.ndarray, box: np.ndarray) -> None:
    beside.unlink(missing_ok=True)
    with sqlite3.connect(beside) as db:
        db.execute("PRAGMA journal_mode = OFF")  # a scratch file
        db.execute("PRAGMA synchronous = OFF")
        # the shapes of rtree.c's shadow tables
        db.execute("CREATE TABLE node(nodeno INTEGER PRIMARY KEY, data)")
        db.execute("CREATE TABLE parent(nodeno INTEGER PRIMARY KEY, parentnode)")
        db.execute("CREATE TABLE rowid(rowid INTEGER PRIMARY KEY, nodeno)")
        if len(fids):
            capacity = min(RTREE_MAXCELLS, (node_size - 4) // CELL.itemsize)
            levels = _packed_levels(np.asarray(fids, dtype=np.int64), float32_outward(box), capacity)
            blobs, (leaf_ids, leaf_nodes), child, parent = _node_blobs(levels, node_size)
            db.executemany("INSERT INTO node (nodeno, data) VALUES (?, ?)", enumerate(blobs, start=1))
            db.executemany(
                "INSERT INTO parent (nodeno, parentnode) VALUES (?, ?)",
                zip(child.tolist(), parent.tolist(), strict=True),
            )
            order = np.argsort(leaf_ids, kind="stable")  # rowid order: SQLite appends instead of splitting pages
            db.executemany(
                "INSERT INTO rowid (rowid, nodeno) VALUES (?, ?)",
                zip(leaf_ids[order].tolist(), leaf_nodes[order].tolist(), strict=True),
            )
        else:
            db.execute("INSERT INTO node (nodeno, data) VALUES (1, zeroblob(?))", (node_size,))
    db.close()


def _copy_tree(path: Path, beside: Path, name: str, table: str, geometry_column: str, fid_column: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = OFF")  # a temporary file, fsynced before it is renamed
        db.execute("PRAGMA synchronous = OFF")
        db.execute("ATTACH DATABASE ? AS beside", (str(beside),))
        for part in ("node", "parent", "rowid"):
            db.execute(f"DELETE FROM main.{quote(f'{name}_{part}')}")
            db.execute(f"INSERT INTO main.{quote(f'{name}_{part}')} SELECT * FROM beside.{part}")
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


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
