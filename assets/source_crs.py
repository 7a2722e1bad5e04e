"""Which CRS a source file's coordinates are in: the catalog's, else the file's own, else EPSG:4326."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyproj

from assets.records import SourceError
from layers.catalog import City, SourceSpec

WGS84 = pyproj.CRS.from_epsg(4326)
# Formats whose files normally state their CRS: saying nothing is worth a warning there. A CSV,
# workbook or JSON feed cannot say, and GeoJSON without a `crs` member is CRS84 by RFC 7946.
STATING_FORMATS = ("shapefile", "geopackage")


@dataclass(frozen=True)
class UsedCrs:
    crs: pyproj.CRS
    label: str  # for metadata: "EPSG:2263 (from the file)", "msk38-3 (catalog)"
    warning: str | None = None


def describe(crs: pyproj.CRS) -> str:
    """A CRS as a person recognises it: its authority code, or its name and projection."""
    authority = crs.to_authority(min_confidence=70)
    if authority:
        return ":".join(authority)
    method = crs.coordinate_operation.method_name if crs.coordinate_operation else None
    return f"{crs.name!r}" + (f" ({method})" if method and crs.name.lower() == "unknown" else "")


def _same_coordinates(first: pyproj.CRS, second: pyproj.CRS, city: City) -> bool:
    """Whether both put the city's points at the same coordinates, up to a datum shift: a .prj
    cannot carry `towgs84`, so a local system declared by parameters in _city.yaml and the same
    system in a Shapefile's .prj are one CRS (the catalog's, with its shift, is the one used)."""
    if first.equals(second, ignore_axis_order=True):
        return True
    if first.is_geographic != second.is_geographic:
        return False
    west, south, east, north = city.extent
    lon = np.array([west, east, west, east, (west + east) / 2])
    lat = np.array([south, south, north, north, (south + north) / 2])
    try:
        # projection only, no datum transformation: Proj of the unbound CRSs
        here = pyproj.Proj(first.source_crs if first.is_bound else first)(lon, lat)
        there = pyproj.Proj(second.source_crs if second.is_bound else second)(lon, lat)
    except pyproj.exceptions.CRSError:
        return False
    return bool(np.allclose(here, there, rtol=0, atol=1e-3))


def source_crs(spec: SourceSpec, stated: str | None, city: City, label: str) -> UsedCrs:
    """The CRS to read `label`'s coordinates in, from the catalog's `crs` and the file's own
    (`stated`, WKT or None); the catalog wins, and a disagreement is a warning naming both."""
    found, unreadable = None, None
    if stated is not None:
        try:
            found = pyproj.CRS.from_user_input(stated)
        except pyproj.exceptions.CRSError:
            unreadable = f"the file's CRS cannot be read ({' '.join(stated.split())[:80]!r})"
            if spec.crs is None:
                raise SourceError(label, f"{unreadable}; name it in the catalog (crs:)") from None
    if spec.crs is not None:
        declared = city.resolve_crs(spec.crs)
        if unreadable:
            return UsedCrs(
                declared, f"{spec.crs} (catalog)", f"{label}: {unreadable}; read as {spec.crs} (the catalog's)"
            )
        if found is not None and not _same_coordinates(declared, found, city):
            warning = (
                f"{label}: the file says its CRS is {describe(found)}, the catalog says {spec.crs}; "
                f"read as {spec.crs} (the catalog wins)"
            )
            return UsedCrs(declared, f"{spec.crs} (catalog)", warning)
        return UsedCrs(declared, f"{spec.crs} (catalog)")
    if found is not None:
        return UsedCrs(found, f"{describe(found)} (from the file)")
    if spec.format in STATING_FORMATS:
        warning = f"{label}: the file states no CRS and the catalog names none; read as EPSG:4326"
        return UsedCrs(WGS84, "EPSG:4326 (default)", warning)
    return UsedCrs(WGS84, "EPSG:4326 (default)")
