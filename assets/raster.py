"""The disruption-load raster: active repairs, closures and outages, weighted by severity, on a
Web Mercator grid over the city, written as a Cloud-Optimized GeoTIFF."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
from rasterio.features import MergeAlg, rasterize
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from layers.catalog import Catalog, LayerSpec

PRODUCT = "disruption_load"  # asset key, file stem and OGC collection id
GRID_CRS = "EPSG:3857"  # the web map's own grid: the overlay lands pixel for pixel
CELL_METRES = 50.0
NODATA = -1.0


@dataclass
class LoadGrid:
    values: np.ndarray  # float32, rows × cols
    transform: rasterio.Affine
    crs: str
    counted: dict[str, int]


def active_at(frame: gpd.GeoDataFrame, spec: LayerSpec, moment: dt.datetime) -> gpd.GeoDataFrame:
    """Features whose [start, end] contains `moment`; an open end means still going on."""
    start = pd.to_datetime(frame[spec.temporal.start], utc=True)
    end = (
        pd.to_datetime(frame[spec.temporal.end], utc=True)
        if spec.temporal.end
        else pd.Series(pd.NaT, index=frame.index)
    )
    stamp = pd.Timestamp(moment).tz_convert("UTC") if pd.Timestamp(moment).tzinfo else pd.Timestamp(moment, tz="UTC")
    return frame[(start <= stamp) & (end.isna() | (end >= stamp))]


def weights(frame: gpd.GeoDataFrame, spec: LayerSpec) -> np.ndarray:
    severity = spec.severity
    if severity.by is None:
        return np.full(len(frame), severity.default, dtype="float32")
    return frame[severity.by].map(severity.weights).fillna(severity.default).to_numpy(dtype="float32")


def disruption_grid(
    layers: dict[str, tuple[LayerSpec, gpd.GeoDataFrame]],
    extent: tuple[float, float, float, float],
    moment: dt.datetime,
    cell: float = CELL_METRES,
) -> LoadGrid:
    """Sum of severity weights of the features active at `moment`, each spread over its radius."""
    box = gpd.GeoSeries.from_xy([extent[0], extent[2]], [extent[1], extent[3]], crs="EPSG:4326").to_crs(GRID_CRS)
    west, south, east, north = box.total_bounds
    cols, rows = int(np.ceil((east - west) / cell)), int(np.ceil((north - south) / cell))
    transform = from_origin(west, north, cell, cell)
    values = np.zeros((rows, cols), dtype="float32")
    counted = {}
    for layer_id, (spec, frame) in layers.items():
        active = active_at(frame, spec, moment)
        counted[layer_id] = len(active)
        if active.empty:
            continue
        # metres of the grid CRS are stretched by 1/cos(lat) at Irkutsk; correct the radius for it
        stretch = 1 / np.cos(np.radians((extent[1] + extent[3]) / 2))
        shapes = active.to_crs(GRID_CRS).geometry.buffer(spec.severity.radius_m * stretch)
        values += rasterize(
            zip(shapes, weights(active, spec), strict=True),
            out_shape=values.shape,
            transform=transform,
            fill=0,
            merge_alg=MergeAlg.add,
            dtype="float32",
        )
    return LoadGrid(values, transform, GRID_CRS, counted)


def read_layers(catalog: Catalog, published: callable) -> dict[str, tuple[LayerSpec, gpd.GeoDataFrame]]:
    layers = {}
    for spec in catalog.values():
        if spec.severity and published(spec.id).exists():
            layers[spec.id] = (spec, pyogrio.read_dataframe(published(spec.id)))
    return layers


def write_cog(grid: LoadGrid, target: Path, moment: dt.datetime) -> Path:
    """COG with internal tiling and overviews, swapped in atomically like the GeoPackages."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.tif.part")
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "height": grid.values.shape[0],
        "width": grid.values.shape[1],
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": NODATA,
    }
    cog = cog_profiles.get("deflate")
    cog.update({"blockxsize": 256, "blockysize": 256, "predictor": 3})
    try:
        with MemoryFile() as memory:
            with memory.open(**profile) as dataset:
                dataset.write(grid.values, 1)
                dataset.update_tags(
                    moment=moment.isoformat(),
                    units="severity-weighted events",
                    **{f"count_{k}": str(v) for k, v in grid.counted.items()},
                )
                dataset.set_band_description(1, "disruption load")
            with memory.open() as dataset:
                cog_translate(
                    dataset,
                    str(temporary),
                    cog,
                    overview_level=3,
                    overview_resampling="average",
                    in_memory=True,
                    quiet=True,
                    use_cog_driver=False,
                )
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def is_valid_cog(path: Path) -> tuple[bool, list[str], list[str]]:
    return cog_validate(str(path), quiet=True)
