"""The web map's server side: its configuration and style from the catalog, and the raster as an image."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Transformer

from layers.catalog import Catalog, LayerSpec
from layers.domains import DOMAINS
from layers.rasters import GRID_CRS, PRODUCT, RASTER_PRODUCTS
from server import access
from server.published.extents import read_extent
from server.styles.maplibre import legend, maplibre_style

DOMAIN_TITLES = {domain: declared["title"] for domain, declared in DOMAINS.items()}  # declared in layers/domains.py
RASTER = (PRODUCT, RASTER_PRODUCTS[PRODUCT]["title"])
# colour ramp of the disruption load: transparent at zero, yellow to red as weights add up
RAMP = np.array([[253, 230, 138], [251, 191, 36], [249, 115, 22], [220, 38, 38], [127, 29, 29]], dtype=float)


# Texts go out in both languages ({ru, en}); the page picks one from the browser's languages.
def _field_entries(spec: LayerSpec, staff: bool) -> list[dict[str, Any]]:
    return [
        {
            "name": f.name,
            "title": f.title.model_dump(),
            "type": f.type,
            **({"labels": {value: text.model_dump() for value, text in f.labels.items()}} if f.labels else {}),
        }
        for f in access.visible_fields(spec, access.level_of_staff(staff))
    ]


def _legend(spec: LayerSpec) -> list[dict[str, Any]]:
    """The style's legend entries with the catalog's labels of their values (none: the page shows the value)."""
    labels = spec.field(spec.style.by).labels if spec.style.by else {}
    return [
        {**entry, "label": labels[entry["value"]].model_dump() if entry.get("value") in labels else None}
        for entry in legend(spec)
    ]


def visible_layers(catalog: Catalog, staff: bool) -> list[LayerSpec]:
    return access.visible_layers(catalog, access.level_of_staff(staff))


def time_range(layers: list[LayerSpec], published) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    starts, ends = [now - dt.timedelta(days=30)], [now + dt.timedelta(days=30)]
    for spec in layers:
        path = published(spec.id)
        if spec.temporal and path.exists():
            extent = read_extent(path, spec)
            starts += [extent.begin] if extent.begin else []
            ends += [extent.end] if extent.end else []
    return min(starts), max(ends)


def city_bounds(catalog: Catalog, layers: list[LayerSpec], published) -> list[list[float]]:
    """Where the city's published features are (within its extent): the map opens on them, not on the whole
    extent allowed, where the city would be a speck on a phone. The extent itself until anything is published."""
    west, south, east, north = catalog.city.extent
    boxes = []
    for spec in layers:
        path = published(spec.id)
        bbox = read_extent(path, spec).bbox if path.exists() else None
        boxes += [bbox] if bbox else []
    if boxes:
        west, south = max(west, min(b[0] for b in boxes)), max(south, min(b[1] for b in boxes))
        east, north = min(east, max(b[2] for b in boxes)), min(north, max(b[3] for b in boxes))
    return [[west, south], [east, north]]


def map_config(catalog: Catalog, published, raster_path: Path, base_url: str, staff: bool) -> dict[str, Any]:
    layers = visible_layers(catalog, staff)
    begin, end = time_range(layers, published)
    first_zones = next((spec.id for spec in layers if spec.domain == "zones"), None)
    config: dict[str, Any] = {
        "title": catalog.city.name.model_dump(),
        "timezone": catalog.city.timezone,
        "bounds": city_bounds(catalog, layers, published),
        "style": f"{base_url}/map/style.json",
        "collections": f"{base_url}/collections",  # the page asks the features API where the events are
        "domains": [{"id": domain, "title": title} for domain, title in DOMAIN_TITLES.items()],
        "layers": [
            {
                "id": spec.id,
                "title": spec.title.model_dump(),
                "domain": spec.domain,
                "geometry": spec.geometry_type,
                "temporal": spec.temporal.model_dump() if spec.temporal else None,
                "fields": _field_entries(spec, staff),
                "legend": _legend(spec),
                # one zone set at a time reads well over the events; the others are a click away
                "visible": spec.domain not in ("reference", "zones") or spec.id == first_zones,
            }
            for spec in layers
            if published(spec.id).exists()
        ],
        "time": {"min": begin.isoformat(), "max": end.isoformat(), "now": dt.datetime.now(dt.UTC).isoformat()},
        "raster": None,
    }
    if raster_path.exists():
        import rasterio  # GDAL: only where a raster is published

        with rasterio.open(raster_path) as dataset:
            bounds = dataset.bounds
        # pyproj, not rasterio's PROJ: the server registers the city's CRSs in pyproj's database only
        to_lonlat = Transformer.from_crs(GRID_CRS, "EPSG:4326", always_xy=True)
        west, south, east, north = to_lonlat.transform_bounds(*bounds)
        config["raster"] = {
            "id": RASTER[0],
            "title": RASTER[1],
            "url": f"{base_url}/map/raster/{RASTER[0]}.png",
            "coordinates": [[west, north], [east, north], [east, south], [west, south]],
        }
    return config


def map_style(catalog: Catalog, base_url: str, staff: bool, basemap_url: str | None) -> dict[str, Any]:
    return maplibre_style(
        visible_layers(catalog, staff),
        tiles_url=f"{base_url}/tiles/{{z}}/{{x}}/{{y}}.pbf",
        name=catalog.city.name.ru,
        bounds=catalog.city.extent,
        basemap_url=basemap_url,
    )


def raster_png(path: Path) -> bytes:
    """The disruption load as an RGBA PNG on its own Web Mercator grid (the map drapes it by its corners)."""
    import rasterio
    from rasterio.io import MemoryFile

    with rasterio.open(path) as dataset:
        values = dataset.read(1).astype(float)
    top = max(float(values.max()), 1.0)
    scaled = np.clip(values / top, 0, 1) * (len(RAMP) - 1)
    low = np.floor(scaled).astype(int)
    high = np.minimum(low + 1, len(RAMP) - 1)
    share = (scaled - low)[..., None]
    rgb = RAMP[low] * (1 - share) + RAMP[high] * share
    alpha = np.where(values > 0, 90 + 165 * np.clip(values / top, 0, 1), 0)
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1).astype("uint8").transpose(2, 0, 1)
    with MemoryFile() as memory:
        with memory.open(driver="PNG", width=rgba.shape[2], height=rgba.shape[1], count=4, dtype="uint8") as image:
            image.write(rgba)
        return memory.read()
