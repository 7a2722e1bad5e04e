"""Vector tiles of a 1M-point / 200k-line city: our z0–z14 pyramid against GDAL's PMTiles writer, and our
tile server against nginx serving the same tiles as static files, in one run.

    .venv/bin/python benchmarks/bench_tiles.py                       # full scale: ~40 min on 2 cores, GDAL most of it
    .venv/bin/python benchmarks/bench_tiles.py --points 100000 --lines 20000 --max-zoom 12   # a quick look
    .venv/bin/python benchmarks/bench_tiles.py --no-serve            # pyramids only

The data are contract-shaped GeoPackages (docs/contracts.md) written once into `benchmarks/out/tiles/`:
repair permits clustered like a city (dense centres over a uniform background) and closure polylines of
2–8 vertices. Serving needs Debian's nginx and wrk (installed when run as root with apt-get).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from layers.catalog import load_catalog  # noqa: E402
from server.tiles.render import TMS  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "tiles"
SEED = 20261124
LAYERS = ("repairs", "road_closures")
NETWORKS = ["heat", "water", "sewer", "power", "gas", "telecom"]


# ---------------------------------------------------------------------- the data set


def _city_points(rng: np.random.Generator, n: int, extent: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """70% around 40 centres (300–1500 m spread), 30% uniform: a city is dense in places, not a grid."""
    west, south, east, north = extent
    centres = rng.uniform([west + 0.1, south + 0.05], [east - 0.1, north - 0.05], (40, 2))
    spread = rng.uniform(300, 1500, 40) / 111_000
    clustered = int(n * 0.7)
    which = rng.integers(0, 40, clustered)
    lon = np.concatenate(
        [centres[which, 0] + rng.normal(0, 1, clustered) * spread[which] / 0.61, rng.uniform(west, east, n - clustered)]
    )
    lat = np.concatenate(
        [centres[which, 1] + rng.normal(0, 1, clustered) * spread[which], rng.uniform(south, north, n - clustered)]
    )
    return np.clip(lon, west, east), np.clip(lat, south, north)


def build_dataset(folder: Path, points: int, lines: int) -> Path:
    import geopandas as gpd
    import pandas as pd
    import shapely

    from assets.publish import publish_geopackage, stable_fid

    published = folder / f"published_{points}_{lines}"
    if all((published / f"{layer}.gpkg").exists() for layer in LAYERS):
        return published
    published.mkdir(parents=True, exist_ok=True)
    catalog, rng = load_catalog(), np.random.default_rng(SEED)
    extent = tuple(catalog.city.extent)
    start = pd.Timestamp("2026-01-01T00:00:00Z") + pd.to_timedelta(rng.integers(0, 365 * 1440, points), unit="min")
    end = pd.Series(start + pd.to_timedelta(rng.integers(60, 30 * 1440, points), unit="min"))
    end[rng.random(points) < 0.2] = pd.NaT
    ids = [f"P-{i:07d}" for i in range(points)]
    repairs = gpd.GeoDataFrame(
        {
            "fid": [stable_fid("repairs", i) for i in ids],
            "permit_id": ids,
            "network": np.asarray(NETWORKS, dtype=object)[rng.integers(0, 6, points)],
            "work_kind": np.where(rng.random(points) < 0.3, "emergency", "planned"),
            "status": np.asarray(["issued", "active", "completed", "suspended"], dtype=object)[
                rng.integers(0, 4, points)
            ],
            "address": [f"ул. Ленина, {n}" for n in rng.integers(1, 300, points)],
            "contractor": 'ООО "ТеплоСтрой"',
            "start_time": start,
            "end_time": end,
            "contractor_phone": "+7 3952 000000",
            "notes": None,
        },
        geometry=shapely.points(*_city_points(rng, points, extent)),
        crs=4326,
    )
    publish_geopackage(repairs, catalog["repairs"], published / "repairs.gpkg")

    lon, lat = _city_points(rng, lines, extent)
    vertices = rng.integers(2, 9, lines)
    steps = rng.normal(0, 1, (int(vertices.sum()), 2)) * [0.0012, 0.0007]  # ~80 m per step
    walk = np.cumsum(steps, axis=0)
    walk -= np.repeat(walk[np.cumsum(vertices) - vertices], vertices, axis=0)  # every line starts at its origin
    coords = walk + np.repeat(np.column_stack([lon, lat]), vertices, axis=0)
    geometries = shapely.linestrings(coords, indices=np.repeat(np.arange(lines), vertices))
    ids = [f"C-{i:07d}" for i in range(lines)]
    closures = gpd.GeoDataFrame(
        {
            "fid": [stable_fid("road_closures", i) for i in ids],
            "closure_id": ids,
            "road_name": "ул. Карла Маркса",
            "closure_type": np.where(rng.random(lines) < 0.4, "full", "partial"),
            "reason": "Ремонт теплотрассы",
            "organizer": None,
            "start_time": start[:lines],
            "end_time": end[:lines].to_numpy(),
            "has_detour": rng.random(lines) < 0.5,
            "transit_changes": None,
            "feed": "municipal",
        },
        geometry=geometries,
        crs=4326,
    )
    publish_geopackage(closures, catalog["road_closures"], published / "road_closures.gpkg")
    return published


# ---------------------------------------------------------------------- pyramids


def _render_chunk(args: tuple[str, list[tuple[int, int, int]]]) -> tuple[list[tuple[int, int, int, bytes]], float]:
    """Worker: render tiles with a VectorTiles of its own (its own box index), return gzipped bodies."""
    import gzip

    published, chunk = args
    service = _worker_service(published)
    started = time.perf_counter()
    out = []
    for z, x, y in chunk:
        body = service.tile(z, x, y).body
        if body:
            out.append((z, x, y, gzip.compress(body, compresslevel=6, mtime=0)))
    return out, time.perf_counter() - started


_SERVICES: dict[str, object] = {}


def _worker_service(published: str):
    from server.tiles.vector import VectorTiles

    if published not in _SERVICES:
        folder = Path(published)
        _SERVICES[published] = VectorTiles(load_catalog(), lambda layer: folder / f"{layer}.gpkg", cache_bytes=0)
    return _SERVICES[published]


def tile_list(published: Path, max_zoom: int) -> list[tuple[int, int, int]]:
    from server.tiles.vector import VectorTiles

    bounds = VectorTiles(load_catalog(), lambda layer: published / f"{layer}.gpkg").bounds()
    return [(t.z, t.x, t.y) for t in TMS.tiles(*bounds, zooms=list(range(max_zoom + 1)))]


def write_pmtiles(path: Path, tiles: list[tuple[int, int, int, bytes]], bounds: tuple[float, ...]) -> None:
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    west, south, east, north = bounds
    with open(path, "wb") as handle:
        writer = Writer(handle)
        for z, x, y, body in sorted(tiles, key=lambda t: zxy_to_tileid(*t[:3])):
            writer.write_tile(zxy_to_tileid(z, x, y), body)
        writer.finalize(
            {
                "tile_type": TileType.MVT,
                "tile_compression": Compression.GZIP,
                "min_lon_e7": int(west * 1e7),
                "min_lat_e7": int(south * 1e7),
                "max_lon_e7": int(east * 1e7),
                "max_lat_e7": int(north * 1e7),
                "center_zoom": 10,
                "center_lon_e7": int((west + east) / 2 * 1e7),
                "center_lat_e7": int((south + north) / 2 * 1e7),
            },
            {"name": "geoportal", "vector_layers": []},
        )


def our_pyramid(published: Path, max_zoom: int, workers: int, target: Path) -> dict:
    """Every tile over the data, z0..max_zoom, both layers per tile, into one PMTiles archive."""
    import multiprocessing

    tiles = tile_list(published, max_zoom)
    # Interleave so each worker gets low and high zooms alike (low zooms cost the index build once each).
    chunks = [tiles[i :: workers * 8] for i in range(workers * 8)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_render_chunk, [(str(published), chunk) for chunk in chunks], chunksize=1)
    rendered = [tile for chunk, _ in results for tile in chunk]
    from server.tiles.vector import VectorTiles

    write_pmtiles(target, rendered, VectorTiles(load_catalog(), lambda layer: published / f"{layer}.gpkg").bounds())
    seconds = time.perf_counter() - started
    sizes = {}
    for z, _, _, body in rendered:
        sizes.setdefault(z, []).append(len(body))
    return {
        "seconds": round(seconds, 2),
        "tiles": len(rendered),
        "bytes": target.stat().st_size,
        "max_tile_gz_kb_by_zoom": {z: round(max(v) / 1024, 1) for z, v in sorted(sizes.items())},
        "workers": workers,
    }


def gdal_pyramid(published: Path, max_zoom: int, target_dir: Path) -> dict:
    """GDAL's PMTiles writer (pyogrio's GDAL), one archive per layer as it writes one layer per call."""
    import pyogrio

    catalog = load_catalog()
    result = {"gdal": pyogrio.__gdal_version_string__, "layers": {}}
    total = 0.0
    for layer in LAYERS:
        columns = [f.name for f in catalog[layer].public_fields]
        started = time.perf_counter()
        frame = pyogrio.read_dataframe(published / f"{layer}.gpkg", layer=layer, columns=columns)
        read = time.perf_counter() - started
        target = target_dir / f"{layer}.pmtiles"
        target.unlink(missing_ok=True)
        pyogrio.write_dataframe(
            frame, target, layer=layer, driver="PMTiles", dataset_options={"MINZOOM": 0, "MAXZOOM": max_zoom}
        )
        seconds = time.perf_counter() - started
        total += seconds
        result["layers"][layer] = {
            "read_s": round(read, 2),
            "seconds": round(seconds, 2),
            "bytes": target.stat().st_size,
        }
    result["seconds"] = round(total, 2)
    return result


# ---------------------------------------------------------------------- serving


def app_from_env():
    """The tile route as the server wires it (uvicorn --factory), reading BENCH_TILES_PUBLISHED."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response
    from starlette.routing import Route

    from server.tiles.vector import VectorTiles, accepts_gzip

    folder = Path(os.environ["BENCH_TILES_PUBLISHED"])
    tiles = VectorTiles(load_catalog(), lambda layer: folder / f"{layer}.gpkg", cache_bytes=2**30)
    if os.environ.get("BENCH_TILES_WARM"):  # pre-generation: every listed tile rendered into this worker's cache
        for line in Path(os.environ["BENCH_TILES_WARM"]).read_text().split():
            z, x, y = (int(part) for part in line.removesuffix(".pbf").strip("/").split("/"))
            tiles.tile(z, x, y)

    async def tile(request) -> Response:
        z, x, y = (request.path_params[k] for k in ("z", "x", "y"))
        packed = accepts_gzip(request.headers.get("accept-encoding"))
        # As server/tiles.py tells the server to wire it: hits on the event loop, misses in the threadpool.
        found = tiles.cached_tile(z, x, y, gzip=packed) or await run_in_threadpool(tiles.tile, z, x, y, gzip=packed)
        return Response(found.body, headers=found.headers)

    return Starlette(routes=[Route("/{z:int}/{x:int}/{y:int}.pbf", tile)])


def static_tree(archive: Path, target: Path, zooms: range) -> list[str]:
    """Our archive's tiles at `zooms`, uncompressed, as nginx would serve a pre-generated folder."""
    import gzip

    from pmtiles.reader import MmapSource, all_tiles

    shutil.rmtree(target, ignore_errors=True)
    paths = []
    with open(archive, "rb") as handle:
        for (z, x, y), body in all_tiles(MmapSource(handle)):
            if z in zooms:
                path = target / f"{z}/{x}/{y}.pbf"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(gzip.decompress(body))
                paths.append(f"/{z}/{x}/{y}.pbf")
    return paths


WRK_SCRIPT = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
math.randomseed(%d)
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
done = function(summary, latency, requests)
  io.write(string.format("WRK {\\"rps\\": %%.1f, \\"p50_ms\\": %%.2f, \\"p95_ms\\": %%.2f, \\"p99_ms\\": %%.2f, " ..
    "\\"errors\\": %%d, \\"requests\\": %%d}\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout, summary.requests))
end
"""


def wrk(url: str, paths_file: Path, seconds: int, connections: int) -> dict:
    script = paths_file.with_suffix(".lua")
    script.write_text(WRK_SCRIPT % (paths_file, SEED))
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {run.stdout[-500:]} {run.stderr[-500:]}")
    return json.loads(line[4:])


def _wait(port: int, path: str, seconds: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def ensure_tools(install: bool) -> bool:
    missing = [name for name in ("nginx", "wrk") if not shutil.which(name) and not Path(f"/usr/sbin/{name}").exists()]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=quiet, check=False)
        missing = [name for name in missing if not shutil.which(name) and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        print(f"serving benchmark skipped: {missing} not installed")
    return not missing


def serve_benchmark(published: Path, archive: Path, work: Path, seconds: int, connections: int, workers: int) -> dict:
    """wrk at `connections` connections on z12–z14 tiles: nginx on static files vs our server (cold, warm)."""
    paths = static_tree(archive, work / "static", range(12, 15))
    paths_file = work / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    results: dict = {"tiles": len(paths), "connections": connections, "seconds": seconds}
    nginx_conf = work / "nginx.conf"
    nginx_conf.write_text(f"""
worker_processes {workers}; pid {work}/nginx.pid; error_log {work}/nginx.err warn; daemon off;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  server {{ listen 127.0.0.1:18081; root {work}/static;
    location / {{ default_type application/vnd.mapbox-vector-tile; }} }} }}
""")
    (work / "tmp").mkdir(exist_ok=True)
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(nginx_conf)])
    try:
        _wait(18081, paths[0])
        results["nginx"] = wrk("http://127.0.0.1:18081", paths_file, seconds, connections)
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)
    for name, warm in (("ours_cold", False), ("ours_warm", True)):
        env = {
            **os.environ,
            "BENCH_TILES_PUBLISHED": str(published),
            "PYTHONPATH": f"{REPO}:{REPO / 'benchmarks'}",
            **({"BENCH_TILES_WARM": str(paths_file)} if warm else {}),
        }
        started = time.perf_counter()
        ours = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_tiles:app_from_env",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                "18082",
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=REPO / "benchmarks",
        )
        try:
            _wait(18082, "/0/0/0.pbf", seconds=1800)
            startup = time.perf_counter() - started
            results[name] = {
                **wrk("http://127.0.0.1:18082", paths_file, seconds, connections),
                "startup_s": round(startup, 1),
            }
        finally:
            ours.terminate()
            ours.wait(timeout=60)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--max-zoom", type=int, default=14)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=int, default=20, help="per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    published = build_dataset(OUT, args.points, args.lines)
    print(f"data: {args.points} points, {args.lines} lines in {published} ({time.perf_counter() - started:.0f} s)")
    report: dict = {"points": args.points, "lines": args.lines, "max_zoom": args.max_zoom, "cpus": os.cpu_count()}
    report["ours"] = our_pyramid(published, args.max_zoom, args.workers, OUT / "ours.pmtiles")
    print(f"ours: {report['ours']}")
    report["gdal"] = gdal_pyramid(published, args.max_zoom, OUT)
    print(f"GDAL: {report['gdal']}")
    report["pyramid_ratio_ours_over_gdal"] = round(report["ours"]["seconds"] / report["gdal"]["seconds"], 2)
    if not args.no_serve and args.max_zoom >= 14 and ensure_tools(not args.no_install):
        work = OUT / "serve"
        work.mkdir(exist_ok=True)
        report["serve"] = serve_benchmark(
            published, OUT / "ours.pmtiles", work, args.seconds, args.connections, args.workers
        )
        serve = report["serve"]
        for name in ("nginx", "ours_cold", "ours_warm"):
            print(f"{name:>10}: {serve[name]}")
        serve["warm_rps_ratio_ours_over_nginx"] = round(serve["ours_warm"]["rps"] / serve["nginx"]["rps"], 3)
        serve["warm_p95_ratio_ours_over_nginx"] = round(serve["ours_warm"]["p95_ms"] / serve["nginx"]["p95_ms"], 1)
    (OUT.parent / "bench_tiles.json").write_text(json.dumps(report, indent=2))
    print(
        json.dumps({k: v for k, v in report.items() if "ratio" in k}),
        json.dumps({k: v for k, v in report.get("serve", {}).items() if "ratio" in k}),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
