"""GeoPackage geometry blobs of many rows read at once, for tiles and their box index: what
server/published/gpkg.py's `to_shapely_many` does blob by blob in Python, done by C-level maps and numpy when the
blobs share one header (as a published layer's do), and by it otherwise."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence

import numpy as np
import shapely

from server.published.gpkg import GeometryBlobError, is_empty, to_shapely_many, wkb_offset

_WKB_POINT = np.array([1, 1, 0, 0, 0], dtype=np.uint8)  # little-endian, type 1 (2D Point)


def _common_header(blobs: Sequence[bytes | None]) -> int | None:
    """Where the WKB starts in every blob when all have one header (magic, version, flags) and none is NULL or
    empty; None otherwise."""
    if not blobs or None in blobs:
        return None
    heads = set(map(operator.getitem, blobs, itertools.repeat(slice(0, 4))))
    if len(heads) != 1 or len(blobs[0]) < 4 or is_empty(blobs[0]):  # type: ignore[arg-type]
        return None
    return wkb_offset(blobs[0])  # type: ignore[arg-type]


def shapely_geometries(blobs: Sequence[bytes | None]) -> np.ndarray:
    """Shapely geometries of the blobs, None where NULL or empty: `to_shapely_many`'s answer."""
    offset = _common_header(blobs)
    if offset is None:
        return to_shapely_many(blobs)
    wkbs = list(map(operator.getitem, blobs, itertools.repeat(slice(offset, None))))
    try:
        return shapely.from_wkb(np.array(wkbs, dtype=object))
    except shapely.errors.GEOSException as exc:
        raise GeometryBlobError(f"unreadable WKB after the GeoPackage header: {exc}") from None


def point_coordinates(blobs: Sequence[bytes | None]) -> np.ndarray | None:
    """Lon/lat (n x 2) of blobs that are all plain 2D little-endian points under one header, read from the bytes at
    once (the same doubles GEOS would read); None for anything else, which `shapely_geometries` then reads."""
    offset = _common_header(blobs)
    if offset is None or set(map(len, blobs)) != {offset + 21}:  # type: ignore[arg-type]
        return None
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), offset + 21)  # type: ignore[arg-type]
    if not (data[:, offset : offset + 5] == _WKB_POINT).all():
        return None
    xy = data[:, offset + 5 :].copy().view("<f8").astype(np.float64)
    return None if np.isnan(xy).any() else xy
