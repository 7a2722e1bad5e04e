"""Under load and across publications: many concurrent clients, and GeoPackages replaced while they read."""

from __future__ import annotations

import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pyogrio

from assets.publish import publish_geopackage
from layers.catalog import load_catalog
from tests.server_fixtures import STAFF_KEY, private_server, published_frame, server  # noqa: F401 - fixtures

CLIENTS = 32
REQUESTS_PER_CLIENT = 200
DEADLINE_SECONDS = 300


def mixed_requests(frame) -> list[tuple[str, dict]]:
    """What a city's clients ask all day: pages, boxes, time windows, filters, other CRSs, single items."""
    minx, miny, maxx, maxy = frame.total_bounds
    fids = [int(f) for f in frame.index[:20]]
    return [
        ("/collections/repairs/items", {"limit": 50}),
        ("/collections/repairs/items", {"bbox": f"{minx},{miny},{(minx + maxx) / 2},{(miny + maxy) / 2}"}),
        ("/collections/repairs/items", {"datetime": "2026-11-24T12:00:00Z"}),
        ("/collections/repairs/items", {"datetime": "2026-11-23T00:00:00Z/2026-11-29T23:59:59Z", "limit": 20}),
        ("/collections/repairs/items", {"filter": "network IN ('heat','water') AND work_kind = 'emergency'"}),
        ("/collections/repairs/items", {"crs": "http://www.opengis.net/def/crs/EPSG/0/3857", "limit": 100}),
        ("/collections/repairs/items", {"sortby": "-start_time", "offset": 100, "limit": 50}),
        ("/collections/road_closures/items", {"datetime": "2026-11-24T12:00:00Z"}),
        ("/collections/police_precincts/items", {"limit": 10}),
        ("/collections/repairs", {}),
        ("/collections/repairs/queryables", {}),
        ("/collections", {}),
        *((f"/collections/repairs/items/{fid}", {}) for fid in fids),
    ]


def test_32_concurrent_clients_see_no_errors_and_stable_answers(server):  # noqa: F811
    requests = mixed_requests(published_frame(server.paths, "repairs"))
    failures: list[str] = []
    matched: dict[str, set[int]] = {}
    lock = threading.Lock()

    def client(number: int) -> int:
        chooser = random.Random(number)
        done = 0
        with server.client(STAFF_KEY if number % 4 == 0 else None) as http:
            for _ in range(REQUESTS_PER_CLIENT):
                path, params = chooser.choice(requests)
                response = http.get(path, params=params)
                done += 1
                if response.status_code != 200:
                    with lock:
                        failures.append(f"{response.status_code} {path} {params}: {response.text[:200]}")
                    continue
                if "numberMatched" in response.text:
                    with lock:
                        matched.setdefault(f"{path} {sorted(params.items())}", set()).add(
                            response.json()["numberMatched"]
                        )
        return done

    with ThreadPoolExecutor(CLIENTS) as pool:
        done = sum(f.result(timeout=DEADLINE_SECONDS) for f in [pool.submit(client, n) for n in range(CLIENTS)])
    assert failures == []
    assert done == CLIENTS * REQUESTS_PER_CLIENT
    assert all(len(counts) == 1 for counts in matched.values()), matched  # the same answer every time


def test_a_publication_replaces_data_under_running_requests(private_server):  # noqa: F811
    target = private_server.paths.published_path("repairs")
    spec = load_catalog()["repairs"]
    full = pyogrio.read_dataframe(target, fid_as_index=True).reset_index()
    fewer = full.iloc[:50]
    stop = threading.Event()
    failures: list[str] = []
    seen: set[int] = set()

    def reader(number: int) -> None:
        with private_server.client(STAFF_KEY if number % 2 else None) as http:
            while not stop.is_set():
                for path in ["/collections/repairs/items?limit=100", "/collections/repairs", "/downloads/repairs.gpkg"]:
                    try:
                        response = http.get(path)
                    except Exception as exc:  # noqa: BLE001 - any transport failure is what we look for
                        failures.append(f"{path}: {exc!r}")
                        continue
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {path}: {response.text[:200]}")
                    elif path.endswith("limit=100"):
                        seen.add(response.json()["numberMatched"])

    with ThreadPoolExecutor(8) as pool, private_server.client() as http:
        readers = [pool.submit(reader, n) for n in range(8)]
        try:
            for frame in [fewer, full] * 3:
                publish_geopackage(frame, spec, target)  # as the pipeline does: aside, then one rename
                # the very next request sees the new file
                assert http.get("/collections/repairs/items", params={"limit": 1}).json()["numberMatched"] == len(frame)
        finally:
            stop.set()
            for future in readers:
                future.result(timeout=DEADLINE_SECONDS)
    assert failures == []
    assert seen <= {len(full), len(fewer)} and len(fewer) in seen


def test_a_layer_published_later_appears_without_a_restart(private_server, tmp_path):  # noqa: F811
    target = private_server.paths.published_path("detours")
    aside = tmp_path / "detours.gpkg"
    os.replace(target, aside)
    with private_server.client() as http:
        assert http.get("/collections/detours").status_code == 404
        assert "detours" not in {c["id"] for c in http.get("/collections").json()["collections"]}
        os.replace(aside, target)
        assert http.get("/collections/detours").status_code == 200
        count = len(pyogrio.read_dataframe(target))
        assert http.get("/collections/detours/items").json()["numberMatched"] == count


def test_an_unreadable_publication_takes_down_only_its_layer(private_server, tmp_path):  # noqa: F811
    target = private_server.paths.published_path("detours")
    good = tmp_path / "detours.gpkg"
    good.write_bytes(target.read_bytes())
    broken = target.with_name(".detours.broken")
    broken.write_bytes(b"not a GeoPackage" * 64)
    os.replace(broken, target)
    with private_server.client() as http:
        assert http.get("/collections/detours").status_code == 404
        assert http.get("/collections/repairs/items", params={"limit": 1}).status_code == 200
        os.replace(good, target)
        assert http.get("/collections/detours/items").status_code == 200
