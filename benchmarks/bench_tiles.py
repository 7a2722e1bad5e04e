"""Vector tiles of a 1M-point / 200k-line city: our z0–z14 pyramid against GDAL's PMTiles writer, and the full
server (`python -m server`, each store) against nginx serving the same tiles as static files, in one run.

    .venv/bin/python benchmarks/bench_tiles.py --serve-only --seconds 10   # serving only, both stores (~10 min)
    .venv/bin/python benchmarks/bench_tiles.py --serve-only --stores geopackage --workers 1
    .venv/bin/python benchmarks/bench_tiles.py --serve-only --stores geopackage --first-only   # `first` alone (~1 min)
    .venv/bin/python benchmarks/bench_tiles.py                       # plus the pyramids: ~40 min, GDAL most of it
    .venv/bin/python benchmarks/bench_tiles.py --no-serve            # pyramids only

Serving, per store (GeoPackage files; PostGIS on a throw-away cluster, tests/pg.py): the server is started on
the published layers with an empty cache folder; first = each z12–z14 tile over the data requested exactly once at
64 connections right away (rendered on demand while one worker pre-renders z0–z14 into the shared tile store);
once that is done the server is restarted on the same files and cache folder, and cold = each tile requested
exactly once again (no worker has served a tile; the bytes come from the shared store on disk); warm = wrk on
random tiles of the same list once every worker has them; then nginx on the same tiles' bytes as static files;
republished = the pipeline's writer republishes the repairs with one feature moved and re-classed (GeoPackage: the
served file replaced; PostGIS: a new version); the server keeps answering the previous version's tiles while one
worker carries the tiles the change cannot reach over (server/tiles/carry.py) and renders the changed ones, then
switches: each tile requested once meanwhile ("during"), the seconds from the publication's return until a tile's
ETag names the new version ("switch"), then each tile requested exactly once again, at the new version.
Cold, warm and nginx each wait first for a quiet machine (benchmarks/quiet.py): PostgreSQL vacuums and analyses a
freshly loaded store on its own, and that is not the server's cost. Also the resident memory of each worker. The
data are contract-shaped GeoPackages (docs/contracts.md) written once into `benchmarks/out/tiles/`: repair permits
clustered like a city (dense centres over a uniform background) and closure polylines of 2–8 vertices. Serving
needs Debian's nginx and wrk (installed when run as root with apt-get).
"""

from __future__ import annotations

import argparse
import asyncio
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

from quiet import drain  # noqa: E402 - a quiet machine before each measured load

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
    for extra in (f.name for f in catalog["repairs"].fields if f.name not in repairs):  # added later
        repairs[extra] = None
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
    for extra in (f.name for f in catalog["road_closures"].fields if f.name not in closures):  # added later
        closures[extra] = None
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


# ---------------------------------------------------------------------- serving through `python -m server`

WRK_SCRIPT = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init(args) math.randomseed(%d + (id or 0)) end
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK {\\"rps\\": %%.1f, \\"p50_ms\\": %%.2f, \\"p95_ms\\": %%.2f, \\"p99_ms\\": %%.2f, " ..
    "\\"errors\\": %%d, \\"timeouts\\": %%d, \\"requests\\": %%d}\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.status + e.connect + e.read + e.write + e.timeout, e.timeout, summary.requests))
end
"""
WARM_UP_ROUNDS = 6
TIMEOUT_S = 10  # a tile slower than this is a time-out, for wrk and for the cold pass alike
READY_SECONDS = 900  # a PostGIS server copies the layers into its local files before it answers


def wrk(url: str, paths_file: Path, seconds: int, connections: int) -> dict:
    script = paths_file.with_suffix(".lua")
    script.write_text(WRK_SCRIPT % (paths_file, SEED))
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", f"{TIMEOUT_S}s", "-s", str(script), url]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {run.stdout[-500:]} {run.stderr[-500:]}")
    return json.loads(line[4:])


async def _each_once(port: int, paths: list[str], connections: int) -> dict:
    """Every path requested exactly once, `connections` keep-alive connections pulling from one queue: what a
    freshly started (or freshly published) server answers while no tile of the list is cached yet. A plain
    HTTP/1.1 client on asyncio streams, so the client costs little next to the server on the same 2 cores."""
    pending = list(paths)
    latencies: list[float] = []
    failures: list[str] = []

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
            0,
        )
        await reader.readexactly(length)
        if status != 200:
            failures.append(f"{status} {path}")

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while pending:
                path = pending.pop()
                started = time.perf_counter()
                try:
                    await asyncio.wait_for(one(reader, writer, path), TIMEOUT_S)
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    failures.append(f"{type(exc).__name__} {path}")
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies) or [float("nan")]
    return {
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "errors": len(failures),
        "timeouts": sum(f.startswith("TimeoutError") for f in failures),
        "requests": len(latencies),
        "first_errors": failures[:3],
        "seconds": round(wall, 1),
    }


def each_once(port: int, paths: list[str], connections: int) -> dict:
    return asyncio.run(_each_once(port, paths, connections))


def _wait(port: int, path: str, seconds: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60).read()
            return
        except OSError:
            time.sleep(0.3)  # polling interval while the server starts
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}{path}")


def ensure_tools(install: bool) -> bool:
    missing = [name for name in ("nginx", "wrk") if not shutil.which(name) and not Path(f"/usr/sbin/{name}").exists()]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=quiet, check=False)
        missing = [name for name in missing if not shutil.which(name) and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        print(f"serving benchmark skipped: {missing} not installed")
    return not missing


def serve_paths(published: Path, zooms: range, limit: int) -> list[str]:
    """z12–z14 tiles over the data, in a fixed random order (at most `limit`)."""
    from server.tiles.vector import VectorTiles

    bounds = VectorTiles(load_catalog(), lambda layer: published / f"{layer}.gpkg").bounds()
    tiles = [f"/tiles/{t.z}/{t.x}/{t.y}.pbf" for t in TMS.tiles(*bounds, zooms=list(zooms))]
    np.random.default_rng(SEED).shuffle(tiles)
    return tiles[:limit]


def publish_to_postgis(published: Path, url: str) -> None:
    """The same layers published to PostGIS by the pipeline's own publisher."""
    import pyogrio

    from assets.stores.postgis import publish_postgis

    catalog = load_catalog()
    for layer in LAYERS:
        started = time.perf_counter()
        frame = pyogrio.read_dataframe(published / f"{layer}.gpkg", layer=layer, fid_as_index=True)
        frame["fid"] = frame.index.astype("int64")
        publish_postgis(frame.reset_index(drop=True), catalog[layer], url)
        print(f"  {layer}: {len(frame):,} features to PostGIS in {time.perf_counter() - started:.0f} s", flush=True)


def rss_of_workers(process: subprocess.Popen, workers: int) -> list[float]:
    """Resident MB of each process answering requests (uvicorn's workers, or the server itself with one)."""
    pids = [process.pid]
    if workers > 1:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if parent == process.pid and b"resource_tracker" not in cmdline:
                    pids.append(int(entry.name))
    sizes = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(round(int(line.split()[1]) / 1024, 1))
    return sizes


def start_server(
    store: str, published: Path, work: Path, workers: int, port: int, url: str | None, tile_cache_mb: int, fresh: bool
):
    """`fresh`: a new published folder and an empty cache folder; else the same files and cache as last time (a
    restarted server: its workers' memory is empty, the shared tile store on disk is not)."""
    folder = work / f"server-{store}"
    served = folder / "published"
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
        served.mkdir(parents=True)
        if store == "geopackage":
            for layer in LAYERS:
                shutil.copyfile(published / f"{layer}.gpkg", served / f"{layer}.gpkg")
    env = {
        **os.environ,
        "GEOPORTAL_PUBLISHED_DIR": str(served),
        "GEOPORTAL_SERVER_CACHE_DIR": str(folder / "cache"),
        "GEOPORTAL_SERVER_ACCESS_LOG": "false",
        # warm means every tile of the list cached: the default (32 MB per worker) holds a fraction of them at 1M
        "GEOPORTAL_SERVER_TILE_CACHE_MB": str(tile_cache_mb),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GEOPORTAL_STORE_URL", None)
    if url:
        env["GEOPORTAL_STORE_URL"] = url
    command = [sys.executable, "-m", "server", "--port", str(port), "--workers", str(workers)]
    log = open(folder / "server.log", "ab")  # noqa: SIM115 - the server writes to it until it stops
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def nginx_static(paths: list[str], port: int, work: Path, seconds: int, connections: int, workers: int) -> dict:
    """The same tiles' bytes (as our server sent them, uncompressed) as static files behind nginx."""
    import urllib.request

    static = work / "static"
    shutil.rmtree(static, ignore_errors=True)
    for path in paths:
        target = static / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60).read())
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers}; pid {work}/nginx.pid; error_log {work}/nginx.err warn; daemon off;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  server {{ listen 127.0.0.1:18081; root {static};
    location / {{ default_type application/vnd.mapbox-vector-tile; }} }} }}
""")
    (work / "tmp").mkdir(exist_ok=True)
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf)])
    try:
        _wait(18081, paths[0])
        return wrk("http://127.0.0.1:18081", work / "paths.txt", seconds, connections)
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def wait_prerendered(cache: Path, seconds: float) -> float | None:
    """Seconds until a worker has written the pre-rendered mark of the publication into the shared tile store
    (server/tiles/shared.py), None if it did not within `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if any((cache / "tiles").glob("*/*/prerendered-z*")):
            return round(time.monotonic() - started, 1)
        time.sleep(1)  # polling interval: pre-rendering takes minutes
    return None


def republish_one(store: str, published: Path, work: Path, url: str | None) -> float:
    """The repairs republished by the pipeline's writer with one feature (a fixed random one) moved ~100 m and given
    another network: a delivery that changes one permit. Returns the seconds the publication itself took."""
    import pyogrio
    import shapely

    from assets.publish import publish_geopackage
    from assets.stores.postgis import publish_postgis

    spec = load_catalog()["repairs"]
    frame = pyogrio.read_dataframe(published / "repairs.gpkg", layer="repairs", fid_as_index=True)
    frame["fid"] = frame.index.astype("int64")
    frame = frame.reset_index(drop=True)
    row = int(np.random.default_rng(SEED).integers(len(frame)))
    point = frame.geometry.iloc[row]
    frame.loc[row, "geometry"] = shapely.Point(point.x + 0.0014, point.y + 0.0009)
    frame.loc[row, "network"] = "gas" if frame.loc[row, "network"] != "gas" else "heat"
    started = time.perf_counter()
    if store == "geopackage":
        publish_geopackage(frame, spec, work / f"server-{store}" / "published" / "repairs.gpkg", to_store=False)
    else:
        publish_postgis(frame, spec, url)
    return round(time.perf_counter() - started, 1)


def etag(port: int, path: str) -> str:
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60).headers["ETag"]


def wait_switched(port: int, before: str, seconds: float) -> float | None:
    """Seconds until the combined z0 tile's ETag (it names every layer's version) is no longer `before` in 5
    answers in a row (any worker may answer), None if not within `seconds`."""
    started, row, first = time.monotonic(), 0, 0.0
    while time.monotonic() - started < seconds:
        asked = time.monotonic()
        row = row + 1 if etag(port, "/tiles/0/0/0.pbf") != before else 0
        first = asked if row == 1 else first
        if row == 5:
            return round(first - started, 1)
        time.sleep(0.05)  # polling interval: the switch takes seconds
    return None


def serve_store(store: str, published: Path, work: Path, args: argparse.Namespace, url: str | None) -> dict:
    """One store through the full server: first (each tile once, just started on a new publication: on demand
    while one worker pre-renders the shared store), cold (each tile once again, the server restarted once the store
    is built: its workers never served a tile), warm (wrk, random tiles) and nginx on the same tiles' bytes, in this
    order, one after the other."""
    paths = serve_paths(published, range(12, 15), args.tiles)
    (work / "paths.txt").write_text("\n".join(paths) + "\n")
    port = 18082
    started = time.perf_counter()
    server = start_server(store, published, work, args.workers, port, url, args.tile_cache_mb, fresh=True)
    result: dict = {"store": store, "workers": args.workers, "tiles": len(paths), "connections": args.connections}
    result["tile_cache_mb"] = args.tile_cache_mb
    try:
        _wait(port, "/tiles/0/0/0.pbf", READY_SECONDS)
        result["startup_s"] = round(time.perf_counter() - started, 1)
        result["first"] = each_once(port, paths, args.connections)
        print(f"  {store} first (on demand): {result['first']}", flush=True)
        result["prerender_s"] = wait_prerendered(work / f"server-{store}" / "cache", READY_SECONDS)
        result["prerender_s_after_start"] = round(time.perf_counter() - started - result["startup_s"], 1)
        print(f"  {store} shared tile store pre-rendered {result['prerender_s_after_start']} s after start", flush=True)
        if args.first_only:
            return result
        server.terminate()
        server.wait(timeout=60)
        server = start_server(store, published, work, args.workers, port, url, args.tile_cache_mb, fresh=False)
        _wait(port, "/tiles/0/0/0.pbf", READY_SECONDS)
        drain()  # PostgreSQL's autovacuum of the freshly loaded tables, if still at it, is not the server's cost
        result["cold"] = each_once(port, paths, args.connections)
        print(f"  {store} cold (restarted, store built): {result['cold']}", flush=True)
        for _ in range(WARM_UP_ROUNDS):  # until every worker has every tile: a round without slow answers
            if wrk(f"http://127.0.0.1:{port}", work / "paths.txt", args.seconds, args.connections)["p99_ms"] < 50:
                break
        drain()
        result["warm"] = wrk(f"http://127.0.0.1:{port}", work / "paths.txt", args.seconds, args.connections)
        print(f"  {store} warm: {result['warm']}", flush=True)
        result["rss_mb"] = rss_of_workers(server, args.workers)
        drain()
        result["nginx"] = nginx_static(paths, port, work, args.seconds, args.connections, args.workers)
        print(f"  nginx static: {result['nginx']}", flush=True)
        before = etag(port, "/tiles/0/0/0.pbf")
        result["republish_s"] = republish_one(store, published, work, url)
        returned = time.monotonic()
        result["republished_during"] = each_once(port, paths, args.connections)
        print(f"  {store} republished, while the switch is prepared: {result['republished_during']}", flush=True)
        waited = time.monotonic()
        switched = wait_switched(port, before, READY_SECONDS)
        result["switch_s"] = None if switched is None else round(waited - returned + switched, 1)
        print(f"  {store} tiles switched to the new version {result['switch_s']} s after the publication", flush=True)
        result["republished"] = each_once(port, paths, args.connections)
        print(f"  {store} republished (one feature changed), after the switch: {result['republished']}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    result["warm_rps_over_nginx"] = round(result["warm"]["rps"] / result["nginx"]["rps"], 3)
    return result


def serve_benchmark(published: Path, args: argparse.Namespace) -> list[dict]:
    """Each store in turn; the PostGIS cluster is started and loaded only when its turn comes, so no store is
    measured while the database digests the bulk load (autovacuum, analyze)."""
    work = OUT / "serve"
    work.mkdir(exist_ok=True)
    results = []
    for store in [s for s in args.stores.split(",") if s]:
        if store != "postgis":
            results.append(serve_store(store, published, work, args, None))
            continue
        from tests.pg import Cluster, missing_reason

        reason = missing_reason()
        if reason:
            print(f"PostGIS store skipped: {reason}")
            continue
        cluster = Cluster()
        try:
            cluster.start()
            url = cluster.create_database("bench_tiles")
            publish_to_postgis(published, url)
            results.append(serve_store(store, published, work, args, url))
        finally:
            cluster.stop()
    return results


def print_serving(results: list[dict], load: tuple[float, float]) -> None:
    print(f"\nTiles through `python -m server` (load average {load[0]:.2f} before, {load[1]:.2f} after):")
    print(f"{'store':12s} {'case':18s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s} {'timeouts':>9s}")
    for r in results:
        for case in [c for c in ("first", "cold", "warm", "nginx", "republished_during", "republished") if c in r]:
            c = r[case]
            print(
                f"{r['store']:12s} {case:18s} {c['rps']:9.1f} {c['p50_ms']:8.2f} {c['p99_ms']:8.2f} "
                f"{c['errors']:7d} {c['timeouts']:9d}"
            )
    results = [r for r in results if "warm" in r]  # --first-only: no more to say
    for r in results:
        print(f"{r['store']:12s} tiles switched to the republished version {r['switch_s']} s after it was published")
    print("Targets (issue 11):")
    for r in results:
        warm, cold = r["warm"], r["cold"]
        checks = [
            (f"warm ≥ 50% of nginx req/s ({r['warm_rps_over_nginx']:.0%})", r["warm_rps_over_nginx"] >= 0.5),
            (f"warm p99 ≤ 20 ms ({warm['p99_ms']:.1f} ms)", warm["p99_ms"] <= 20),
            (
                f"cold ≥ 500 req/s, no time-outs ({cold['rps']:.0f} req/s, {cold['timeouts']})",
                cold["rps"] >= 500 and not cold["timeouts"],
            ),
            (
                f"republished ≥ 500 req/s, no time-outs ({r['republished']['rps']:.0f} req/s, "
                f"{r['republished']['timeouts']})",
                r["republished"]["rps"] >= 500 and not r["republished"]["timeouts"],
            ),
            (
                f"tiles switched within the 30 s freshness bound ({r['switch_s']} s)",
                r["switch_s"] is not None and r["switch_s"] <= 30,
            ),
            (f"RSS ≤ 300 MB per worker ({', '.join(f'{v:.0f}' for v in r['rss_mb'])} MB)", max(r["rss_mb"]) <= 300),
        ]
        for what, met in checks:
            print(f"  {r['store']:12s} {what:60s} {'met' if met else 'NOT MET'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--max-zoom", type=int, default=14)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="render processes, server workers")
    parser.add_argument("--seconds", type=int, default=20, help="per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--stores", default="geopackage,postgis", help="served from: geopackage,postgis")
    parser.add_argument("--tiles", type=int, default=2000, help="z12-z14 tiles served (at most)")
    parser.add_argument("--serve-only", action="store_true", help="skip the pyramids (ours against GDAL)")
    parser.add_argument("--tile-cache-mb", type=int, default=512, help="the served tile cache per worker")
    parser.add_argument(
        "--first-only", action="store_true", help="serving: the first tiles after a start and the pre-rendering only"
    )
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    published = build_dataset(OUT, args.points, args.lines)
    print(f"data: {args.points} points, {args.lines} lines in {published} ({time.perf_counter() - started:.0f} s)")
    report: dict = {"points": args.points, "lines": args.lines, "max_zoom": args.max_zoom, "cpus": os.cpu_count()}
    if not args.serve_only:
        report["ours"] = our_pyramid(published, args.max_zoom, args.workers, OUT / "ours.pmtiles")
        print(f"ours: {report['ours']}")
        report["gdal"] = gdal_pyramid(published, args.max_zoom, OUT)
        print(f"GDAL: {report['gdal']}")
        report["pyramid_ratio_ours_over_gdal"] = round(report["ours"]["seconds"] / report["gdal"]["seconds"], 2)
        print(json.dumps({k: v for k, v in report.items() if "ratio" in k}))
    if not args.no_serve and ensure_tools(not args.no_install):
        before = os.getloadavg()[0]
        report["serve"] = serve_benchmark(published, args)
        report["load_average"] = [before, os.getloadavg()[0]]
        print_serving(report["serve"], tuple(report["load_average"]))
    (OUT.parent / "bench_tiles.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
