"""The change log beside the published files: which features appeared, changed and ended at each publication."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd

from assets.publish import PublicationError
from layers.catalog import LayerSpec

CHANGES_FILE = "_changes.sqlite"
KINDS = ("appeared", "changed", "ended")
SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    layer TEXT NOT NULL, id TEXT NOT NULL, public_hash TEXT NOT NULL, full_hash TEXT NOT NULL,
    public_json TEXT NOT NULL, full_json TEXT NOT NULL, PRIMARY KEY (layer, id)
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, layer TEXT NOT NULL, id TEXT NOT NULL,
    kind TEXT NOT NULL, public INTEGER NOT NULL, public_json TEXT NOT NULL, full_json TEXT NOT NULL,
    run_id TEXT
);
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);
CREATE INDEX IF NOT EXISTS changes_layer_at ON changes (layer, at);
"""


@dataclass(frozen=True)
class Snapshot:
    """One feature as published: its stable id, the hashes of what the public sees and of everything."""

    id: str
    public_hash: str
    full_hash: str
    public: dict
    full: dict


@dataclass(frozen=True)
class Change:
    seq: int
    at: str  # UTC, `YYYY-MM-DDTHH:MM:SSZ`
    layer: str
    id: str
    kind: str
    public: bool  # whether the public sees this change (an internal-field edit is staff-only)
    properties: dict  # the feature's fields after the change (before it, for `ended`)
    run_id: str | None = None  # the Dagster run that published it


def _plain(value: object) -> object:
    """A cell as JSON: times as ISO text, missing values as null, numpy scalars as Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return _plain(value.item())
    return value


def _digest(properties: dict, geometry: bytes) -> str:
    text = json.dumps(properties, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.blake2b(text + b"\x00" + geometry, digest_size=16).hexdigest()


def public_fields(spec: LayerSpec) -> list[str]:
    """What a public reader sees of the layer: nothing of an internal layer, no internal-only field."""
    return [] if spec.access != "public" else [f.name for f in spec.fields if not f.internal]


def snapshots(frame: gpd.GeoDataFrame, spec: LayerSpec) -> dict[str, Snapshot]:
    """Each feature of a publication by its id field; the geometry counts for both hashes."""
    names = [f.name for f in spec.fields if f.name in frame.columns]
    shown = set(public_fields(spec))
    geometries = frame.geometry.to_wkb() if len(frame) else []
    found = {}
    for row, geometry in zip(frame[names].itertuples(index=False, name=None), geometries, strict=True):
        full = {name: _plain(value) for name, value in zip(names, row, strict=True)}
        public = {name: value for name, value in full.items() if name in shown}
        wkb = geometry or b""
        key = str(full[spec.id_field])
        found[key] = Snapshot(key, _digest(public, wkb), _digest(full, wkb), public, full)
    return found


def diff(before: dict[str, tuple[str, str, str, str]], after: dict[str, Snapshot]) -> list[tuple]:
    """(id, kind, public, public_json, full_json) of every feature that appeared, changed or ended.
    `before` maps id → (public_hash, full_hash, public_json, full_json) as last recorded."""
    found = []
    for key, now in after.items():
        old = before.get(key)
        if old is None:
            found.append((key, "appeared", True, now.public, now.full))
        elif old[1] != now.full_hash:
            found.append((key, "changed", old[0] != now.public_hash, now.public, now.full))
    for key in before.keys() - after.keys():
        found.append((key, "ended", True, json.loads(before[key][2]), json.loads(before[key][3])))
    return found


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # the server reads while a publication writes
    db.executescript(SCHEMA)
    return db


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_publication(
    path: Path, spec: LayerSpec, frame: gpd.GeoDataFrame, run_id: str | None = None, at: datetime | None = None
) -> dict[str, int]:
    """Compare the publication with the layer's last recorded state and log the differences, in one
    transaction: the state and its changes move together. Called after the GeoPackage was swapped in; if
    the process dies in between, the next publication's diff still holds every difference (dated later)."""
    now = stamp(at or datetime.now(UTC))
    after = snapshots(frame, spec)
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        before = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT id, public_hash, full_hash, public_json, full_json FROM state WHERE layer = ?", (spec.id,)
            )
        }
        found = diff(before, after)
        db.executemany(
            "INSERT INTO changes (at, layer, id, kind, public, public_json, full_json, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (now, spec.id, key, kind, int(public), _json(shown), _json(full), run_id)
                for key, kind, public, shown, full in found
            ],
        )
        changed = [key for key, kind, *_ in found if kind != "ended"]
        db.executemany(
            "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    spec.id,
                    key,
                    after[key].public_hash,
                    after[key].full_hash,
                    _json(after[key].public),
                    _json(after[key].full),
                )
                for key in changed
            ],
        )
        db.executemany(
            "DELETE FROM state WHERE layer = ? AND id = ?",
            [(spec.id, key) for key, kind, *_ in found if kind == "ended"],
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()
    return {kind: sum(1 for _, k, *_ in found if k == kind) for kind in KINDS}


def _json(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def read_changes(
    path: Path, layers: Iterable[str], since: str, public: bool, limit: int = 10_000, after_seq: int = 0
) -> list[Change]:
    """Changes of `layers` at or after `since` (UTC text as stored), oldest first; `public` leaves out the
    changes the public cannot see and gives only the public fields."""
    wanted = sorted(set(layers))
    if not path.exists() or not wanted:
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        marks = ",".join("?" * len(wanted))
        rows = db.execute(
            f"SELECT seq, at, layer, id, kind, public, public_json, full_json, run_id FROM changes "  # noqa: S608 - marks only
            f"WHERE layer IN ({marks}) AND at >= ? AND seq > ? {'AND public = 1' if public else ''} "
            "ORDER BY seq LIMIT ?",
            (*wanted, since, after_seq, limit),
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # a log created by no publication yet has no tables
    finally:
        db.close()
    return [
        Change(seq, at, layer, key, kind, bool(shown), json.loads(public_json if public else full_json), run_id)
        for seq, at, layer, key, kind, shown, public_json, full_json, run_id in rows
    ]


def record_changes(paths, spec: LayerSpec, frame: gpd.GeoDataFrame, run_id: str | None = None) -> dict[str, int]:
    """`record_publication` into the change log of `paths`, as materialization metadata (`appeared`, `changed`,
    `ended`); a log the file system or SQLite refuses is a PublicationError naming it."""
    target = paths.changes_path()
    try:
        return record_publication(target, spec, frame, run_id)
    except (OSError, sqlite3.Error) as error:
        raise PublicationError(target, error, "record the changes in") from None
