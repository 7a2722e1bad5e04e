"""The server over the PostGIS store (GEOPORTAL_STORE_URL) answers as it does over the GeoPackage files: the same
run of the pipeline published both, one server reads the files, the other only the database (its published
folder holds no GeoPackage), and the answers are compared request by request."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mapbox_vector_tile
import morecantile
import psycopg
import pytest

from assets.stores.postgis import publish_postgis
from layers.catalog import load_catalog
from server.features import pg_pool
from tests import pg
from tests.conftest import SAMPLE_MOMENT, city_paths
from tests.server_fixtures import STAFF_KEY, RunningServer, start_server, stop_server
from tests.test_postgis_publish import small_frame

postgres_cluster, postgres_url, published_city_postgis = pg.postgres_cluster, pg.postgres_url, pg.published_city_postgis

CATALOG = load_catalog()
DEADLINE_SECONDS = 60


@pytest.fixture(scope="module")
def both_servers(published_city_postgis, tmp_path_factory) -> Iterator[dict[str, RunningServer]]:
    paths, url = published_city_postgis
    folder = tmp_path_factory.mktemp("postgis_server")
    database_only = city_paths(folder / "city")
    database_only.published_dir.mkdir(parents=True)
    for raster in paths.published_dir.glob("*.tif"):  # raster products stay files (README, "Deployment")
        shutil.copy(raster, database_only.published_dir)
    servers = {
        "geopackage": start_server(paths, folder / "gpkg.log"),
        "postgis": start_server(database_only, folder / "pg.log", {"GEOPORTAL_STORE_URL": url}),
    }
    yield servers
    for server in servers.values():
        stop_server(server)
    assert not list(database_only.published_dir.glob("*.gpkg")), "the PostGIS server wrote no published file"


def features(server: RunningServer, path: str, key: str | None = None, **params) -> tuple[int, object]:
    with server.client(key) as client:
        response = client.get(path, params={"f": "json", **params})
    if response.status_code != 200:
        return response.status_code, response.text
    body = response.json()
    for volatile in ("links", "timeStamp"):
        body.pop(volatile, None)
    return 200, body


QUERIES = [
    ("/collections/repairs/items", {"limit": 1000}),
    ("/collections/repairs/items", {"bbox": "104.25,52.25,104.30,52.30", "limit": 1000}),
    ("/collections/road_closures/items", {"datetime": f"{SAMPLE_MOMENT[:19]}Z", "limit": 1000}),
    (
        "/collections/outages/items",
        {
            "filter": "resource = 'heating' AND start_time > TIMESTAMP('2026-01-01T00:00:00Z')",
            "filter-lang": "cql2-text",
            "limit": 1000,
        },
    ),
    ("/collections/repairs/items", {"crs": "http://www.opengis.net/def/crs/EPSG/0/3857", "limit": 50}),
    ("/collections/addresses/items", {"limit": 10, "sortby": "-address_id"}),  # internal: staff key below
    ("/collections/election_districts/items", {"limit": 1000}),
    ("/collections/detours/items", {"limit": 1000}),  # a field named like a registry column (description)
    ("/collections/repairs/items", {"filter": "no_such_field = 1", "filter-lang": "cql2-text"}),
]


@pytest.mark.parametrize(("path", "params"), QUERIES, ids=[f"{p}?{sorted(q)}" for p, q in QUERIES])
def test_features_are_the_same_from_either_store(both_servers, path: str, params: dict) -> None:
    files = features(both_servers["geopackage"], path, STAFF_KEY, **params)
    database = features(both_servers["postgis"], path, STAFF_KEY, **params)
    assert database[0] == files[0] == (400 if "no_such_field" in str(params) else 200), (files, database)
    if files[0] == 200:
        assert files[1]["features"], "the query selects something"
    assert database == files


def test_staff_fields_and_public_levels_are_the_same(both_servers) -> None:
    path = "/collections/police_precincts/items"
    assert features(both_servers["postgis"], path, STAFF_KEY) == features(both_servers["geopackage"], path, STAFF_KEY)
    assert features(both_servers["postgis"], path) == features(both_servers["geopackage"], path)
    with both_servers["postgis"].client() as client:
        assert client.get("/collections/conflicts", params={"f": "json"}).status_code == 404  # internal layer


def test_an_item_a_tile_and_a_download_are_the_same(both_servers, tmp_path: Path) -> None:
    _, page = features(both_servers["geopackage"], "/collections/repairs/items", limit=1)
    fid = page["features"][0]["id"]
    lon, lat = page["features"][0]["geometry"]["coordinates"][:2]
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 14)
    item = f"/collections/repairs/items/{fid}"
    assert features(both_servers["postgis"], item) == features(both_servers["geopackage"], item)
    tiles = {}
    id_field = CATALOG["repairs"].id_field
    for name, server in both_servers.items():
        with server.client() as client:
            tiles[name] = client.get(f"/tiles/{tile.z}/{tile.x}/{tile.y}.pbf").content
            download = client.get("/downloads/repairs.gpkg")
        assert download.status_code == 200
        (tmp_path / f"{name}.gpkg").write_bytes(download.content)
        with sqlite3.connect(tmp_path / f"{name}.gpkg") as db:
            tiles[name + " rows"] = db.execute(f"SELECT fid, {id_field} FROM repairs ORDER BY fid").fetchall()
    decoded = {name: mapbox_vector_tile.decode(tiles[name]) for name in both_servers}
    assert decoded["postgis"] == decoded["geopackage"] and "repairs" in decoded["postgis"]  # a tile with the feature
    assert tiles["postgis rows"] == tiles["geopackage rows"] and tiles["postgis rows"]


def test_a_new_publication_in_postgis_is_served_without_a_restart(postgres_url: str, tmp_path: Path) -> None:
    spec = CATALOG["addresses"]
    publish_postgis(small_frame(spec, ["first"]), spec, postgres_url)
    paths = city_paths(tmp_path / "city")
    server = start_server(paths, tmp_path / "server.log", {"GEOPORTAL_STORE_URL": postgres_url})
    try:
        status, body = features(server, "/collections/addresses/items", STAFF_KEY)
        assert status == 200, (body, server.log_text()[-3000:])
        assert [f["properties"][spec.id_field] for f in body["features"]] == ["first"]

        publish_postgis(small_frame(spec, ["second", "third"]), spec, postgres_url)

        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            _, body = features(server, "/collections/addresses/items", STAFF_KEY)
            ids = sorted(f["properties"][spec.id_field] for f in body["features"])
            if ids == ["second", "third"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # polling interval
        assert ids == ["second", "third"]
    finally:
        stop_server(server)


def test_a_started_server_opens_and_primes_its_store_connections_before_the_first_request(
    postgres_url: str, tmp_path: Path
) -> None:
    """A new backend's first PostGIS query loads PostGIS into it (~10 ms, 50-125 ms under load): the worker opens and
    primes its connections ahead, not inside its first visitors' requests (bench_server's first case, 2 workers:
    p99 0.5-0.6 s before)."""
    spec = CATALOG["addresses"]
    publish_postgis(small_frame(spec, ["first"]), spec, postgres_url)
    server = start_server(city_paths(tmp_path / "city"), tmp_path / "server.log", {"GEOPORTAL_STORE_URL": postgres_url})
    database = postgres_url.rsplit("/", 1)[1]
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            with psycopg.connect(postgres_url, autocommit=True) as connection:
                primed = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query = %s",
                    (database, pg_pool.PRIMER),
                ).fetchone()[0]
            # one may have answered the server's own first reads since (the pool hands out the last one returned)
            if primed >= pg_pool.PRIMED - 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # polling interval while the worker's store thread opens them
        assert primed >= pg_pool.PRIMED - 1, server.log_text()[-3000:]
        status, body = features(server, "/collections/addresses/items", STAFF_KEY)
        assert status == 200 and [f["properties"][spec.id_field] for f in body["features"]] == ["first"]
        assert "Traceback" not in server.log_text()
    finally:
        stop_server(server)


def test_priming_replaces_a_connection_lost_while_idle(postgres_url: str) -> None:
    """After an outage the store's thread primes again: a kept connection that was lost meanwhile is replaced, not
    handed to the next request."""
    pool = pg_pool.ConnectionPool(postgres_url)
    try:
        assert pool.prime(2) == 2
        with pool.connection() as connection:
            connection.execute("SELECT 1")
        pool._idle[0].close()  # as a connection is found after the database restarted

        assert pool.prime(2) == 1
        with pool.connection() as first, pool.connection() as second:
            assert {first.execute("SELECT 1").fetchone()[0], second.execute("SELECT 1").fetchone()[0]} == {1}
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("url", "workers", "cores", "running"),
    [
        ("postgresql://geoportal@127.0.0.1:5432/city", 2, 2, 1),  # the workers fill the cores of the database's machine
        ("postgresql://geoportal@localhost/city", 4, 2, 1),
        ("postgresql://geoportal@[::1]:5433/city", 1, 1, 1),
        ("postgresql:///city?host=/var/run/postgresql", 2, 2, 1),  # a Unix socket
        ("postgresql://geoportal@127.0.0.1:5432/city", 1, 2, None),  # a core left for PostgreSQL
        ("postgresql://geoportal@db.city.example:5432/city", 2, 2, None),  # the database on its own machine
        ("postgresql://geoportal@10.0.0.5/city", 8, 2, None),
        ("host=127.0.0.1,db.city.example dbname=city", 2, 2, None),  # may fail over to another machine
        ("host=127.0.0.1 dbname", 2, 2, None),  # unreadable: connecting says why, not this
    ],
)
def test_a_worker_runs_one_statement_at_a_time_only_when_the_workers_fill_the_cores_of_the_databases_machine(
    url: str, workers: int, cores: int, running: int | None
) -> None:
    assert pg_pool.running_at_once(url, workers, cores) == running


@pytest.mark.parametrize("running", [1, None])
def test_a_query_waits_for_its_turn_then_runs_anyway(postgres_url: str, running: int | None) -> None:
    """One statement at a time: the next query waits while one runs, but never longer than the turn's wait, so a slow
    statement holds the others up that long at most. Without the limit it runs at once."""
    pool = pg_pool.ConnectionPool(postgres_url, running=running, turn_wait=2.0)
    first_in, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with pool.connection() as connection:
            connection.execute("SELECT 1")
            first_in.set()
            release.wait(DEADLINE_SECONDS)

    def second() -> None:
        with pool.connection() as connection:
            assert connection.execute("SELECT 2").fetchone()[0] == 2
            second_in.set()

    threads = [threading.Thread(target=first)]
    try:
        threads[0].start()
        assert first_in.wait(DEADLINE_SECONDS)
        started = time.monotonic()
        threads.append(threading.Thread(target=second))
        threads[1].start()
        if running:
            assert not second_in.wait(0.5)  # its turn has not come: the first still runs
        assert second_in.wait(DEADLINE_SECONDS)  # while the first still runs: its turn's wait is over
        assert not release.is_set()
        waited = time.monotonic() - started
        assert (waited >= pool.turn_wait) if running else (waited < pool.turn_wait), waited
    finally:
        release.set()
        for thread in threads:
            thread.join(DEADLINE_SECONDS)
        pool.close()


def test_the_banner_says_when_a_worker_runs_one_statement_at_a_time(postgres_url: str, tmp_path: Path) -> None:
    """Started on one core with one worker over a database on 127.0.0.1, the workers fill the cores: the server says
    so when it starts, and answers."""
    spec = CATALOG["addresses"]
    publish_postgis(small_frame(spec, ["first"]), spec, postgres_url)
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # the server started now inherits it
    try:
        server = start_server(
            city_paths(tmp_path / "city"), tmp_path / "server.log", {"GEOPORTAL_STORE_URL": postgres_url}
        )
    finally:
        os.sched_setaffinity(0, cores)
    try:
        status, body = features(server, "/collections/addresses/items", STAFF_KEY)
        assert status == 200 and [f["properties"][spec.id_field] for f in body["features"]] == ["first"]
        assert "each of 1 worker(s) on 1 core(s) runs 1 statement(s) at once" in server.log_text()
    finally:
        stop_server(server)


def test_a_database_that_goes_away_is_logged_and_the_last_versions_stay_served(tmp_path: Path) -> None:
    spec = CATALOG["addresses"]

    def publish(url: str) -> None:
        publish_postgis(small_frame(spec, ["kept"]), spec, url)

    with pg.server_on_own_cluster(tmp_path, "geoportal_away", publish) as (cluster, server):
        assert features(server, "/collections/addresses/items", STAFF_KEY)[0] == 200
        cluster.stop()

        status, body = features(server, "/collections/addresses/items", STAFF_KEY)

        assert status == 200, body
        assert [f["properties"][spec.id_field] for f in body["features"]] == ["kept"]
        assert "PostGIS store" in server.log_text() and "unreachable" in server.log_text()
        assert "Traceback" not in server.log_text()
