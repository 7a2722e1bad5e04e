"""Write a layer's GeoPackage aside and swap it in with one rename; write its rejects beside."""

from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
import uuid
from pathlib import Path

import geopandas as gpd
import pyogrio

from assets.records import Reject
from layers.catalog import LayerSpec

# GeoPackage 1.2: QGIS 3.22 LTR ships GDAL 3.6, which warns on files newer than it knows.
GPKG_VERSION = "1.2"


def stable_fid(layer_id: str, record_id: object) -> int:
    """Feature id derived from the record's own id, so it survives re-publication and row order;
    48 bits stay exact in JavaScript numbers and in every client's int64."""
    digest = hashlib.blake2b(f"{layer_id}\x1f{record_id}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big") or 1


def _replace_atomically(temporary: Path, target: Path) -> None:
    os.replace(temporary, target)
    # make the rename itself durable, not only the file's contents
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def publish_geopackage(frame: gpd.GeoDataFrame, spec: LayerSpec, target: Path) -> Path:
    """Publish `frame` (layer fields + geometry in EPSG:4326 + `fid`) as `target`. Readers that have
    the old file open keep reading it; a failure leaves the old file untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.part.gpkg")  # GDAL wants .gpkg
    columns = ["fid", *(f.name for f in spec.fields), "geometry"]
    try:
        pyogrio.write_dataframe(
            frame[columns],
            temporary,
            layer=spec.id,
            driver="GPKG",
            geometry_type=spec.geometry_type,
            promote_to_multi=False,
            dataset_options={"VERSION": GPKG_VERSION},
            layer_options={
                "FID": "fid",
                "GEOMETRY_NAME": "geom",
                "SPATIAL_INDEX": "YES",
                "IDENTIFIER": spec.title.ru,
                "DESCRIPTION": f"{spec.description.ru}\n\n{spec.description.en}",
            },
        )
        _index_query_fields(temporary, spec)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        _replace_atomically(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _index_query_fields(path: Path, spec: LayerSpec) -> None:
    """B-tree indexes on what the API filters by most: the id and the time window ("closed now",
    "outages this week" must not scan a million rows)."""
    fields = [spec.id_field, *([spec.temporal.start, spec.temporal.end] if spec.temporal else [])]
    with sqlite3.connect(path) as db:
        for name in dict.fromkeys(f for f in fields if f):
            db.execute(
                f"CREATE INDEX IF NOT EXISTS {quote(f'idx_{spec.id}_{name}')} ON {quote(spec.id)} ({quote(name)})"
            )
    db.close()


def write_rejects(rejects: list[Reject], target: Path) -> Path:
    """UTF-8 with a BOM so that Excel, where these lists get read, shows the Cyrillic right."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    with open(temporary, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["source_file", "record", "field", "reason", "raw"])
        writer.writeheader()
        writer.writerows(r.as_row() for r in rejects)
    os.replace(temporary, target)
    return target
