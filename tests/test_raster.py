"""The disruption-load raster: active features only, weighted by severity, a valid COG."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import pandas as pd
import rasterio
import shapely

from assets.raster import disruption_grid, is_valid_cog, write_cog
from layers.catalog import load_catalog

CATALOG = load_catalog()
NOW = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)


def closures(rows: list[tuple[str, str, str | None]]) -> gpd.GeoDataFrame:
    """(closure_type, start, end) along one street in central Irkutsk."""
    return gpd.GeoDataFrame(
        {
            "closure_type": [r[0] for r in rows],
            "start_time": pd.to_datetime([r[1] for r in rows], utc=True),
            "end_time": pd.to_datetime([r[2] for r in rows], utc=True),
        },
        geometry=[shapely.LineString([(104.28, 52.287), (104.285, 52.287)])] * len(rows),
        crs=4326,
    )


def test_only_active_features_count_with_their_weight():
    frame = closures(
        [("full", "2026-11-20", None), ("partial", "2026-11-20", "2026-11-30"), ("full", "2026-12-01", "2026-12-05")]
    )
    grid = disruption_grid({"road_closures": (CATALOG["road_closures"], frame)}, CATALOG.city.extent, NOW)
    assert grid.counted == {"road_closures": 2}
    assert grid.values.max() == 4 + 2  # full + partial overlap on the street, the future one is absent


def test_nothing_active_gives_an_empty_grid():
    frame = closures([("full", "2027-01-01", "2027-01-02")])
    grid = disruption_grid({"road_closures": (CATALOG["road_closures"], frame)}, CATALOG.city.extent, NOW)
    assert grid.values.max() == 0


def test_cog_is_tiled_with_overviews_and_valid(tmp_path):
    frame = closures([("full", "2026-11-20", None)])
    grid = disruption_grid({"road_closures": (CATALOG["road_closures"], frame)}, CATALOG.city.extent, NOW)
    path = write_cog(grid, tmp_path / "disruption_load.tif", NOW)
    valid, errors, _ = is_valid_cog(path)
    assert valid, errors
    with rasterio.open(path) as dataset:
        assert dataset.crs.to_epsg() == 3857
        assert dataset.overviews(1), "overviews present"
        assert dataset.profile["blockxsize"] == 256 and dataset.profile["tiled"]
        assert dataset.tags()["count_road_closures"] == "1"
        assert dataset.read(1).max() == 4
