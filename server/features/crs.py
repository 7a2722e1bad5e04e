"""Coordinate systems around the provider: axis order of what pygeoapi hands us, output transforms,
and the city's local systems (МСК) made addressable by CRS URI."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pygeoapi.api as pygeoapi_api
import pygeoapi.api.itemtypes as pygeoapi_itemtypes
import pygeoapi.util as pygeoapi_util
import pyproj
import shapely

from server.errors import BadRequest

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
# A made-up authority for the city's local systems (see install_city_crs): OGC has no URI for them.
CITY_AUTHORITY = "CITY"
CITY_URI = "http://www.opengis.net/def/crs/" + CITY_AUTHORITY + "/0/{code}"


@lru_cache(maxsize=64)
def crs_from_uri(uri: str) -> pyproj.CRS:
    """pygeoapi's own resolution of CRS URIs (so both sides agree), cached: URIs repeat on every
    request. Plain references (`EPSG:4326`, as ECQL's BBOX carries them) go to pyproj directly."""
    if uri.startswith(("http://", "https://", "urn:")):
        return _resolve_with_city(uri)
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
        raise BadRequest(f"bbox needs 4 or 6 numbers, got {len(bbox)}")
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
        raise BadRequest(f"coordinates cannot be transformed to {target}: {exc}") from None


def lonlat_from(geometry: shapely.Geometry, crs_uri: str | None) -> shapely.Geometry:
    """A filter literal in lon/lat: geometries tagged with a CRS (pygeoapi tags them with the storage
    CRS after transforming) are transformed; untagged ones are in CRS84, the filter-crs default."""
    if crs_uri is None or crs_uri == CRS84:
        return geometry
    return transform_xy(np.array([geometry], dtype=object), crs_uri, CRS84)[0]


def city_crs_uri(code: str) -> str:
    return CITY_URI.format(code=code)


def install_city_crs(definitions: Mapping[str, str]) -> dict[str, str]:
    """Make local systems (`{"msk38-3": "+proj=tmerc ... +towgs84=..."}`) resolvable as
    `http://www.opengis.net/def/crs/CITY/0/<code>` wherever pygeoapi (and this provider) resolve CRS URIs;
    returns code -> URI.

    pygeoapi resolves URIs with pyproj.CRS.from_authority, which knows only PROJ's database. Registering
    an auxiliary database (PROJ_AUX_DB) would reach every PROJ in the process, and GDAL's and rasterio's
    PROJ builds refuse a database of pyproj's layout; so the resolver itself learns the city's systems."""
    for proj4 in definitions.values():
        pyproj.CRS.from_proj4(proj4)  # fail here, not on the first request
    _CITY_DEFINITIONS.update({code: " ".join(proj4.split()) for code, proj4 in definitions.items()})
    for module in _RESOLVING_MODULES:
        if getattr(module, "get_crs_from_uri", None) is not _resolve_with_city:
            module.get_crs_from_uri = _resolve_with_city
    crs_from_uri.cache_clear()
    lat_first.cache_clear()
    _transformer.cache_clear()
    return {code: city_crs_uri(code) for code in definitions}


_CITY_DEFINITIONS: dict[str, str] = {}
_PYGEOAPI_RESOLVE = pygeoapi_util.get_crs_from_uri


def _resolve_with_city(uri: str) -> pyproj.CRS:
    prefix = CITY_URI.format(code="")
    if uri.startswith(prefix) and uri[len(prefix) :] in _CITY_DEFINITIONS:
        return pyproj.CRS.from_proj4(_CITY_DEFINITIONS[uri[len(prefix) :]])
    return _PYGEOAPI_RESOLVE(uri)


# every module that imported pygeoapi's resolver by name resolves through the city-aware one
_RESOLVING_MODULES = [pygeoapi_util, pygeoapi_api, pygeoapi_itemtypes]
