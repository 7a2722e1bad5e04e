"""Query parameters pygeoapi would crash on, checked at our edge first: each answer is a 400 naming the parameter."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

import pyproj

from server.errors import BadRequest

EPSG_URI = re.compile(r"^(?:https?://www\.opengis\.net/def/crs/EPSG/0/|EPSG:)(\d{4,6})$")
CRS84_URIS = {"http://www.opengis.net/def/crs/OGC/1.3/CRS84", "https://www.opengis.net/def/crs/OGC/1.3/CRS84"}


def bbox(text: str) -> tuple[float, ...]:
    """4 or 6 finite numbers, minimum before maximum on every axis."""
    parts = text.split(",")
    if len(parts) not in (4, 6):
        raise BadRequest("bbox: 4 numbers (minx,miny,maxx,maxy) or 6 (with z) are needed")
    try:
        numbers = tuple(float(part) for part in parts)
    except ValueError:
        raise BadRequest("bbox: every value must be a number") from None
    if not all(math.isfinite(n) for n in numbers):
        raise BadRequest("bbox: NaN and infinite values are not coordinates")
    half = len(numbers) // 2
    if any(numbers[i] > numbers[i + half] for i in range(half)):
        raise BadRequest("bbox: a minimum is greater than its maximum")
    return numbers


def sortby(text: str) -> list[str]:
    """`name`, `+name`, `-name`, comma-separated; names only, signs aside."""
    names = [part.strip().lstrip("+-").strip() for part in text.split(",")]
    if not names or not all(names):
        raise BadRequest("sortby: a comma-separated list of property names, each optionally signed + or -")
    return names


def coverage_epsg(text: str) -> int:
    """The coverage's `bbox-crs` as the EPSG code pygeoapi's rasterio provider takes; CRS84 is 4326."""
    if text in CRS84_URIS:
        return 4326
    match = EPSG_URI.match(text.strip())
    if match is None and text.strip().isdigit():
        code = int(text.strip())
    elif match is not None:
        code = int(match[1])
    else:
        raise BadRequest(f"bbox-crs: {text!r} is not an EPSG CRS URI")
    try:
        _to_lonlat(code)
    except pyproj.exceptions.CRSError:
        raise BadRequest(f"bbox-crs: EPSG:{code} is not a known CRS") from None
    return code


@lru_cache(maxsize=32)
def _to_lonlat(code: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(pyproj.CRS.from_epsg(code), "OGC:CRS84", always_xy=True)


def coverage_bbox(params: Mapping[str, str], extent: Sequence[float]) -> dict[str, str]:
    """The coverage request's bbox and bbox-crs, checked against the coverage's lon/lat `extent`; returns the
    parameters to hand pygeoapi (bbox-crs as an EPSG code). A bbox that misses the raster is a 400."""
    updates: dict[str, str] = {}
    crs = params.get("bbox-crs")
    code = coverage_epsg(crs) if crs is not None else 4326
    if crs is not None:
        updates["bbox-crs"] = str(code)
    if params.get("bbox") is None:
        return updates
    box = bbox(params["bbox"])
    minx, miny, maxx, maxy = (box[0], box[1], box[2], box[3]) if len(box) == 4 else (box[0], box[1], box[3], box[4])
    west, south, east, north = _to_lonlat(code).transform_bounds(minx, miny, maxx, maxy)
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise BadRequest("bbox: outside the domain of bbox-crs")
    # pygeoapi's rasterio provider reads every bbox x/y (lon/lat for 4326) and fails on one that only touches
    if not (west < extent[2] and east > extent[0] and south < extent[3] and north > extent[1]):
        raise BadRequest(f"bbox: does not overlap the coverage's extent {list(extent)}")
    return updates
