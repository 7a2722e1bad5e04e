"""The change log beside the published files: which features appeared, changed and ended at each publication."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from assets.publish import PublicationError
from layers.catalog import LayerSpec

KINDS = ("appeared", "changed", "ended")
BASELINE = "baseline"  # the first publication a log sees of a layer: its features are the starting state
SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (layer TEXT PRIMARY KEY, baseline_at TEXT NOT NULL, features INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (
    layer TEXT NOT NULL, id TEXT NOT NULL, public_hash TEXT NOT NULL, full_hash TEXT NOT NULL,
    PRIMARY KEY (layer, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, layer TEXT NOT NULL, id TEXT NOT NULL,
    kind TEXT NOT NULL, public INTEGER NOT NULL, properties TEXT NOT NULL, run_id TEXT
);
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);
CREATE INDEX IF NOT EXISTS changes_layer_at ON changes (layer, at);
"""


@dataclass(frozen=True)
class Change:
    seq: int
    at: str  # UTC, `YYYY-MM-DDTHH:MM:SSZ`
    layer: str
    id: str
    kind: str  # appeared | changed | ended | baseline
    public: bool  # whether the public sees this change (an internal-field edit is staff-only)
    properties: dict  # every field after the change (before it, for `ended`): readers keep what their level sees
    run_id: str | None = None  # the Dagster run that published it


def _plain(value: object) -> object:
    """A cell as JSON: times as ISO text, missing values as null, numpy scalars as Python ones."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return _plain(value.item())
    return value


def public_fields(spec: LayerSpec) -> list[str]:
    """What a public reader sees of the layer: nothing of an internal layer, no internal-only field."""
    return [] if spec.access != "public" else [f.name for f in spec.fields if not f.internal]


def _cells(series: pd.Series) -> list[str]:
    """A column as text per row (times as nanoseconds since the epoch: exact and fast); a missing value is NUL,
    unlike any text."""
    if pd.api.types.is_datetime64_any_dtype(series):
        text = np.asarray(series.values, dtype="datetime64[ns]").view("int64").astype(str)
    else:
        text = series.astype(str).to_numpy()
    return np.where(series.notna().to_numpy(), text, "\x00").tolist()


def _digests(columns: list[list[str]], geometry: list[str]) -> list[str]:
    return [
        hashlib.blake2b("\x1f".join(row).encode(), digest_size=16).hexdigest()
        for row in zip(*columns, geometry, strict=True)
    ]


def row_hashes(frame: gpd.GeoDataFrame, spec: LayerSpec) -> pd.DataFrame:
    """Per feature (indexed by its id as text, in frame order): the hash of what the public sees and of all its
    fields, the geometry in both. Column-wise: a million features take seconds, not minutes."""
    names = [f.name for f in spec.fields if f.name in frame.columns]
    shown = set(public_fields(spec))
    cells = {name: _cells(frame[name]) for name in names}
    geometry = [wkb or "" for wkb in frame.geometry.to_wkb(hex=True)] if len(frame) else []
    return pd.DataFrame(
        {
            "public_hash": _digests([cells[n] for n in names if n in shown], geometry),
            "full_hash": _digests([cells[n] for n in names], geometry),
            "position": range(len(frame)),
        },
        index=pd.Index(frame[spec.id_field].astype(str).to_numpy(), name="id"),
    )


def _properties(frame: pd.DataFrame, spec: LayerSpec, positions: Iterable[int]) -> list[str]:
    names = [f.name for f in spec.fields if f.name in frame.columns]
    rows = frame.iloc[list(positions)][names]
    return [
        json.dumps({n: _plain(v) for n, v in zip(names, row, strict=True)}, ensure_ascii=False, default=str)
        for row in rows.itertuples(index=False, name=None)
    ]


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab"):  # SQLite says only "unable to open database file"; the OS names its error
        pass
    db = sqlite3.connect(path, timeout=300, isolation_level=None)  # a big layer's publication holds the lock
    db.execute("PRAGMA journal_mode=WAL")  # the server reads while a publication writes
    db.executescript(SCHEMA)
    return db


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _previous_rows(previous: Path | None, spec: LayerSpec, ended: set[str]) -> pd.DataFrame | None:
    """The ended features as the file about to be replaced holds them (their last fields)."""
    if not ended or previous is None or not previous.exists():
        return None
    names = [f.name for f in spec.fields]
    try:
        frame = pyogrio.read_dataframe(previous, read_geometry=False)
    except (DataSourceError, DataLayerError):
        return None
    frame = frame[[n for n in names if n in frame.columns]]
    return frame[frame[spec.id_field].astype(str).isin(ended)].reset_index(drop=True)


def _record(db, spec, hashes: pd.DataFrame, frame, previous: Path | None, run_id, now: str) -> dict[str, int]:
    if db.execute("SELECT 1 FROM layers WHERE layer = ?", (spec.id,)).fetchone() is None:
        db.execute("INSERT INTO layers VALUES (?, ?, ?)", (spec.id, now, len(hashes)))
        db.execute(
            "INSERT INTO changes (at, layer, id, kind, public, properties, run_id) VALUES (?, ?, '', ?, 1, ?, ?)",
            (now, spec.id, BASELINE, json.dumps({"features": len(hashes)}), run_id),
        )
        db.executemany(
            "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
            zip([spec.id] * len(hashes), hashes.index, hashes.public_hash, hashes.full_hash, strict=True),
        )
        return {**dict.fromkeys(KINDS, 0), BASELINE: len(hashes)}
    before = pd.DataFrame(
        db.execute("SELECT id, public_hash, full_hash FROM state WHERE layer = ?", (spec.id,)).fetchall(),
        columns=["id", "public_hash", "full_hash"],
    ).set_index("id")
    now_ids, old_ids = hashes.index, before.index
    appeared = hashes[~now_ids.isin(old_ids)]
    common = hashes[now_ids.isin(old_ids)]
    old = before.loc[common.index]
    changed = common[common.full_hash.to_numpy() != old.full_hash.to_numpy()]
    public_changed = changed.public_hash.to_numpy() != before.loc[changed.index].public_hash.to_numpy()
    ended = set(old_ids[~old_ids.isin(now_ids)])
    rows = [
        (now, spec.id, key, "appeared", 1, text, run_id)
        for key, text in zip(appeared.index, _properties(frame, spec, appeared.position), strict=True)
    ]
    rows += [
        (now, spec.id, key, "changed", int(shown), text, run_id)
        for key, shown, text in zip(
            changed.index, public_changed, _properties(frame, spec, changed.position), strict=True
        )
    ]
    gone = _previous_rows(previous, spec, ended)
    known = (
        {}
        if gone is None
        else dict(zip(gone[spec.id_field].astype(str), _properties(gone, spec, range(len(gone))), strict=True))
    )
    rows += [
        (now, spec.id, key, "ended", 1, known.get(key, json.dumps({spec.id_field: key})), run_id)
        for key in sorted(ended)
    ]
    db.executemany(
        "INSERT INTO changes (at, layer, id, kind, public, properties, run_id) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
    )
    kept = pd.concat([appeared, changed])
    db.executemany(
        "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
        zip([spec.id] * len(kept), kept.index, kept.public_hash, kept.full_hash, strict=True),
    )
    db.executemany("DELETE FROM state WHERE layer = ? AND id = ?", [(spec.id, key) for key in ended])
    return {"appeared": len(appeared), "changed": len(changed), "ended": len(ended)}


@contextmanager
def recording_changes(
    path: Path,
    spec: LayerSpec,
    frame: gpd.GeoDataFrame,
    previous: Path | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
) -> Iterator[dict[str, int]]:
    """Log what the publication done inside the block changes, committed only if the block succeeds: the log
    moves with the GeoPackage (the file about to be replaced, `previous`, gives the ended features their
    fields). The first publication a log sees of a layer is its baseline: one `baseline` entry, no feature
    listed. Raises PublicationError naming the log when SQLite or the file system refuses it."""
    now = stamp(at or datetime.now(UTC))
    hashes = row_hashes(frame, spec)
    try:
        db = connect(path)
        db.execute("BEGIN IMMEDIATE")
        counts = _record(db, spec, hashes, frame, previous, run_id, now)
    except (OSError, sqlite3.Error) as error:
        raise PublicationError(path, error, "record the changes in") from None
    try:
        yield counts
        db.execute("COMMIT")
    except (OSError, sqlite3.Error) as error:
        raise PublicationError(path, error, "record the changes in") from None
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()


def record_publication(path: Path, spec: LayerSpec, frame: gpd.GeoDataFrame, **options) -> dict[str, int]:
    """`recording_changes` around nothing: the frame is already published (tests, replays)."""
    with recording_changes(path, spec, frame, **options) as counts:
        return counts


def read_changes(
    path: Path,
    layers: Iterable[str],
    since: str,
    public: bool,
    limit: int = 10_000,
    after_seq: int = 0,
    kinds: tuple[str, ...] = KINDS,
) -> list[Change]:
    """Changes of `layers` at or after `since` (UTC text as stored), oldest first; `public` leaves out the
    changes the public cannot see (the caller keeps only the fields its level sees)."""
    wanted = sorted(set(layers))
    if not path.exists() or not wanted:
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        layer_marks, kind_marks = ",".join("?" * len(wanted)), ",".join("?" * len(kinds))
        rows = db.execute(
            "SELECT seq, at, layer, id, kind, public, properties, run_id FROM changes "  # noqa: S608 - marks only
            f"WHERE layer IN ({layer_marks}) AND kind IN ({kind_marks}) AND at >= ? AND seq > ? "
            f"{'AND public = 1' if public else ''} ORDER BY seq LIMIT ?",
            (*wanted, *kinds, since, after_seq, limit),
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # a log created by no publication yet has no tables
    finally:
        db.close()
    return [
        Change(seq, at, layer, key, kind, bool(shown), json.loads(properties), run_id)
        for seq, at, layer, key, kind, shown, properties, run_id in rows
    ]
