"""The disruption-load raster: active features only, weighted by severity, on a grid bounded by what is
active (never by the city extent), a valid COG, and never held back by a failed layer."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import rasterio
import shapely

from assets.raster import PRODUCT, disruption_grid, is_valid_cog, read_active, write_cog
from layers.catalog import load_catalog
from layers.settings import REPO_ROOT, PathSettings
from pipelines.factory import layer_assets
from pipelines.jobs import ALL_LAYERS_JOB
from pipelines.raster import RASTER_JOB, disruption_load_asset, raster_definitions
from pipelines.resources import GeoportalResource

CATALOG = load_catalog()
NOW = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
PROVINCE = (96.0, 50.0, 120.0, 62.0)  # Irkutsk Oblast-sized: 12.7 billion cells of 50 m

WORKS_YAML = """
title: {ru: Работы, en: Works}
description: {ru: Тестовый слой, en: Test layer}
domain: repairs
geometry_type: Point
id_field: work_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: work_id, type: string, required: true, title: {ru: Номер, en: Number}}
  - {name: kind, type: string, allowed: [planned, emergency], title: {ru: Вид, en: Kind}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
sources:
  - path: {path}
    format: csv
    date_format: "%Y-%m-%d %H:%M"
    columns: {id: work_id, kind: kind, start: start_time, end: end_time}
    geometry: {wkt: wkt}
"""
SEVERITY = "severity: {by: kind, weights: {emergency: 3, planned: 1}, radius_m: 100}\n"
# two works active at NOW in central Irkutsk, one finished before it
WORKS_CSV = """id,kind,start,end,wkt
W-1,emergency,2026-11-20 08:00,2026-11-30 18:00,POINT (104.2806 52.287)
W-2,planned,2026-11-01 08:00,,POINT (104.30 52.29)
W-3,planned,2026-10-01 08:00,2026-10-05 18:00,POINT (104.25 52.25)
"""


def closures(types: list[str], line=((104.28, 52.287), (104.285, 52.287))) -> gpd.GeoDataFrame:
    """Active closures of these types along one street in central Irkutsk."""
    return gpd.GeoDataFrame({"closure_type": types}, geometry=[shapely.LineString(line)] * len(types), crs=4326)


def active(frame: gpd.GeoDataFrame) -> dict:
    return {"road_closures": (CATALOG["road_closures"], frame)}


def works_city(
    tmp_path: Path, extent=None, severity: bool = True, broken: bool = False, rows: str = WORKS_CSV
) -> PathSettings:
    """A catalog of its own: the city file (extent replaced if asked) and a `works` layer from a small CSV;
    `broken` adds a second severity layer whose source file is missing, so it fails."""
    catalog, sources = tmp_path / "layers", tmp_path / "sources"
    catalog.mkdir(parents=True)
    sources.mkdir()
    city = (REPO_ROOT / "layers" / "_city.yaml").read_text(encoding="utf-8")
    if extent is not None:
        city = re.sub(r"(?m)^extent: .*$", f"extent: {list(extent)}", city)
    (catalog / "_city.yaml").write_text(city, encoding="utf-8")
    layer = textwrap.dedent(WORKS_YAML) + (SEVERITY if severity else "")
    (catalog / "works.yaml").write_text(layer.replace("{path}", "works.csv"), encoding="utf-8")
    if broken:
        (catalog / "broken_works.yaml").write_text(layer.replace("{path}", "missing.csv"), encoding="utf-8")
    (sources / "works.csv").write_text(rows, encoding="utf-8")
    return PathSettings(
        root=tmp_path,
        catalog_dir=catalog,
        sample_dir=sources,
        live_dir=tmp_path / "live",
        published_dir=tmp_path / "published",
        rejects_dir=tmp_path / "rejects",
        inbox_dir=tmp_path / "inbox",
        archive_dir=tmp_path / "archive",
        quarantine_dir=tmp_path / "quarantine",
    )


def materialize(paths: PathSettings, selection: list[str], at: dt.datetime = NOW) -> dg.ExecuteInProcessResult:
    catalog = load_catalog(paths.catalog_dir)
    return dg.materialize(
        [*layer_assets(catalog), disruption_load_asset(catalog)],
        selection=selection,
        resources={"geoportal": GeoportalResource.of(paths)},
        run_config={"ops": {PRODUCT: {"config": {"at": at.isoformat()}}}} if PRODUCT in selection else None,
        raise_on_error=False,
    )


def raster_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = result.asset_materializations_for_node(PRODUCT)
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def test_only_active_features_count_with_their_weight(tmp_path):
    rows = WORKS_CSV + "\n".join(
        [
            "W-4,planned,2026-11-24 08:00,2026-11-25 08:00,POINT (104.2806 52.287)",  # around NOW (20:00 local)
            "W-5,emergency,2026-11-24 21:00,2026-11-25 18:00,POINT (104.2806 52.287)",  # starts an hour after NOW
            "W-6,emergency,2026-12-01 08:00,,POINT (104.2806 52.287)",  # open-ended, in the future
        ]
    )
    paths = works_city(tmp_path, rows=rows + "\n")
    assert materialize(paths, ["works"]).success
    layers = read_active(load_catalog(paths.catalog_dir), paths.published_path, NOW)
    assert sorted(layers["works"][1].kind) == ["emergency", "planned", "planned"]  # W-1, W-2, W-4
    grid = disruption_grid(layers, CATALOG.city.extent)
    assert grid.counted == {"works": 3}
    assert grid.values.max() == 3 + 1  # emergency W-1 and planned W-4 at the same place


def test_the_grid_covers_the_active_features_and_their_radius_not_the_city():
    grid = disruption_grid(active(closures(["full"])), CATALOG.city.extent)
    rows, cols = grid.values.shape
    # 340 m of street (557 m of Web Mercator at 52°N) and 60 m of radius (98 m) each side: 16 × 4 cells of 50 m,
    # one more each way where the edges fall between cells; the city would be 1,340 × 1,090
    assert cols <= 17 and rows <= 5, grid.values.shape
    assert (grid.values > 0).sum() >= 0.5 * rows * cols, "the grid is the street's surroundings"
    west, north = grid.transform.c, grid.transform.f
    assert west % 50 == 0 and north % 50 == 0, "origins on the cell grid: successive products line up"


def test_nothing_active_gives_a_one_cell_product_at_once(tmp_path):
    grid = disruption_grid(active(closures([])), PROVINCE)
    assert grid.values.shape == (1, 1) and grid.values.max() == 0 and grid.empty
    path = write_cog(grid, tmp_path / "disruption_load.tif", NOW)
    valid, errors, _ = is_valid_cog(path)
    assert valid, errors


def test_the_memory_cap_coarsens_the_cells_and_says_so():
    # active closures at two ends of the province: 1,300 km apart
    far = closures(["full"], line=((97.0, 51.0), (97.01, 51.0)))
    grid = disruption_grid(active(pd.concat([far, closures(["full"])])), PROVINCE, cell=50, max_cells=100_000)
    assert grid.values.size <= 100_000
    assert grid.coarsened and grid.cell > 50
    assert f"cell grown from 50 m to {grid.cell:g} m" in grid.note(100_000)
    assert grid.values.max() == 4, "both closures are still burnt in"


def test_cog_is_tiled_with_overviews_and_valid(tmp_path):
    # closures at opposite corners of the city: a grid of more than two tiles across gets overviews
    frame = pd.concat([closures(["full"]), closures(["full"], line=((104.0, 52.2), (104.005, 52.2)))])
    grid = disruption_grid(active(frame), CATALOG.city.extent)
    path = write_cog(grid, tmp_path / "disruption_load.tif", NOW)
    valid, errors, _ = is_valid_cog(path)
    assert valid, errors
    with rasterio.open(path) as dataset:
        assert dataset.crs.to_epsg() == 3857
        assert dataset.width > 512
        assert dataset.overviews(1), "overviews present"
        assert dataset.profile["blockxsize"] == 256 and dataset.profile["tiled"]
        assert dataset.tags()["count_road_closures"] == "2"
        assert dataset.tags()["cell_metres"] == "50"
        assert dataset.read(1).max() == 4


def test_a_province_sized_extent_allocates_only_what_is_active(tmp_path):
    paths = works_city(tmp_path, extent=PROVINCE)
    assert materialize(paths, ["works"]).success
    tracemalloc.start()
    try:
        result = materialize(paths, [PRODUCT])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.success
    meta = raster_metadata(result)
    # two works 1.5 km apart with 100 m of radius (165 m of Web Mercator): some 40 × 20 cells
    assert meta["width"] * meta["height"] < 2_000, meta["grid"]
    assert meta["active_features"] == {"works": 2} and meta["max_load"] == 3
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MB"
    with rasterio.open(paths.raster_path(PRODUCT)) as dataset:
        west, south, east, north = dataset.bounds
        assert east - west < 3_000 and north - south < 2_000


def test_nothing_active_over_a_province_is_an_empty_product_at_once(tmp_path):
    paths = works_city(tmp_path, extent=PROVINCE)
    assert materialize(paths, ["works"]).success
    result = materialize(paths, [PRODUCT], at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert result.success
    meta = raster_metadata(result)
    assert (meta["width"], meta["height"]) == (1, 1) and meta["grid"].startswith("nothing active")
    assert result.get_asset_check_evaluations()[0].passed, "still a valid COG"


def test_no_severity_no_raster_in_the_code_location(tmp_path):
    catalog = load_catalog(works_city(tmp_path, severity=False).catalog_dir)
    raster = raster_definitions(catalog)
    assert not raster.assets and not raster.jobs and not raster.sensors
    with_severity = load_catalog(works_city(tmp_path / "b").catalog_dir)
    assert [job.name for job in raster_definitions(with_severity).jobs] == [RASTER_JOB]


def test_all_layers_leaves_the_raster_to_its_own_job():
    from pipelines import defs

    layers = {key.to_user_string() for key in defs.resolve_job_def(ALL_LAYERS_JOB).asset_layer.selected_asset_keys}
    assert PRODUCT not in layers and {"repairs", "road_closures", "outages", "election_districts"} <= layers
    assert defs.resolve_job_def(RASTER_JOB).asset_layer.selected_asset_keys == {dg.AssetKey(PRODUCT)}
    assert set(defs.resolve_asset_graph().get(dg.AssetKey(PRODUCT)).parent_keys) == {
        dg.AssetKey(spec.id) for spec in CATALOG.values() if spec.severity
    }


def test_the_daemon_refreshes_the_raster_after_publications_even_with_a_failed_layer(tmp_path):
    paths = works_city(tmp_path, broken=True)
    catalog = load_catalog(paths.catalog_dir)
    defs = dg.Definitions.merge(
        dg.Definitions(assets=layer_assets(catalog), resources={"geoportal": GeoportalResource.of(paths)}),
        raster_definitions(catalog),
    )
    instance, raster = dg.DagsterInstance.ephemeral(), dg.AssetKey(PRODUCT)
    clock = dt.datetime.now(dt.UTC).replace(minute=1, second=0, microsecond=0)

    def tick(cursor, minutes: int):
        at = clock + dt.timedelta(minutes=minutes)
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=at)

    first = tick(None, 0)
    job = defs.resolve_implicit_global_asset_job_def()
    run = job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("works"), dg.AssetKey("broken_works")], raise_on_error=False
    )
    assert not run.success, "broken_works failed (its file is missing)"
    published = tick(first.cursor, 1)
    assert published.get_num_requested(raster) == 1, "works was published: the raster follows"
    quiet = tick(published.cursor, 2)
    assert quiet.get_num_requested(raster) == 0, "once per publication"
    later = tick(quiet.cursor, 10)
    assert later.get_num_requested(raster) == 1, "and every 10 minutes: events start and end with time"
    sensors = {s.name: s for s in defs.get_repository_def().sensor_defs}
    assert sensors[f"{PRODUCT}_automation"].default_status == dg.DefaultSensorStatus.RUNNING, "on under the daemon"


def test_python_m_pipelines_builds_the_raster_after_a_failed_layer(tmp_path):
    paths = works_city(tmp_path, broken=True)
    names = ["catalog_dir", "sample_dir", "live_dir", "published_dir", "rejects_dir", "inbox_dir"]
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # an ephemeral instance
    env.update({f"GEOPORTAL_{name.upper()}": str(getattr(paths, name)) for name in names})
    done = subprocess.run(
        [sys.executable, "-m", "pipelines"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stdout + done.stderr  # one layer failed
    assert "broken_works" in done.stdout and "missing.csv" in done.stdout, done.stdout
    assert f"Job {RASTER_JOB}: succeeded" in done.stdout, done.stdout
    with rasterio.open(paths.raster_path(PRODUCT)) as dataset:
        assert "count_works" in dataset.tags() and "count_broken_works" not in dataset.tags()


def automation_runs(home: Path) -> list:
    """Successful runs the raster's automation sensor started in the instance at `home`."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        tags = {"dagster/sensor_name": f"{PRODUCT}_automation"}
        return instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=[dg.DagsterRunStatus.SUCCESS]))


def test_under_the_daemon_a_publication_refreshes_the_raster(tmp_path):
    """The real `dagster-daemon run -m pipelines` (as `dev.py run` starts it) on a temporary instance: a layer
    published by a run it did not start is followed by a raster run of `disruption_load_automation`."""
    # active at the real "now" of the daemon's runs
    since, until = (dt.datetime.now() + dt.timedelta(days=d) for d in (-1, 30))
    rows = [f"W-{n},planned,{since:%Y-%m-%d %H:%M},{until:%Y-%m-%d %H:%M},POINT (104.2{n} 52.28)" for n in (1, 2)]
    header = WORKS_CSV.splitlines()[0]
    paths = works_city(tmp_path, rows="\n".join([header, rows[0]]) + "\n")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    names = ["catalog_dir", "sample_dir", "live_dir", "published_dir", "rejects_dir", "inbox_dir", "archive_dir"]
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.update({f"GEOPORTAL_{name.upper()}": str(getattr(paths, name)) for name in names + ["quarantine_dir"]})

    def pipelines(*job: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", *job],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def counted() -> str | None:
        with rasterio.open(paths.raster_path(PRODUCT)) as dataset:
            return dataset.tags().get("count_works")

    pipelines()
    assert counted() == "1"
    log = tmp_path / "daemon.log"
    with open(log, "wb") as handle:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "pipelines"],
            cwd=tmp_path,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # a publication before the sensor's first tick has no baseline to be "new" against (the 10-minute
        # refresh catches that case): publish once the daemon has evaluated the raster's condition
        deadline = time.monotonic() + 120
        while f"Finished auto-materialization tick for {PRODUCT}_automation" not in log.read_text(errors="replace"):
            assert daemon.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(1)  # polling interval, bounded by the deadline above
        (paths.sample_dir / "works.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        pipelines("repairs_job")  # publishes works with two active works; the raster is not part of this job
        deadline = time.monotonic() + 180
        while not (automation_runs(home) and counted() == "2"):
            assert daemon.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "no raster refresh within 180 s:\n" + log.read_text(errors="replace")
            time.sleep(1)  # polling interval, bounded by the deadline above
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
