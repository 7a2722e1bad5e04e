"""A worker that serves features and tiles loads neither GDAL (pyogrio, rasterio, fiona), pandas (with pyarrow),
GeoPandas nor the ingest package: they cost ~170 MB resident per worker (issue 11: ≤ 300 MB per worker) and only the
feeds' readers, /affects, the raster and the PostGIS store's copying child need them, which import them when asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import morecantile
import pytest

from layers.settings import REPO_ROOT
from tests import pg
from tests.conftest import city_paths, path_environment
from tests.server_fixtures import start_server, stop_server

postgres_cluster, published_city_postgis = pg.postgres_cluster, pg.published_city_postgis
NOT_FOR_FEATURES_AND_TILES = ("assets", "geopandas", "pandas", "pyarrow", "pyogrio", "rasterio", "fiona", "osgeo")
GDAL_LIBRARIES = ("libgdal", "/pyogrio/", "/rasterio/", "/fiona/", "/osgeo/")
REPAIR = (104.2800, 52.2900)  # a place of the sample city with repairs
TILE = morecantile.tms.get("WebMercatorQuad").tile(*REPAIR, 14)
REQUESTS = [
    "/",
    "/collections",
    "/collections/repairs",
    "/collections/repairs/items?limit=10",
    "/collections/repairs/items?limit=10&bbox=104.27,52.28,104.29,52.30",
    "/collections/repairs/items?limit=10&datetime=2026-11-01T00:00:00Z/2026-11-30T00:00:00Z",
    "/collections/repairs/queryables",
    f"/tiles/{TILE.z}/{TILE.x}/{TILE.y}.pbf",
    f"/tiles/repairs/{TILE.z}/{TILE.x}/{TILE.y}.pbf",
    "/tiles/tilejson.json",
    "/styles/geoportal.json",
    "/map/config.json",
    "/openapi",
]


def layers_without_raster(published: Path, folder: Path):
    """The sample city's published layers without the raster product (whose collection rasterio describes)."""
    paths = city_paths(folder / "city")
    paths.published_dir.mkdir(parents=True)
    for layer in published.glob("*.gpkg"):
        shutil.copy(layer, paths.published_dir)
    return paths


def test_building_the_app_and_answering_imports_no_gdal_geopandas_or_ingest_code(published_city, tmp_path):
    paths = layers_without_raster(published_city.published_dir, tmp_path)
    script = f"""
import asyncio, json, sys
import httpx
from server.app import create_app

async def answer():
    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        for path in {REQUESTS!r}:
            response = await client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])

asyncio.run(answer())
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""
    env = {**os.environ, **path_environment(paths), "GEOPORTAL_SERVER_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("GEOPORTAL_STORE_URL", None)
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = set(json.loads(run.stdout.splitlines()[-1]))
    assert not loaded & set(NOT_FOR_FEATURES_AND_TILES), sorted(loaded & set(NOT_FOR_FEATURES_AND_TILES))


def gdal_mapped(pid: int) -> list[str]:
    """The GDAL libraries (and Python packages wrapping it) the process has mapped."""
    mapped = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return sorted(path for path in mapped if any(part in path for part in GDAL_LIBRARIES))


@pytest.mark.parametrize("store", ["geopackage", "postgis"])
def test_a_running_worker_serving_features_and_tiles_has_no_gdal_mapped(store, published_city, request, tmp_path):
    """The PostGIS store copies each layer version into its local GeoPackage with GDAL in a child process."""
    env = {}
    if store == "geopackage":
        paths = layers_without_raster(published_city.published_dir, tmp_path)
    else:
        _, env["GEOPORTAL_STORE_URL"] = request.getfixturevalue("published_city_postgis")
        paths = city_paths(tmp_path / "city")
        paths.published_dir.mkdir(parents=True)
    server = start_server(paths, tmp_path / "server.log", env)
    try:
        for path in REQUESTS:
            response = httpx.get(server.url + path, timeout=60)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
        if store == "postgis":  # the local copies were made, by the child
            assert (tmp_path / "cache" / "postgis" / "repairs.gpkg").exists()
        assert gdal_mapped(server.process.pid) == []
        # asked for them, the worker loads them: the feeds read the published files with pyogrio
        assert httpx.get(server.url + "/feeds/wzdx.geojson", timeout=60).status_code == 200
        assert gdal_mapped(server.process.pid) != []
    finally:
        stop_server(server)


def test_the_code_location_loads_without_matplotlib():
    """Every run's process imports the code location before it runs anything (Dagster's default launcher starts one
    per run), so what it imports delays every delivery reaching the map: matplotlib, which only the daily summary
    draws with, cost 0.7-1.3 s and 42 MB of each."""
    script = "import sys, pipelines.definitions; print('matplotlib' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"
