"""`python -m server --workers 2` over each store: both workers answer, and after a publication no worker serves the
old data from a cache (items, numberMatched, an item, a tile) once the publication has committed plus one second;
and what a worker holds in memory once every tile z0-z14 of the sample city is warm and every layer was paged."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
import shapely

from assets.publish import publish_geopackage, stable_fid
from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from server.__main__ import WORKER_HEADER
from tests import pg
from tests.conftest import city_paths, path_environment
from tests.server_fixtures import STAFF_KEY, RunningServer, start_server, stop_server
from tests.test_tiles import frame_for, repair

postgres_cluster, published_city_postgis = pg.postgres_cluster, pg.published_city_postgis
CATALOG = load_catalog()
SPEC = CATALOG["repairs"]
POINT = (104.2800, 52.2900)  # the repair that changes
CHANGED = "S-0"
FID = stable_fid("repairs", CHANGED)
TILE = morecantile.tms.get("WebMercatorQuad").tile(*POINT, 15)
COUNT = 300
DEADLINE_SECONDS = 60
CONSECUTIVE = 20  # rounds of every request in a row showing the new publication
GRACE_SECONDS = 1.0  # after the commit, no worker may answer with the old data


def publish(folder: Path, network: str, count: int) -> None:
    """The pipeline's own writer (and, with GEOPORTAL_STORE_URL set, its PostGIS publication)."""
    rng = np.random.default_rng(5)
    rows = [repair(CHANGED, network, "2026-01-01T00:00:00Z")]
    rows += [repair(f"S-{i}", "gas", "2026-01-01T00:00:00Z") for i in range(1, count)]
    points = [
        shapely.Point(POINT),
        *shapely.points(rng.uniform(104.2, 104.4, count - 1), rng.uniform(52.2, 52.4, count - 1)),
    ]
    publish_geopackage(frame_for("repairs", rows, points), SPEC, folder / "repairs.gpkg")


def observe(servers: list[RunningServer]) -> list[tuple[str, str, object]]:
    """One round: each request on a new connection (so the kernel spreads them over a server's workers), the
    servers taken in turn; (what, worker, value seen)."""
    turn = iter(range(1_000_000))

    def get(path: str) -> httpx.Response:
        server = servers[next(turn) % len(servers)]
        response = httpx.get(server.url + path, headers={"Connection": "close"}, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response

    def items() -> tuple[str, str, object]:
        response = get("/collections/repairs/items?limit=5")
        return "numberMatched", response.headers[WORKER_HEADER.decode()], response.json()["numberMatched"]

    def heat_count() -> tuple[str, str, object]:
        response = get("/collections/repairs/items?limit=1&network=heat")
        return "count heat", response.headers[WORKER_HEADER.decode()], response.json()["numberMatched"]

    def item() -> tuple[str, str, object]:
        response = get(f"/collections/repairs/items/{FID}")
        return "item", response.headers[WORKER_HEADER.decode()], response.json()["properties"]["network"]

    def tile() -> tuple[str, str, object]:
        response = get(f"/tiles/repairs/{TILE.z}/{TILE.x}/{TILE.y}.pbf")
        features = mapbox_vector_tile.decode(response.content).get("repairs", {}).get("features", [])
        network = next((f["properties"]["network"] for f in features if f["id"] == FID), None)
        return "tile", response.headers[WORKER_HEADER.decode()], network

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda ask: ask(), [items, heat_count, item, tile] * 2))


OLD = {"numberMatched": COUNT, "count heat": 1, "item": "heat", "tile": "heat"}
NEW = {"numberMatched": COUNT - 1, "count heat": 0, "item": "water", "tile": "water"}


@pytest.fixture(params=["geopackage", "postgis", "postgis, two machines"])
def two_workers(request, tmp_path: Path) -> Iterator[tuple[list[RunningServer], Path, dict]]:
    """Two workers of one server; or two servers of one worker each, with their own cache folders, over the same
    database (two machines, as far as a test on one machine can tell)."""
    env: dict[str, str] = {}
    if request.param.startswith("postgis"):
        cluster = request.getfixturevalue("postgres_cluster")
        env["GEOPORTAL_STORE_URL"] = cluster.create_database(f"geoportal_workers_{tmp_path.name[-12:]}")
    paths = city_paths(tmp_path / "city")
    writer = tmp_path / "writer"  # the pipeline's working copy; in GeoPackage mode it is the published folder
    folder = paths.published_dir if request.param == "geopackage" else writer
    folder.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        publish(folder, "heat", COUNT)
    servers = []
    try:
        if request.param.endswith("two machines"):
            for machine in ("a", "b"):
                (tmp_path / machine).mkdir()
                servers.append(start_server(paths, tmp_path / machine / "server.log", env))
        else:
            servers.append(start_server(paths, tmp_path / "server.log", env, ["--workers", "2"]))
        yield servers, folder, env
    finally:
        for server in servers:
            stop_server(server)


def worker_answering(connection: socket.socket) -> str:
    """The worker (X-Server-Worker) answering a request sent on this open connection."""
    connection.sendall(b"GET /conformance HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(65536)
        assert chunk, f"closed before the headers: {head!r}"
        head += chunk
    for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == WORKER_HEADER:
            return value.strip().decode()
    raise AssertionError(f"no {WORKER_HEADER!r} header: {head[:300]!r}")


def workers_answering_a_burst(address: tuple[str, int], count: int = 16) -> list[str]:
    """The workers answering `count` connections opened one after the other before any request is sent (all queued
    before a worker wakes to accept them)."""
    connections = [socket.create_connection(address, timeout=30) for _ in range(count)]
    try:
        return [worker_answering(connection) for connection in connections]
    finally:
        for connection in connections:
            connection.close()


def test_connections_opened_together_are_spread_over_the_workers(tmp_path: Path) -> None:
    """Each worker listens on a socket of its own (server/listening.py): connections opened at once, before any is
    accepted (a browser's, a proxy pool's), reach both workers. With one socket shared, the worker woken first accepted
    every connection queued, and the other stayed idle while they lasted. A worker killed is started again on a socket
    of its own."""
    server = start_server(city_paths(tmp_path / "city"), tmp_path / "server.log", args=["--workers", "2"])
    address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(seen) < 2:  # both listening: each answers a connection of its own sooner or later
            assert time.monotonic() < deadline, f"one worker only answered: {seen}"
            with socket.create_connection(address, timeout=30) as connection:
                seen.add(worker_answering(connection))
        for _ in range(5):
            answering = workers_answering_a_burst(address)
            assert set(answering) == seen, answering  # all 16 on one worker: 2 in 65,536 by the kernel's hash
        # a worker that dies is started again by uvicorn's supervisor, on a socket of its own again
        gone = sorted(seen)[0]
        os.kill(int(gone.rsplit(":", 1)[1]), signal.SIGKILL)
        while len(seen) < 3:
            assert time.monotonic() < deadline + DEADLINE_SECONDS, f"no worker started again: {seen}"
            try:
                with socket.create_connection(address, timeout=30) as connection:
                    seen.add(worker_answering(connection))
            except ConnectionResetError:  # queued on the dead worker's socket when it went
                pass
        answering = workers_answering_a_burst(address)
        assert set(answering) == seen - {gone}, answering
    finally:
        stop_server(server)


def test_a_second_server_on_a_running_servers_port_says_so_and_stops(tmp_path: Path) -> None:
    """Workers listen in an SO_REUSEPORT group (server/listening.py), which any process of the same user may join:
    a second `python -m server --workers 2` on the port of a running one must not join it and take half its
    connections, but stop with one line, as uvicorn does for one worker."""
    paths = city_paths(tmp_path / "city")
    server = start_server(paths, tmp_path / "server.log", args=["--workers", "2"])
    port = server.url.rsplit(":", 1)[1]
    try:
        env = {**os.environ, **path_environment(paths), "GEOPORTAL_SERVER_CACHE_DIR": str(tmp_path / "cache-2")}
        second = subprocess.run(
            [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", port, "--workers", "2"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_SECONDS,
        )
        assert second.returncode == 2, second.stderr[-2000:]
        assert "cannot listen on 127.0.0.1:" in second.stderr and "Traceback" not in second.stderr, second.stderr
        assert httpx.get(server.url + "/conformance", timeout=30).status_code == 200  # the first one unharmed
    finally:
        stop_server(server)


def test_no_worker_serves_a_stale_cache_after_a_publication(two_workers) -> None:
    servers, folder, env = two_workers
    workers: set[str] = set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(workers) < 2 or time.monotonic() < deadline - DEADLINE_SECONDS + 3:  # warm every cache in both
        for what, worker, value in observe(servers):
            assert value == OLD[what], (what, worker, value, servers[0].log_text()[-2000:])
            workers.add(worker)
        assert time.monotonic() < deadline, f"one worker answered everything: {workers}"

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        publish(folder, "water", COUNT - 1)  # R-0 changes network, one repair is gone
    committed = time.monotonic()

    # Tiles are answered from the version before until one worker has prepared the new one's (server/tiles/vector.py,
    # GEOPORTAL_SERVER_TILE_SWITCH_SECONDS), then by every worker sharing the tile store from the new one: once a
    # round saw a new tile, no later round of that store sees an old one.
    late_stale, streak, seen_after, tiles_switched = [], 0, set(), False
    deadline = committed + DEADLINE_SECONDS
    while streak < CONSECUTIVE:
        assert time.monotonic() < deadline, f"not all new after {DEADLINE_SECONDS}s: {late_stale[-5:]}"
        sent = time.monotonic()
        answers = observe(servers)
        fresh = all(value == NEW[what] for what, _, value in answers)
        streak = streak + 1 if fresh else 0
        for what, worker, value in answers:
            seen_after.add(worker)
            late = tiles_switched if what == "tile" else sent > committed + GRACE_SECONDS
            if value != NEW[what] and late:
                late_stale.append((round(sent - committed, 2), what, worker, value))
        one_store = len(servers) == 1  # two machines have a tile store each: each switches on its own
        tiles_switched |= one_store and any(value == NEW[what] for what, _, value in answers if what == "tile")
    assert not late_stale, f"stale answers more than {GRACE_SECONDS}s after the commit: {late_stale[:10]}"
    assert seen_after == workers, "both workers answered after the publication"


WORKER_BUDGET_MB = 300  # the steady memory per worker


def memory_mb(pid: int) -> dict[str, int]:
    """Resident (RSS, counting the shared libraries in full) and proportional (PSS: shared pages divided among the
    processes mapping them, what one more worker costs the machine) memory of a process."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Rss", "Pss"):
            figures[name] = int(value.split()[0]) // 1024
    return figures


@pytest.mark.parametrize("store", ["geopackage", "postgis"])
def test_a_worker_stays_within_its_memory_once_tiles_and_pages_are_warm(store, published_city, request, tmp_path):
    from server.tiles.render import TMS

    env, paths = {}, city_paths(tmp_path / "city")
    if store == "geopackage":
        paths = published_city
    else:
        published, env["GEOPORTAL_STORE_URL"] = request.getfixturevalue("published_city_postgis")
        paths.published_dir.mkdir(parents=True)
        for raster in published.published_dir.glob("*.tif"):
            (paths.published_dir / raster.name).write_bytes(raster.read_bytes())
    server = start_server(paths, tmp_path / "server.log", env, ["--workers", "2"])
    try:

        def get(path: str) -> httpx.Response:
            headers = {"Connection": "close", "X-API-Key": STAFF_KEY, "Accept-Encoding": "gzip"}
            response = httpx.get(server.url + path, headers=headers, timeout=60)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            return response

        bounds = get("/tiles/tilejson.json").json()["bounds"]
        tiles = list(TMS.tiles(*bounds, zooms=list(range(15))))
        with ThreadPoolExecutor(4) as pool:  # twice: each worker renders (about) every tile once
            workers = {r.headers[WORKER_HEADER.decode()] for r in pool.map(
                lambda t: get(f"/tiles/{t.z}/{t.x}/{t.y}.pbf"), tiles * 2)}  # fmt: skip
        for layer_id in CATALOG:
            for _ in range(2):
                page = f"/collections/{layer_id}/items?limit=1000"
                while page:
                    answer = get(page)
                    workers.add(answer.headers[WORKER_HEADER.decode()])
                    links = answer.json().get("links", [])
                    page = next((x["href"].removeprefix(server.url) for x in links if x["rel"] == "next"), None)
        figures = {worker: memory_mb(int(worker.rpartition(":")[2])) for worker in workers}
        print(f"\n{store}: {len(tiles)} tiles z0-z14 warm, every layer paged; per worker MB {figures}")
        assert len(workers) == 2
        assert all(f["Pss"] <= WORKER_BUDGET_MB for f in figures.values()), figures
    finally:
        stop_server(server)


@pytest.mark.parametrize("store", ["geopackage", "postgis"])
def test_each_worker_takes_its_stores_gil_switch_interval(store, published_city, request, tmp_path) -> None:
    """What uvicorn calls to make each of N workers (server.__main__.worker_app) sets the store's GIL switch interval:
    1 ms for PostGIS, whose workers share the cores with PostgreSQL (PostGISStore.worker_switch_seconds: 2 workers,
    p95 mean 18.7 vs 25.8 ms over 12 runs), Python's default (5 ms) for GeoPackage. Run in a process of its own, as
    uvicorn's workers are."""
    paths, env = published_city, {}
    if store == "postgis":
        paths, env["GEOPORTAL_STORE_URL"] = request.getfixturevalue("published_city_postgis")
    env = {
        **{k: v for k, v in os.environ.items() if k != "GEOPORTAL_STORE_URL"},
        **path_environment(paths),
        "GEOPORTAL_SERVER_CACHE_DIR": str(tmp_path / "cache"),
        **env,
    }
    script = "import sys; from server.__main__ import worker_app; worker_app(); print(sys.getswitchinterval())"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) == (0.001 if store == "postgis" else 0.005)
