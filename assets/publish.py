"""Write a layer's GeoPackage aside and swap it in with one rename; write its rejects beside."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from assets.arrow_stream import GEOMETRY, arrow_schema, record_batches
from assets.fids import stable_fid, stable_fids  # noqa: F401 - where callers have always found them
from assets.gpkg_rtree import SCRATCH_SUFFIX, spatial_index_beside
from assets.gpkg_writer import write_arrow_in_child
from assets.records import Reject
from layers.catalog import LayerSpec
from server.memory import release_free_memory
from server.published.sql import quote_identifier

# GeoPackage 1.2: QGIS 3.22 LTR ships GDAL 3.6, which warns on files newer than it knows.
GPKG_VERSION = "1.2"
# GDAL layer metadata (the GeoPackage metadata extension): what each source contributed, so that the
# next publication can tell a vanished source from a quiet one (checks.volume).
BY_SOURCE_KEY = "GEOPORTAL_PUBLISHED_BY_SOURCE"
# the files a temporary GeoPackage has beside it: SQLite's journals and the spatial index's scratch file
BESIDE = ("-journal", "-wal", "-shm", SCRATCH_SUFFIX)
# `.<stem>.<pid>-<hex>.part.gpkg`, or a file beside it; files of older releases had no pid
PART = re.compile(
    rf"^\.(?P<stem>.+?)\.(?:(?P<pid>\d+)-)?[0-9a-f]{{32}}\.part(?:\.gpkg)?(?:{'|'.join(map(re.escape, BESIDE))})?$"
)
# the GeoPackage's fid and geometry columns (docs/contracts.md)
FID_COLUMN, GEOMETRY_COLUMN = "fid", "geom"
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
REJECT_COLUMNS = ["source_file", "record", "field", "reason", "raw"]


class PublicationError(Exception):
    """The file system refused a publication: one line naming the file and the operating system's error.
    GDAL and SQLite say it in words of their own ("unable to open database file", "database or disk is
    full"): for those, the folder is probed for the operating system's error, which is named instead."""

    def __init__(self, path: Path, error: BaseException, doing: str = "publish"):
        cause = error if isinstance(error, OSError) else (_probe(path.parent) or error)
        super().__init__(f"cannot {doing} {path}: {describe(cause)}")
        self.path = path
        self.error = cause


@dataclass(frozen=True)
class Published:
    """What the published file of a layer holds: the previous publication, for the volume check."""

    features: int
    by_source: dict[str, int] | None  # None for a file published before per-source counts were kept


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"[Errno {error.errno}] {error.strerror}"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _temporary(target: Path, suffix: str) -> Path:
    # the pid tells a later clean-up whether the writer is still alive
    return target.with_name(f".{target.stem if suffix else target.name}.{os.getpid()}-{uuid.uuid4().hex}.part{suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(directory: Path, stem: str, started: float) -> list[Path]:
    """Remove the temporary files (and SQLite journals) a killed publication of `stem` left behind: only
    files named like ours, older than `started`, whose writing process is gone. Returns what went."""
    removed = []
    for path in directory.glob(f".{glob_escape(stem)}.*.part*"):
        match = PART.match(path.name)
        if not match or match["stem"] != stem:
            continue
        pid = int(match["pid"]) if match["pid"] else None
        if pid is not None and _alive(pid):
            continue  # still being written (this process removes its own files itself, in `finally`)
        try:
            if path.stat().st_mtime >= started:
                continue
            path.unlink()
        except OSError:
            continue  # a folder we cannot clean fails the publication itself, with that error named
        removed.append(path)
    return removed


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _probe(directory: Path) -> OSError | None:
    """The operating system's own error for writing in `directory` (GDAL and SQLite report a failed
    write in words of their own: "unable to open database file", "database or disk is full")."""
    probe = directory / f".probe.{os.getpid()}-{uuid.uuid4().hex}.part"
    try:
        with open(probe, "xb") as handle:
            for _ in range(16):  # a MiB: the write that failed may have freed a little on its way out
                handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        return error
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


@contextlib.contextmanager
def _os_errors(target: Path, doing: str = "publish") -> Iterator[None]:
    """Any failure of the file system while writing `target` → one PublicationError with the OS error."""
    try:
        yield
    except PublicationError:
        raise
    except (OSError, sqlite3.Error, DataSourceError, DataLayerError, RuntimeError) as error:
        raise PublicationError(target, error, doing) from error


def _discard(path: Path, error: BaseException | None) -> None:
    """Remove a temporary file without ever hiding the error that made it useless."""
    for leftover in (path, *(path.with_name(path.name + s) for s in BESIDE)):
        try:
            leftover.unlink(missing_ok=True)
        except OSError as cleanup:
            if error is not None:
                error.add_note(f"(the temporary file {leftover} could not be removed either: {describe(cleanup)})")


@contextlib.contextmanager
def _flushing(path: Path) -> Iterator[None]:
    """The rows written so far go to disk (fsync, in a thread) while the body works on the file: the fsync before
    the rename then has only the body's pages left (a million rows: ~1 s less at the end). Its error, if any, is
    raised: a failed write-back is reported once, and the later fsync might not hear of it."""
    failures: list[OSError] = []

    def flush() -> None:
        try:
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        except OSError as error:
            failures.append(error)

    flusher = threading.Thread(target=flush, name="flush", daemon=True)
    flusher.start()
    try:
        yield
    finally:
        flusher.join()
    if failures:
        raise failures[0]


def _replace_atomically(temporary: Path, target: Path) -> None:
    os.replace(temporary, target)
    # make the rename itself durable, not only the file's contents
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _written_aside(target: Path, doing: str, suffix: str = ".gpkg") -> Iterator[Path]:
    """A temporary path beside `target` to write; on success it is synced and renamed over `target`,
    on failure removed. Leftovers of killed writers go first; any file-system failure becomes one
    PublicationError, and the clean-up never replaces it."""
    started = time.time()
    with _os_errors(target, doing):
        target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(target.parent, target.stem if suffix else target.name, started)
    temporary = _temporary(target, suffix)
    failure: BaseException | None = None
    try:
        with _os_errors(target, doing):
            yield temporary
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            _replace_atomically(temporary, target)
    except BaseException as error:
        failure = error
        raise
    finally:
        _discard(temporary, failure)


def publish_geopackage(
    frame: gpd.GeoDataFrame,
    spec: LayerSpec,
    target: Path,
    by_source: dict[str, int] | None = None,
    to_store: bool = True,
) -> Path:
    """Publish `frame` (layer fields + geometry in EPSG:4326 + `fid`) as `target`. Readers that have
    the old file open keep reading it; a failure leaves the old file untouched and raises
    PublicationError naming `target` and the operating system's error. `to_store=False`: the file only
    (the server's local copy of a PostGIS layer)."""
    schema = arrow_schema(spec)
    options = {
        "layer": spec.id,
        "driver": "GPKG",
        "geometry_name": GEOMETRY,
        "geometry_type": spec.geometry_type,
        "crs": "EPSG:4326",
        "dataset_options": {"VERSION": GPKG_VERSION},
        "layer_options": {
            "FID": FID_COLUMN,
            "GEOMETRY_NAME": GEOMETRY_COLUMN,
            "SPATIAL_INDEX": "NO",  # written in bulk below, beside the B-tree indexes (assets.gpkg_rtree)
            "IDENTIFIER": spec.title.ru,
            "DESCRIPTION": f"{spec.description.ru}\n\n{spec.description.en}",
        },
        "layer_metadata": {BY_SOURCE_KEY: json.dumps(by_source or {}, ensure_ascii=False)},
    }
    with _written_aside(target, "publish") as temporary:
        # in batches and fid order (~10x faster than feature by feature), converted here while a child process
        # writes the previous batch (GDAL holds the GIL while it writes); GDAL wants the .gpkg suffix
        write_arrow_in_child(schema, record_batches(frame, spec, schema), temporary, options)
        release_free_memory()  # the Arrow batches' freed pages, before the spatial index adds its own
        shapes = frame.geometry.to_numpy()
        with (
            _flushing(temporary),
            spatial_index_beside(temporary, spec.id, GEOMETRY_COLUMN, FID_COLUMN, frame["fid"].to_numpy(), shapes),
        ):
            _index_query_fields(temporary, spec)  # SQLite's, without the GIL: the spatial index is packed meanwhile
        # PostGIS (GEOPORTAL_STORE_URL) before the rename: if the store refuses, neither copy changes
        from assets.stores import publish_to_store  # imports this module

        if to_store:
            publish_to_store(frame, spec, by_source)
    return target


def write_findings(frame: gpd.GeoDataFrame, target: Path, layer: str, title: str) -> Path:
    """A staff-only GeoPackage (topology findings), replaced like a published layer; an empty frame
    writes an empty layer, so a fixed zone set clears the old findings."""
    with _written_aside(target, "write") as temporary:
        pyogrio.write_dataframe(
            frame,
            temporary,
            layer=layer,
            driver="GPKG",
            geometry_type="MultiPolygon",
            use_arrow=True,
            dataset_options={"VERSION": GPKG_VERSION},
            layer_options={"GEOMETRY_NAME": "geom", "SPATIAL_INDEX": "YES", "IDENTIFIER": title},
        )
    return target


def published_state(target: Path, layer_id: str) -> Published | None:
    """The feature count and per-source counts of the published file; None when nothing is published.
    Read from the file itself, not from Dagster's records: the file is what the public sees, and it is
    the same whether the run came from the daemon, a test's `materialize` or a script."""
    if not target.exists():
        return None
    try:
        with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as db:
            features = db.execute(f"SELECT count(*) FROM {quote_identifier(layer_id)}").fetchone()[0]
        db.close()
        metadata = pyogrio.read_info(target, layer=layer_id).get("layer_metadata") or {}
    except (sqlite3.Error, DataSourceError, DataLayerError):
        return None  # an unreadable file is not served either: nothing to lose
    by_source = json.loads(metadata[BY_SOURCE_KEY]) if BY_SOURCE_KEY in metadata else None
    return Published(int(features), by_source)


def _index_query_fields(path: Path, spec: LayerSpec) -> None:
    """B-tree indexes on what the API filters by most: the id and the time window ("closed now",
    "outages this week" must not scan a million rows)."""
    fields = [spec.id_field, *([spec.temporal.start, spec.temporal.end] if spec.temporal else [])]
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = OFF")  # a temporary file, fsynced before the rename
        db.execute("PRAGMA synchronous = OFF")
        for name in dict.fromkeys(f for f in fields if f):
            index, table, column = (quote_identifier(n) for n in (f"idx_{spec.id}_{name}", spec.id, name))
            db.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({column})")
    db.close()


def neutralised(value: str) -> str:
    """A cell a spreadsheet would run as a formula, made plain text: a leading apostrophe, which Excel
    and LibreOffice hide (OWASP CSV injection). The value stays readable by a person."""
    return "'" + value if value.startswith(FORMULA_START) else value


def write_rejects(rejects: list[Reject], target: Path) -> Path:
    """UTF-8 with a BOM so that Excel, where these lists get read, shows the Cyrillic right; written
    aside and renamed like the GeoPackage, so staff never open half a list."""
    with (
        _written_aside(target, "write rejects", suffix="") as temporary,
        open(temporary, "w", encoding="utf-8-sig", newline="") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(REJECT_COLUMNS)
        writer.writerows([neutralised(str(v)) for v in r.as_row().values()] for r in rejects)
    return target
