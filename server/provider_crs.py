"""Coordinate systems around the provider: axis order of what pygeoapi hands us, output transforms,
and the city's local systems (МСК) made addressable by CRS URI."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyproj
import shapely
from pygeoapi.util import get_crs_from_uri

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
# pygeoapi resolves every CRS URI with pyproj.CRS.from_authority(<authority>, <code>) taken from the
# last path segments, so a local system needs an authority PROJ knows: we register ours in an
# auxiliary PROJ database (PROJ_AUX_DB) under this made-up authority.
CITY_AUTHORITY = "CITY"
CITY_URI = "http://www.opengis.net/def/crs/" + CITY_AUTHORITY + "/0/{code}"
AUX_DB_NAME = "city_crs.db"


@lru_cache(maxsize=64)
def crs_from_uri(uri: str) -> pyproj.CRS:
    """pygeoapi's own resolution of CRS URIs (so both sides agree), cached: URIs repeat on every
    request. Plain references (`EPSG:4326`, as ECQL's BBOX carries them) go to pyproj directly."""
    if uri.startswith(("http://", "https://", "urn:")):
        return get_crs_from_uri(uri)
    return pyproj.CRS.from_user_input(uri)


@lru_cache(maxsize=64)
def lat_first(uri: str) -> bool:
    """True when the CRS lists northing/latitude first (EPSG:4326 does, CRS84 does not)."""
    axes = crs_from_uri(uri).axis_info
    return bool(axes) and axes[0].direction.lower() in ("north", "south")


def bbox_to_lonlat(bbox: list[float], storage_crs: str) -> tuple[float, float, float, float]:
    """pygeoapi transforms `bbox` into the storage CRS in that CRS's axis order; our blobs are lon/lat."""
    if len(bbox) == 6:  # minx, miny, minz, maxx, maxy, maxz
        bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
    if len(bbox) != 4:
        raise ValueError(f"bbox needs 4 or 6 numbers, got {len(bbox)}")
    a, b, c, d = (float(v) for v in bbox)
    if lat_first(storage_crs):
        a, b, c, d = b, a, d, c
    return a, b, c, d


@lru_cache(maxsize=64)
def _transformer(source: str, target: str) -> pyproj.Transformer:
    # Resolved through the URI, never through the WKT pygeoapi puts in CrsTransformSpec: a WKT round
    # trip drops a bound CRS's +towgs84 and would shift МСК coordinates by ~100 m.
    return pyproj.Transformer.from_crs(crs_from_uri(source), crs_from_uri(target), always_xy=False)


def transform_xy(geometries: np.ndarray, source: str, target: str) -> np.ndarray:
    """All geometries of a page in one PROJ call; coordinates come out in the target's axis order."""
    if source == target:
        return geometries
    transformer = _transformer(source, target)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1], errcheck=True)
        return np.column_stack([x, y])

    try:
        return shapely.transform(geometries, project)
    except pyproj.exceptions.ProjError as exc:
        raise ValueError(f"coordinates cannot be transformed to {target}: {exc}") from None


def lonlat_from(geometry: shapely.Geometry, crs_uri: str | None) -> shapely.Geometry:
    """A filter literal in lon/lat: geometries tagged with a CRS (pygeoapi tags them with the storage
    CRS after transforming) are transformed; untagged ones are in CRS84, the filter-crs default."""
    if crs_uri is None or crs_uri == CRS84:
        return geometry
    return transform_xy(np.array([geometry], dtype=object), crs_uri, CRS84)[0]


def city_crs_uri(code: str) -> str:
    return CITY_URI.format(code=code)


def install_city_crs(definitions: Mapping[str, str], directory: Path) -> dict[str, str]:
    """Make local systems (`{"msk38-3": "+proj=tmerc ... +towgs84=..."}`) resolvable as
    `http://www.opengis.net/def/crs/CITY/0/<code>` by pyproj and so by pygeoapi; returns code -> URI.

    PROJ reads PROJ_AUX_DB when a thread first opens its database: call this at process start,
    before serving. The calling thread is refreshed here; threads started later see it anyway."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / AUX_DB_NAME
    partial = directory / f".{AUX_DB_NAME}.{uuid.uuid4().hex}"
    _write_aux_database(partial, definitions)
    os.replace(partial, target)
    existing = [p for p in os.environ.get("PROJ_AUX_DB", "").split(os.pathsep) if p and p != str(target)]
    os.environ["PROJ_AUX_DB"] = os.pathsep.join([str(target), *existing])
    pyproj.datadir.set_data_dir(pyproj.datadir.get_data_dir())  # reopen this thread's PROJ database
    crs_from_uri.cache_clear()
    lat_first.cache_clear()
    _transformer.cache_clear()
    return {code: city_crs_uri(code) for code in definitions}


def _write_aux_database(path: Path, definitions: Mapping[str, str]) -> None:
    # An auxiliary database must have proj.db's structure; copy it from the proj.db pyproj ships so
    # the layout version always matches the PROJ that reads it.
    proj_db = Path(pyproj.datadir.get_data_dir().split(os.pathsep)[0]) / "proj.db"
    source = sqlite3.connect(f"{proj_db.as_uri()}?mode=ro", uri=True)
    target = sqlite3.connect(path)
    try:
        schema = source.execute(
            "SELECT sql FROM sqlite_master WHERE type IN ('table', 'view') AND sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'view'"
        ).fetchall()
        for (statement,) in schema:
            target.execute(statement)
        target.executemany(
            "INSERT INTO metadata (key, value) VALUES (?, ?)",
            source.execute("SELECT key, value FROM metadata WHERE key LIKE 'DATABASE.LAYOUT.VERSION.%'"),
        )
        for code, proj4 in definitions.items():
            pyproj.CRS.from_proj4(proj4)  # fail here, not on the first request
            # text_definition keeps +towgs84: PROJ then transforms with exactly these parameters,
            # the same ones the pipeline used to bring source data into EPSG:4326.
            target.execute(
                "INSERT INTO projected_crs (auth_name, code, name, text_definition, deprecated) VALUES (?, ?, ?, ?, 0)",
                (CITY_AUTHORITY, code, code, " ".join(proj4.split()) + " +type=crs"),
            )
        target.commit()
    finally:
        source.close()
        target.close()
