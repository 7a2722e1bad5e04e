"""The disruption-load raster: active repairs, closures and outages, weighted by severity, on a Web Mercator
grid that covers only what is active (a memory cap coarsens it), written as a Cloud-Optimized GeoTIFF."""

from __future__ import annotations

import datetime as dt
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
from pydantic_settings import BaseSettings, SettingsConfigDict
from rasterio.features import MergeAlg, rasterize
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from layers.catalog import Catalog, LayerSpec
from layers.rasters import GRID_CRS, PRODUCT
from layers.timewindow import active_clauses, parse_datetime_parameter, stored_text, zone

__all__ = ["GRID_CRS", "PRODUCT", "RasterSettings", "disruption_grid", "read_active", "write_cog", "is_valid_cog"]
CELL_METRES = 50.0
# 4 M float32 cells are 16 MB (a city of 100 × 100 km at 50 m); beyond it the cells grow, never the memory
MAX_CELLS = 4_000_000
NODATA = -1.0


class RasterSettings(BaseSettings):
    """How fine the grid is and how big it may get (GEOPORTAL_RASTER_CELL_METRES, _MAX_CELLS)."""

    model_config = SettingsConfigDict(env_prefix="GEOPORTAL_RASTER_", frozen=True)

    cell_metres: float = CELL_METRES
    max_cells: int = MAX_CELLS


@dataclass(frozen=True)
class GridFrame:
    """Where the grid lies: origin, size and cell (Web Mercator metres)."""

    west: float
    north: float
    width: int
    height: int
    cell: float

    @property
    def transform(self) -> rasterio.Affine:
        return from_origin(self.west, self.north, self.cell, self.cell)

    @property
    def cells(self) -> int:
        return self.width * self.height


@dataclass
class LoadGrid:
    values: np.ndarray  # float32, rows × cols
    transform: rasterio.Affine
    crs: str
    counted: dict[str, int]
    cell: float  # metres of the grid CRS actually used
    requested_cell: float  # what the settings asked for; larger `cell` means the memory cap coarsened it

    @property
    def coarsened(self) -> bool:
        return self.cell > self.requested_cell

    @property
    def empty(self) -> bool:
        return not any(self.counted.values())

    def note(self, max_cells: int) -> str:
        """One line for the metadata: what the grid covers and why its cell is what it is."""
        if self.empty:
            return "nothing active: an empty 1-cell product"
        rows, cols = self.values.shape
        text = f"{cols} × {rows} cells of {self.cell:g} m over the active features"
        if self.coarsened:
            text += f"; cell grown from {self.requested_cell:g} m to {self.cell:g} m to stay within {max_cells:,} cells"
        return text


def weights(frame: gpd.GeoDataFrame, spec: LayerSpec) -> np.ndarray:
    severity = spec.severity
    if severity.by is None:
        return np.full(len(frame), severity.default, dtype="float32")
    return frame[severity.by].map(severity.weights).fillna(severity.default).to_numpy(dtype="float32")


def influence(active: gpd.GeoDataFrame, spec: LayerSpec) -> gpd.GeoSeries:
    """Each feature grown by its severity radius, in grid metres."""
    # Web Mercator metres are ground metres stretched by 1/cos(latitude): correct each feature's radius at
    # its own latitude (a province spans several degrees, a single city-wide factor would not do)
    lonlat = active.geometry.to_crs("EPSG:4326").bounds
    latitude = np.radians((lonlat["miny"] + lonlat["maxy"]).to_numpy() / 2)
    return active.geometry.to_crs(GRID_CRS).buffer(spec.severity.radius_m / np.cos(latitude))


def grid_frame(bounds: tuple[float, float, float, float], cell: float, max_cells: int) -> GridFrame:
    """The grid covering `bounds` with cells of `cell` metres, or of the smallest whole number of metres that
    keeps it within `max_cells`. Origins are multiples of the cell, so successive products line up."""
    west, south, east, north = bounds
    while True:
        left, top = math.floor(west / cell) * cell, math.ceil(north / cell) * cell
        width = max(1, math.ceil((east - left) / cell))
        height = max(1, math.ceil((top - south) / cell))
        if width * height <= max_cells:
            return GridFrame(left, top, width, height, cell)
        cell = float(math.ceil(cell * max(math.sqrt(width * height / max_cells), 1.01)))


def empty_frame(extent: tuple[float, float, float, float], cell: float) -> GridFrame:
    """One cell at the city's centre: a valid product that says "nothing active" without allocating the extent."""
    box = gpd.GeoSeries.from_xy([(extent[0] + extent[2]) / 2], [(extent[1] + extent[3]) / 2], crs="EPSG:4326")
    x, y = box.to_crs(GRID_CRS).iloc[0].coords[0]
    return GridFrame(math.floor(x / cell) * cell, math.ceil(y / cell) * cell, 1, 1, cell)


def disruption_grid(
    active_layers: dict[str, tuple[LayerSpec, gpd.GeoDataFrame]],
    extent: tuple[float, float, float, float],
    cell: float = CELL_METRES,
    max_cells: int = MAX_CELLS,
) -> LoadGrid:
    """Sum of severity weights of the active features (`read_active`), each spread over its radius, on a grid
    bounded by those features (the city `extent` only places the empty product)."""
    counted: dict[str, int] = {}
    shapes: list[gpd.GeoSeries] = []
    loads: list[np.ndarray] = []
    for layer_id, (spec, frame) in active_layers.items():
        active = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
        counted[layer_id] = len(active)
        if not active.empty:
            shapes.append(influence(active, spec))
            loads.append(weights(active, spec))
    if not shapes:
        frame = empty_frame(extent, cell)
        return LoadGrid(np.zeros((1, 1), dtype="float32"), frame.transform, GRID_CRS, counted, cell, cell)
    grown = pd.concat(shapes, ignore_index=True)
    frame = grid_frame(tuple(grown.total_bounds), cell, max_cells)
    values = np.zeros((frame.height, frame.width), dtype="float32")
    rasterize(
        zip(grown, np.concatenate(loads), strict=True),
        out=values,  # burnt into the one array: no second grid per layer
        transform=frame.transform,
        merge_alg=MergeAlg.add,
        # a coarsened cell can be wider than a feature's whole area: burn every cell it touches, or it vanishes
        all_touched=frame.cell > cell,
    )
    return LoadGrid(values, frame.transform, GRID_CRS, counted, frame.cell, cell)


def active_filter(spec: LayerSpec, moment: dt.datetime, timezone: str) -> str:
    """The features of `spec` active at `moment` as an SQL filter on its GeoPackage: the one definition of
    "active" (layers/timewindow.py) that the features API and the tiles use, so all three agree."""
    instant = parse_datetime_parameter(stored_text(moment), zone(timezone))  # a naive moment is UTC
    start = spec.field(spec.temporal.start)
    end = spec.field(spec.temporal.end) if spec.temporal.end else None
    first, last = instant.first_for((end or start).type == "date"), instant.last_for(start.type == "date")
    clauses = active_clauses(f'"{start.name}"', f'"{end.name}"' if end else None, first, last)
    # the values are stored-form dates and times (digits, '-', ':', 'T', '.', 'Z'): safe as SQL literals
    return " AND ".join(clause.replace("?", f"'{value}'") for clause, value in clauses)


def read_active(
    catalog: Catalog, published: Callable[[str], Path], moment: dt.datetime
) -> dict[str, tuple[LayerSpec, gpd.GeoDataFrame]]:
    """The features active at `moment` of each published layer that declares a severity: only those rows
    (filtered in SQLite) and only the columns the raster needs."""
    layers = {}
    for spec in catalog.values():
        if spec.severity and published(spec.id).exists():
            where = active_filter(spec, moment, catalog.city.timezone)
            columns = [spec.severity.by] if spec.severity.by else []
            layers[spec.id] = (spec, pyogrio.read_dataframe(published(spec.id), columns=columns, where=where))
    return layers


def write_cog(grid: LoadGrid, target: Path, moment: dt.datetime) -> Path:
    """COG with internal tiling (and overviews once it is bigger than a tile), swapped in atomically like the
    GeoPackages."""
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
                    cell_metres=f"{grid.cell:g}",
                    **{f"count_{k}": str(v) for k, v in grid.counted.items()},
                )
                dataset.set_band_description(1, "disruption load")
            with memory.open() as dataset:
                cog_translate(
                    dataset,
                    str(temporary),
                    cog,
                    overview_resampling="average",  # levels chosen by size: none below a tile
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
