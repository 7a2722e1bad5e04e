"""Our OGC API server (`python -m server`, both stores, 1 and 2 workers) against stock pygeoapi (its SQLiteGPKG
provider on the same GeoPackage, its PostgreSQL provider on the same PostGIS table) over HTTP, 1M features.

    .venv/bin/python benchmarks/bench_server.py [--features 1000000] [--seconds 10] [--stores geopackage,postgis]
                                                [--workers 1,2] [--stock sqlite,postgresql] [--no-install]

Every server runs on loopback without access logs and gets the same randomised requests from wrk (a Lua script
draws random bboxes and 7-day windows; Debian's `wrk`, installed with apt-get when run as root), case by case, all
servers in turn, so a busy moment on the shared machine hits each alike; each ratio is against stock with the same
number of workers in the same run. Cases: small bbox, 7-day datetime window and the first page of 1,000 at 8
connections; `items?limit=100` and `items?limit=1000` at 64 connections. The steady RSS of each of our worker
processes is read from /proc after the load, with its PSS/USS (which do not count shared libraries in full).
The PostGIS cases run on a throw-away cluster (tests/pg.py). The
stock SQLiteGPKG provider needs SQLite extension loading (SpatiaLite): it runs under Debian's python3 in the venv
bench_provider.py builds, which also gets SQLAlchemy, GeoAlchemy2 and psycopg2 for the PostgreSQL provider.
Results: a table with the issue's targets on stdout and benchmarks/out/bench_server.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import bench_provider  # the data set and the stock venv are shared with it
import httpx
import yaml
from quiet import DRAIN_BUSY_CORES, busy_cores, busy_jiffies, drain  # between two loads

REPO = bench_provider.REPO
sys.path.insert(0, str(REPO))
OUT = bench_provider.OUT / "bench_server"
EXTENT = bench_provider.EXTENT
READY_SECONDS = 900  # a PostGIS server copies 1M rows into its local file before it answers
IDLE_ROUNDS = 4  # of 2 s each
SETTLE_SECONDS = 300  # our servers pre-render the low zooms after start: the load waits until they are idle
SEED = 20261124
ITEMS = "/collections/repairs/items"
TIMEOUT_S = 10  # wrk counts a request slower than this as an error (time-out)


@dataclass(frozen=True)
class Case:
    name: str
    mode: str  # what the Lua script draws: bbox, week, or a fixed query
    query: str = ""
    connections: int = 8
    note: str = ""


CASES = [
    Case("small bbox (0.01°, limit 10)", "bbox"),
    Case("datetime 7-day window (limit 10)", "week", note="stock SQLiteGPKG ignores datetime"),
    Case("first page (limit 1000)", "fixed", "limit=1000", note="the same page: ours answers from its page cache"),
    Case("random page of 1000 (offset < 50k)", "offset", note="a new page each time: read, rendered, encoded"),
    Case("64 conns, limit 100", "fixed", "limit=100", connections=64, note="the same page (page cache)"),
    Case("64 conns, limit 1000", "fixed", "limit=1000", connections=64, note="the same page (page cache)"),
]

WRK_SCRIPT = """
local mode, query, seed = "%(mode)s", "%(query)s", %(seed)d
local west, south, east, north = %(west)f, %(south)f, %(east)f, %(north)f
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init(args) math.randomseed(seed + (id or 0)) end
request = function()
  local q = query
  if mode == "bbox" then
    local x, y = west + math.random() * (east - west - 0.01), south + math.random() * (north - south - 0.01)
    q = string.format("bbox=%%.5f,%%.5f,%%.5f,%%.5f&limit=10", x, y, x + 0.01, y + 0.01)
  elseif mode == "week" then
    local first = 1767225600 + math.random(0, 350 * 86400)  -- any second of 2026: never the same window twice
    q = "datetime=" .. os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", first) .. "/" ..
        os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", first + 7 * 86400) .. "&limit=10"
  elseif mode == "offset" then
    q = "limit=1000&offset=" .. math.random(0, 50000)  -- a page nobody asked before: not in the page cache
  end
  return wrk.format("GET", "%(path)s?" .. q)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK {\\"rps\\": %%.1f, \\"p50_ms\\": %%.2f, \\"p95_ms\\": %%.2f, \\"p99_ms\\": %%.2f, " ..
    "\\"max_ms\\": %%.1f, \\"errors\\": %%d, \\"non_2xx\\": %%d, \\"timeouts\\": %%d, \\"requests\\": %%d}\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, e.status + e.connect + e.read + e.write + e.timeout,
    e.status, e.timeout, summary.requests))
end
"""


@dataclass
class Server:
    name: str
    kind: str  # ours | stock
    store: str  # geopackage | postgis for ours; sqlite | postgresql for stock
    workers: int
    url: str
    process: subprocess.Popen
    log: Path
    results: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- tools and data


def ensure_wrk(install: bool) -> str:
    if not shutil.which("wrk") and install and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], env=quiet, check=False)
    if not shutil.which("wrk"):
        sys.exit("bench_server needs wrk (Debian: apt-get install wrk)")
    return shutil.which("wrk")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def private_copy(gpkg: Path, folder: Path) -> Path:
    """Each server reads its own copy: the stock provider writes into the file it serves (SpatiaLite adds
    its metadata tables), which our server would rightly take for a new publication and reload."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{bench_provider.TABLE}.gpkg"
    partial = folder / f".{bench_provider.TABLE}.gpkg.part"
    shutil.copyfile(gpkg, partial)
    os.replace(partial, target)
    return target


def publish_to_postgis(gpkg: Path, url: str) -> None:
    """The same features, ids and fields published to PostGIS by the pipeline's own publisher."""
    import pyogrio

    from assets.stores.postgis import publish_postgis
    from layers.catalog import load_catalog

    frame = pyogrio.read_dataframe(gpkg, layer=bench_provider.TABLE, fid_as_index=True)
    frame["fid"] = frame.index.astype("int64")
    frame = frame.reset_index(drop=True)
    started = time.perf_counter()
    publish_postgis(frame, load_catalog()[bench_provider.TABLE], url)
    print(f"  published {len(frame):,} features to PostGIS in {time.perf_counter() - started:.0f} s", flush=True)


# ---------------------------------------------------------------------- the servers


def stock_config(port: int, provider: dict) -> dict:
    text = {"title": "stock", "description": "stock pygeoapi", "keywords": ["bench"]}
    return {
        "server": {
            "bind": {"host": "127.0.0.1", "port": port},
            "url": f"http://127.0.0.1:{port}",
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "languages": ["en-US"],
            "limits": {"default_items": 10, "max_items": 10000},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OSM"},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {**text, "terms_of_service": "", "url": "http://localhost"},
            "license": {"name": "none", "url": "http://localhost"},
            "provider": {"name": "bench", "url": "http://localhost"},
            "contact": {"name": "bench"},
        },
        "resources": {
            bench_provider.TABLE: {
                "type": "collection",
                **text,
                "extents": {"spatial": {"bbox": list(EXTENT)}},
                "providers": [{"type": "feature", "id_field": "fid", "table": bench_provider.TABLE, **provider}],
            }
        },
    }


def stock_provider(store: str, gpkg: Path, folder: Path, pg: dict | None) -> dict:
    if store == "sqlite":
        return {"name": "SQLiteGPKG", "data": str(private_copy(gpkg, folder))}
    assert pg is not None
    data = {**pg, "search_path": ["geoportal", "public"]}
    return {"name": "PostgreSQL", "data": data, "geom_field": "geom", "time_field": "start_time"}


def ensure_stock_postgresql(python: Path) -> bool:
    probe = [python, "-c", "import sqlalchemy, geoalchemy2, psycopg2, pygeofilter.backends.sqlalchemy"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return True
    packages = ["SQLAlchemy>=2,<2.1", "GeoAlchemy2", "psycopg2-binary", "pygeofilter[backend-sqlalchemy]"]
    subprocess.run([python, "-m", "pip", "install", "--quiet", *packages], check=False)
    return subprocess.run(probe, capture_output=True).returncode == 0


def start_stock(python: Path, store: str, workers: int, provider: dict) -> Server:
    name = f"stock-{store}-w{workers}"
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run([python, "-c", "import uvicorn, starlette"], capture_output=True).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "uvicorn[standard]", "starlette"], check=True)
    port = free_port()
    config, openapi = folder / "config.yml", folder / "openapi.yml"
    config.write_text(yaml.safe_dump(stock_config(port, provider)))
    env = {**os.environ, "PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(openapi)}
    pygeoapi = python.parent / "pygeoapi"
    subprocess.run([pygeoapi, "openapi", "generate", config, "--output-file", openapi], check=True, env=env)
    command = [python, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--port", str(port), "--no-access-log"]
    command += ["--workers", str(workers)]
    log = folder / "server.log"
    process = subprocess.Popen(command, env=env, cwd=folder, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    return Server(name, "stock", store, workers, f"http://127.0.0.1:{port}", process, log)


def start_ours(store: str, workers: int, gpkg: Path, pg_url: str | None) -> Server:
    name = f"ours-{store}-w{workers}"
    folder = OUT / name
    published = folder / "published"
    shutil.rmtree(published, ignore_errors=True)
    if store == "geopackage":
        private_copy(gpkg, published)
    published.mkdir(parents=True, exist_ok=True)  # PostGIS: the server's folder holds no layer file
    port = free_port()
    env = {
        **os.environ,
        "GEOPORTAL_PUBLISHED_DIR": str(published),
        "GEOPORTAL_SERVER_CACHE_DIR": str(folder / "cache"),
        "GEOPORTAL_SERVER_DEFAULT_ITEMS": "10",  # as stock's default_items
        "GEOPORTAL_SERVER_ACCESS_LOG": "false",  # as stock's --no-access-log
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GEOPORTAL_STORE_URL", None)
    if store == "postgis":
        env["GEOPORTAL_STORE_URL"] = pg_url
    command = [sys.executable, "-m", "server", "--port", str(port), "--workers", str(workers)]
    log = folder / "server.log"
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    return Server(name, "ours", store, workers, f"http://127.0.0.1:{port}", process, log)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            sys.exit(f"{server.name} exited:\n{server.log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{server.url}{ITEMS}", params={"limit": 1}, timeout=30).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling interval while the server starts
    sys.exit(f"{server.name} not ready after {READY_SECONDS}s")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()


# ---------------------------------------------------------------------- processes: CPU and memory


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def worker_pids(server: Server) -> list[int]:
    """The processes that answer requests: the server itself with one worker, else uvicorn's worker children
    (not multiprocessing's resource tracker)."""
    if server.workers == 1:
        return [server.process.pid]
    pids = []
    for pid in _children(server.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmdline:
            pids.append(pid)
    return pids


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def shared_mb(pid: int) -> tuple[float, float] | None:
    """(PSS, USS) in MB: RSS counts every shared library page in full in each worker; PSS splits the shared pages
    among the processes mapping them, USS is what the worker alone holds (what one more worker costs)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    kb = {line.split()[0].rstrip(":"): int(line.split()[1]) for line in rollup[1:] if line.endswith("kB")}
    return kb["Pss"] / 1024, (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def settle(servers: list[Server]) -> None:
    """Wait until no server burns CPU (our servers pre-render the low zooms after start), so the load starts on
    idle servers; bounded by SETTLE_SECONDS. The machine must be quiet too: a PostGIS server's pre-rendering runs
    in PostgreSQL's backends (ST_AsMVT) while the server itself waits for them."""
    pids = [pid for server in servers for pid in [server.process.pid, *_children(server.process.pid)]]
    deadline = time.monotonic() + SETTLE_SECONDS
    idle = 0
    while time.monotonic() < deadline:
        before, machine = cpu_seconds(pids), busy_jiffies()
        time.sleep(2)  # the measuring interval of the CPU use
        quiet = cpu_seconds(pids) - before < 0.1 and busy_cores(machine, busy_jiffies()) < DRAIN_BUSY_CORES
        idle = idle + 1 if quiet else 0
        # idle for longer than the servers' pre-rendering period (server.app.REFRESH_SECONDS, 5 s): a server that
        # answered at once starts pre-rendering 5 s after its start, which would otherwise run into the load
        if idle >= IDLE_ROUNDS:
            return
    print(f"  servers still busy after {SETTLE_SECONDS} s; measuring anyway", flush=True)


# ---------------------------------------------------------------------- load


def wrk(wrk_path: str, url: str, case: Case, seconds: float, work: Path) -> dict:
    script = work / f"{case.mode}-{case.query.replace('=', '')}.lua"
    west, south, east, north = EXTENT
    values = {"mode": case.mode, "query": case.query, "seed": SEED, "path": ITEMS}
    script.write_text(WRK_SCRIPT % {**values, "west": west, "south": south, "east": east, "north": north})
    threads = 2 if case.connections >= 2 else 1
    command = [wrk_path, f"-t{threads}", f"-c{case.connections}", f"-d{int(seconds)}s", "--timeout", f"{TIMEOUT_S}s"]
    run = subprocess.run([*command, "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {run.stdout[-500:]} {run.stderr[-500:]}")
    return json.loads(line[4:])


def first_page_as_file(url: str, gpkg: Path) -> bool:
    """Whether our first page holds the file's first features in fid order (stock's has no defined order: its
    query has no ORDER BY, and at 1M SQLite walks an index instead of the table)."""
    import sqlite3

    with sqlite3.connect(f"file:{gpkg}?mode=ro", uri=True) as db:
        expected = [fid for (fid,) in db.execute(f"SELECT fid FROM {bench_provider.TABLE} ORDER BY fid LIMIT 10")]
    response = httpx.get(f"{url}{ITEMS}", params={"limit": 10}, timeout=60)
    return response.status_code == 200 and [f["id"] for f in response.json()["features"]] == expected


# ---------------------------------------------------------------------- report


def fmt(value: float | None, width: int = 8, digits: int = 1) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}s}"


def targets(ours: Server, stocks: list[Server]) -> list[tuple[str, str, bool | None]]:
    """The issue's targets for one of our servers: (what, figure, met)."""
    r = ours.results
    rows = []
    bbox = r.get(CASES[0].name)
    for stock in stocks:
        other = stock.results.get(CASES[0].name)
        if bbox and other and other["rps"]:
            ratio = bbox["rps"] / other["rps"]
            rows.append((f"small bbox req/s ≥ 50× {stock.name}", f"{ratio:.1f}×", ratio >= 50))
    if bbox:
        rows.append(("small bbox p95 ≤ 20 ms (8 conns)", f"{bbox['p95_ms']:.1f} ms", bbox["p95_ms"] <= 20))
    fresh = r.get(CASES[3].name)
    if fresh:
        rows.append(("(random page of 1000, not cached: for reference)", f"{fresh['rps']:.0f} req/s", None))
    page = r.get(CASES[2].name)
    if page:
        rows.append(("first page of 1000 ≥ 150 req/s", f"{page['rps']:.0f} req/s", page["rps"] >= 150))
    for case in CASES[4:]:
        got = r.get(case.name)
        if got:
            ok = got["errors"] == 0 and got["p99_ms"] <= 200
            figure = f"{got['errors']} errors, p99 {got['p99_ms']:.0f} ms, {got['rps']:.0f} req/s"
            rows.append((f"{case.name}: 0 errors, p99 ≤ 200 ms", figure, ok))
    if r.get("rss_mb"):
        worst = max(r["rss_mb"])
        rows.append(("steady RSS ≤ 300 MB per worker", " ".join(f"{v:.0f}" for v in r["rss_mb"]) + " MB", worst <= 300))
    if r.get("pss_mb"):
        figure = " ".join(f"{p:.0f}/{u:.0f}" for p, u in zip(r["pss_mb"], r["uss_mb"], strict=True)) + " MB"
        rows.append(("(PSS/USS per worker: shared pages split/left out)", figure, None))
    return rows


def print_report(servers: list[Server], args: argparse.Namespace, load: list[float]) -> dict:
    print(
        f"\n{args.features:,} features; {args.seconds:.0f} s per case and server; wrk; "
        f"load average before/after {load[0]:.2f}/{load[1]:.2f} on {os.cpu_count()} cores"
    )
    names = [s.name for s in servers]
    print(f"{'case':34s} {'':8s}" + "".join(f"{n:>22s}" for n in names))
    for case in CASES:
        for metric, label in (("rps", "req/s"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("errors", "errors")):
            cells = "".join(fmt(s.results.get(case.name, {}).get(metric), 22) for s in servers)
            print(f"{case.name if metric == 'rps' else '':34s} {label:8s}{cells}")
        if case.note:
            print(f"{'':34s} ({case.note})")
    report = {"features": args.features, "seconds": args.seconds, "load_average": load, "servers": {}}
    for server in servers:
        report["servers"][server.name] = {
            "kind": server.kind,
            "store": server.store,
            "workers": server.workers,
            **server.results,
        }
    print("\nTargets (issue 11), each against stock with the same number of workers in this run:")
    for ours in (s for s in servers if s.kind == "ours"):
        stocks = [s for s in servers if s.kind == "stock" and s.workers == ours.workers]
        rows = targets(ours, stocks)
        report["servers"][ours.name]["targets"] = [{"target": t, "figure": f, "met": m} for t, f, m in rows]
        print(f"  {ours.name}")
        for what, figure, met in rows:
            print(f"    {what:50s} {figure:>28s}  {'' if met is None else 'met' if met else 'NOT MET'}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10, help="load per case and server")
    parser.add_argument("--stores", default="geopackage,postgis", help="our stores: geopackage,postgis")
    parser.add_argument("--workers", default="1,2", help="worker counts, each for ours and stock")
    parser.add_argument("--stock", default="sqlite,postgresql", help="stock providers: sqlite,postgresql (or none)")
    parser.add_argument("--cases", default="", help="comma-separated case numbers (1-6) to run; all by default")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    stock_stores = [s for s in args.stock.split(",") if s and s != "none"]
    worker_counts = [int(w) for w in args.workers.split(",")]
    cases = [CASES[int(n) - 1] for n in args.cases.split(",") if n] or CASES

    wrk_path = ensure_wrk(not args.no_install)
    OUT.mkdir(parents=True, exist_ok=True)
    gpkg = OUT / f"{bench_provider.TABLE}_{args.features}.gpkg"
    if not gpkg.exists():
        print(f"building {gpkg} ({args.features:,} points) ...", flush=True)
        bench_provider.build_dataset(gpkg, args.features)
    python = bench_provider.ensure_stock_venv() if stock_stores else None
    if stock_stores and python is None:
        print("stock pygeoapi cannot run here (see above): measuring ours only")
        stock_stores = []
    cluster, pg_url, pg = None, None, None
    if "postgis" in stores or "postgresql" in stock_stores:
        from tests.pg import Cluster, missing_reason

        reason = missing_reason()
        if reason:
            print(f"PostGIS cases skipped: {reason}")
            stores = [s for s in stores if s != "postgis"]
            stock_stores = [s for s in stock_stores if s != "postgresql"]
        else:
            cluster = Cluster()
            cluster.start()
            pg_url = cluster.create_database("bench")
            pg = {"host": "127.0.0.1", "port": cluster.port, "dbname": "bench", "user": cluster.superuser}
            publish_to_postgis(gpkg, pg_url)
    if "postgresql" in stock_stores and not ensure_stock_postgresql(python):
        print("stock PostgreSQL provider cannot be installed in the stock venv: left out")
        stock_stores.remove("postgresql")

    servers: list[Server] = []
    try:
        for workers in worker_counts:
            for store in stock_stores:
                provider = stock_provider(store, gpkg, OUT / f"stock-{store}-w{workers}", pg)
                servers.append(start_stock(python, store, workers, provider))
            for store in stores:
                servers.append(start_ours(store, workers, gpkg, pg_url))
        for server in servers:
            wait_ready(server)
        print(f"  {len(servers)} servers ready: {', '.join(s.name for s in servers)}", flush=True)
        settle(servers)
        load = [os.getloadavg()[0]]
        for case in cases:
            print(f"  {case.name} ...", flush=True)
            for server in servers:
                drain()
                wrk(wrk_path, server.url, Case(case.name, case.mode, case.query, 2), 1, OUT)  # warm-up
                server.results[case.name] = wrk(wrk_path, server.url, case, args.seconds, OUT)
        for server in servers:
            if server.kind == "ours":
                server.results["rss_mb"] = [rss_mb(pid) for pid in worker_pids(server) if rss_mb(pid)]
                shares = [shared_mb(pid) for pid in worker_pids(server)]
                server.results["pss_mb"] = [pss for pss, _ in filter(None, shares)]
                server.results["uss_mb"] = [uss for _, uss in filter(None, shares)]
        load.append(os.getloadavg()[0])
        checked = {s.name: first_page_as_file(s.url, gpkg) for s in servers if s.kind == "ours"}
    finally:
        for server in servers:
            stop(server)
        if cluster is not None:
            cluster.stop()
    report = print_report(servers, args, load)
    report["first_page_in_fid_order"] = checked
    print(f"our first page = the file's first 10 features in fid order: {checked}")
    (bench_provider.OUT / "bench_server.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
