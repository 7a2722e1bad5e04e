"""Our OGC API server against stock pygeoapi (SQLiteGPKG provider) over HTTP, on one 1M-feature GeoPackage.

    .venv/bin/python benchmarks/bench_server.py [--features 1000000] [--seconds 15] [--connections 8]

Both run as single uvicorn processes without access logs on loopback and get the same randomised
requests from the same number of keep-alive connections, scenario by scenario (stock, then ours), so a
busy moment on the machine hits both alike. The stock provider needs SQLite extension loading
(SpatiaLite), so it runs under Debian's python3 in the venv bench_provider.py builds; the GeoPackage
is built by bench_provider.py's code, and each server reads its own copy of it (see private_copy).
Results: table on stdout and benchmarks/out/bench_server.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bench_provider  # the data set, the stock venv and the scenarios' shapes are shared with it
import httpx
import yaml

REPO = bench_provider.REPO
OUT = bench_provider.OUT / "bench_server"
EXTENT = bench_provider.EXTENT
READY_SECONDS = 300  # our server cuts internal fields out of a public download copy of the file on start
SEED = 20261124


@dataclass(frozen=True)
class Scenario:
    name: str
    params: Callable[[random.Random], dict]
    note: str = ""


def scenarios() -> list[Scenario]:
    def small_bbox(rng: random.Random) -> dict:
        x, y = rng.uniform(EXTENT[0], EXTENT[2] - 0.01), rng.uniform(EXTENT[1], EXTENT[3] - 0.01)
        return {"bbox": f"{x},{y},{x + 0.01},{y + 0.01}", "limit": 10}

    def week(rng: random.Random) -> dict:
        day = rng.randint(1, 350)
        first = time.strftime("%Y-%m-%d", time.gmtime(1767225600 + day * 86400))
        last = time.strftime("%Y-%m-%d", time.gmtime(1767225600 + (day + 6) * 86400))
        return {"datetime": f"{first}/{last}", "limit": 10}

    return [
        Scenario("small bbox (0.01°, limit 10)", small_bbox),
        Scenario("datetime 7-day window (limit 10)", week, "stock ignores datetime"),
        Scenario("first page (limit 10)", lambda rng: {"limit": 10}),
        Scenario("first page (limit 1000)", lambda rng: {"limit": 1000}),
        Scenario("offset ~900k (limit 10)", lambda rng: {"offset": 900000 + 10 * rng.randint(0, 5000), "limit": 10}),
    ]


# ---------------------------------------------------------------------- the two servers


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stock_config(gpkg: Path, port: int) -> dict:
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
                "providers": [
                    {"type": "feature", "name": "SQLiteGPKG", "data": str(gpkg), "id_field": "fid", "table": "repairs"}
                ],
            }
        },
    }


def start_stock(python: Path, gpkg: Path, port: int) -> subprocess.Popen:
    gpkg = private_copy(gpkg, OUT / "stock")
    if subprocess.run([python, "-c", "import uvicorn, starlette"], capture_output=True).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "uvicorn[standard]", "starlette"], check=True)
    config, openapi = OUT / "stock-config.yml", OUT / "stock-openapi.yml"
    config.write_text(yaml.safe_dump(stock_config(gpkg, port)))
    env = {**os.environ, "PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(openapi)}
    pygeoapi = python.parent / "pygeoapi"
    subprocess.run([pygeoapi, "openapi", "generate", config, "--output-file", openapi], check=True, env=env)
    command = [python, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--port", str(port), "--no-access-log"]
    return subprocess.Popen(command, env=env, cwd=OUT, stdout=open(OUT / "stock.log", "wb"), stderr=subprocess.STDOUT)


def private_copy(gpkg: Path, folder: Path) -> Path:
    """Each server reads its own copy: the stock provider writes into the file it serves (SpatiaLite adds
    its metadata tables), which our server would rightly take for a new publication and reload."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{bench_provider.TABLE}.gpkg"
    partial = folder / f".{bench_provider.TABLE}.gpkg.part"
    shutil.copyfile(gpkg, partial)
    os.replace(partial, target)
    return target


def start_ours(gpkg: Path, port: int) -> subprocess.Popen:
    published = private_copy(gpkg, OUT / "published").parent
    env = {
        **os.environ,
        "GEOPORTAL_PUBLISHED_DIR": str(published),
        "GEOPORTAL_SERVER_PORT": str(port),
        "GEOPORTAL_SERVER_CACHE_DIR": str(OUT / "cache"),
        "GEOPORTAL_SERVER_DEFAULT_ITEMS": "10",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app", "--port", str(port)]
    command.append("--no-access-log")
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=open(OUT / "ours.log", "wb"), stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/collections/repairs/items", params={"limit": 1}, timeout=30).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling interval while the server starts
    sys.exit(f"{url} not ready after {READY_SECONDS}s")


# ---------------------------------------------------------------------- load


def load(url: str, scenario: Scenario, seconds: float, connections: int) -> dict:
    """`connections` clients in a loop for `seconds`; every request timed, every non-200 counted."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        rng = random.Random(SEED + number)
        with httpx.Client(base_url=url, timeout=300) as http:
            while time.monotonic() < deadline:
                params = scenario.params(rng)
                started = time.perf_counter()
                try:
                    response = http.get("/collections/repairs/items", params=params)
                    failed = None if response.status_code == 200 else f"{response.status_code} {response.text[:120]}"
                except httpx.HTTPError as exc:
                    failed = repr(exc)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    (errors.append(failed) if failed else latencies.append(elapsed))

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return {
        "ok": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": wall,
        "throughput": len(latencies) / wall,
        "median_ms": _pct(latencies, 0.5),
        "p95_ms": _pct(latencies, 0.95),
    }


def _pct(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def same_first_page(stock_url: str, ours_url: str) -> bool | None:
    """Whether both answer the first page with the same features; None if the stock one fails (it does,
    now and then, with SQLite errors)."""

    def first_ids(url: str) -> list | None:
        for _ in range(3):
            response = httpx.get(f"{url}/collections/repairs/items", params={"limit": 10}, timeout=60)
            if response.status_code == 200:
                return [f["id"] for f in response.json()["features"]]
        return None

    stock, ours = first_ids(stock_url), first_ids(ours_url)
    return None if stock is None else stock == ours


def fmt(value: float | None, width: int = 8) -> str:
    return f"{value:{width}.1f}" if value is not None else f"{'-':>{width}s}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15, help="load per scenario and server")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    # bench_provider's data set, built here once: its own file may have been written into by a stock run
    gpkg = OUT / f"{bench_provider.TABLE}_{args.features}.gpkg"
    if not gpkg.exists():
        print(f"building {gpkg} ({args.features:,} points) ...", flush=True)
        bench_provider.build_dataset(gpkg, args.features)
    python = bench_provider.ensure_stock_venv()
    servers: dict[str, tuple[str, subprocess.Popen]] = {}
    try:
        if python is None:
            print("stock pygeoapi cannot run here (see above): measuring ours only")
        else:
            port = free_port()
            servers["stock"] = (f"http://127.0.0.1:{port}", start_stock(python, gpkg, port))
        port = free_port()
        servers["ours"] = (f"http://127.0.0.1:{port}", start_ours(gpkg, port))
        for name, (url, process) in servers.items():
            wait_ready(url, process, OUT / f"{name}.log")
        rows = []
        for scenario in scenarios():
            print(f"  {scenario.name} ...", flush=True)
            row = {"scenario": scenario.name, "note": scenario.note}
            for name, (url, _) in servers.items():
                load(url, Scenario(scenario.name, scenario.params), 1, 2)  # warm-up
                row[name] = load(url, scenario, args.seconds, args.connections)
            rows.append(row)
        checked = same_first_page(servers["stock"][0], servers["ours"][0]) if "stock" in servers else False
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=30)

    print(f"\n{args.features:,} features, {args.connections} connections, {args.seconds:.0f} s per scenario and server")
    print(
        f"{'scenario':34s} {'ours rps':>9s} {'ours p95':>9s} {'stock rps':>10s} {'stock p95':>10s} "
        f"{'rps x':>7s} {'p95 x':>7s}  errors (ours/stock)  notes"
    )
    for row in rows:
        ours, stock = row["ours"], row.get("stock")
        rps_ratio = ours["throughput"] / stock["throughput"] if stock and stock["throughput"] else None
        p95_ratio = stock["p95_ms"] / ours["p95_ms"] if stock and stock["p95_ms"] and ours["p95_ms"] else None
        row["throughput_ratio"], row["p95_ratio"] = rps_ratio, p95_ratio
        print(
            f"{row['scenario']:34s} {fmt(ours['throughput'], 9)} {fmt(ours['p95_ms'], 9)} "
            f"{fmt(stock and stock['throughput'], 10)} {fmt(stock and stock['p95_ms'], 10)} "
            f"{fmt(rps_ratio, 7)} {fmt(p95_ratio, 7)}  {ours['errors']}/{stock['errors'] if stock else '-'}"
            f"{'':14s}{row['note']}"
        )
    for row in rows:
        for name in ("ours", "stock"):
            if row.get(name) and row[name]["errors"]:
                print(f"  {name} errors in '{row['scenario']}', e.g. {row[name]['first_errors'][0]}")
    print(f"first page identical on both servers: {'stock failed 3 times' if checked is None else checked}")
    (bench_provider.OUT / "bench_server.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
