"""The request path's speed-ups keep the answers: kept connections follow publications, orjson writes the JSON
json wrote, and the cached CRS work answers as pygeoapi's own."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pygeoapi.provider.base import ProviderConnectionError
from pygeoapi.util import json_serial

from layers.catalog import load_catalog
from server.features.connections import ConnectionPool
from server.ogcapi import speedups
from server.published.layer import LruCache
from tests.server_fixtures import STAFF_KEY, VISITOR_KEY, server  # noqa: F401 - fixtures
from tests.threads import run_at_once


def _gpkg(path: Path, value: int) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (v INTEGER)")
        db.execute("INSERT INTO t VALUES (?)", (value,))
    db.close()
    return path


def _publish(source: Path, target: Path) -> None:
    """As the pipeline publishes: a new file renamed over the served one (a new inode)."""
    shutil.copyfile(source, target.with_suffix(".part"))
    os.replace(target.with_suffix(".part"), target)


def test_a_kept_connection_is_reused_for_the_same_file_version(tmp_path: Path) -> None:
    path = str(_gpkg(tmp_path / "layer.gpkg", 1))
    pool = ConnectionPool()
    with pool.connection(path) as (first, _):
        pass
    with pool.connection(path) as (second, _):
        assert second is first


def test_the_query_after_a_publication_reads_the_new_file(tmp_path: Path) -> None:
    served = _gpkg(tmp_path / "layer.gpkg", 1)
    pool = ConnectionPool()
    with pool.connection(str(served)) as (connection, _):
        assert connection.execute("SELECT v FROM t").fetchone() == (1,)
    _publish(_gpkg(tmp_path / "new.gpkg", 2), served)
    with pool.connection(str(served)) as (connection, _):
        assert connection.execute("SELECT v FROM t").fetchone() == (2,)


def test_a_connection_of_a_replaced_version_is_never_handed_out_and_closed_by_the_next_query(tmp_path: Path) -> None:
    served = _gpkg(tmp_path / "layer.gpkg", 1)
    pool = ConnectionPool()
    with pool.connection(str(served)) as (old, _):
        _publish(_gpkg(tmp_path / "new.gpkg", 2), served)
    # given back without a stat: the next query sees the new version, reads it and closes the old one
    with pool.connection(str(served)) as (new, _):
        assert new is not old
        assert new.execute("SELECT v FROM t").fetchone() == (2,)
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        old.execute("SELECT 1")
    with pool.connection(str(served)) as (again, _):
        assert again is new


def test_a_connection_whose_query_failed_is_not_handed_out_again(tmp_path: Path) -> None:
    path = str(_gpkg(tmp_path / "layer.gpkg", 1))
    pool = ConnectionPool()
    with pytest.raises(sqlite3.OperationalError), pool.connection(path) as (failed, _):
        failed.execute("SELECT * FROM no_such_table")
    with pool.connection(path) as (connection, _):
        assert connection is not failed


@pytest.mark.parametrize(
    "document",
    [
        {"type": "FeatureCollection", "features": [{"id": 1, "properties": {"name": "ул. Ленина", "n": 1.5}}]},
        {"when": dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC), "day": dt.date(2026, 11, 24), "d": Decimal("2.5")},
        {"big": 2**70, "none": None, "flag": True, "coords": (104.25, 52.3)},
    ],
)
def test_the_item_json_has_the_values_json_wrote(document: dict) -> None:
    expected = json.loads(json.dumps(document, default=json_serial))
    assert json.loads(speedups.to_json(document)) == expected


def test_a_bbox_in_the_storage_crs_is_not_transformed() -> None:
    crs84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    assert speedups.transform_bbox([104.1, 52.2, 104.2, 52.3], crs84, crs84) == [104.1, 52.2, 104.2, 52.3]


def test_the_crs_transform_spec_is_pygeoapis() -> None:
    original = speedups._ORIGINAL["create_crs_transform_spec"]
    config = {
        "storage_crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
        "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84", "http://www.opengis.net/def/crs/EPSG/0/3857"],
    }
    for requested in (None, "http://www.opengis.net/def/crs/EPSG/0/3857"):
        assert speedups.create_crs_transform_spec(config, requested) == original(config, requested)
    with pytest.raises(ValueError):
        speedups.create_crs_transform_spec(config, "http://www.opengis.net/def/crs/EPSG/0/32648")


def _provider_definition(path: Path) -> dict:
    return {
        "name": "server.features.provider.GeoPackageProvider",
        "type": "feature",
        "data": str(path),
        "table": "t",
        "properties": ["v"],
    }


def test_our_provider_is_made_once_per_definition(tmp_path: Path) -> None:
    speedups.install()
    definition = _provider_definition(tmp_path / "layer.gpkg")
    first = speedups.load_plugin("provider", definition)
    assert speedups.load_plugin("provider", definition) is first
    other = dict(definition)  # a new View (publication, level) brings new definitions: a new provider
    assert speedups.load_plugin("provider", other) is not first
    refused = {**definition, "properties": None}
    for _ in range(2):  # a refused definition is refused every time, never kept
        with pytest.raises(ProviderConnectionError):
            speedups.load_plugin("provider", refused)


def test_other_plugins_are_made_per_request_as_pygeoapi_makes_them() -> None:
    formatter = {"name": "CSV", "geom": False}
    assert speedups.load_plugin("formatter", formatter) is not speedups.load_plugin("formatter", formatter)


def test_query_parameters_read_as_starlettes_query_params_read_them() -> None:
    from starlette.requests import Request

    request = Request({"type": "http", "query_string": b"limit=5&bbox=1,2,3,4&limit=7&empty=", "headers": []})
    params = speedups._get_params(request)
    assert type(params) is dict
    assert params == dict(request.query_params.items()) == {"limit": "7", "bbox": "1,2,3,4", "empty": ""}
    assert params.get("offset") is None and request.query_params.get("offset") is None


# ---------------------------------------------------------------------- over HTTP: the same answers as the stack

SAME = ("content-type", "content-encoding", "etag", "cache-control", "vary", "content-length")


def _answer(client: httpx.Client, path: str, **headers: str) -> tuple[int, dict, bytes]:
    response = client.get(path, headers=headers)
    kept = {name: response.headers.get(name) for name in (*SAME, *CORS_HEADERS)}
    return response.status_code, kept, response.content


CORS_HEADERS = ("access-control-allow-origin", "access-control-expose-headers")


@pytest.mark.parametrize("path", ["/tiles/12/3234/1347.pbf", "/tiles/road_closures/12/3234/1347.pbf"])
def test_a_cached_public_tile_is_answered_as_the_tile_route_answers_it(server, path: str) -> None:  # noqa: F811
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for headers in ({}, {"Accept-Encoding": "gzip", "Origin": "https://example.org"}):
            slow = _answer(client, path, **headers, **{"X-API-Key": VISITOR_KEY})  # a key: through the stack
            fast = _answer(client, path, **headers)  # now cached, without a key: answered before the stack
            assert fast == slow
            etag = fast[1]["etag"]
            assert client.get(path, headers={**headers, "If-None-Match": etag}).status_code == 304


def test_an_internal_layers_tile_is_not_answered_without_a_key(server) -> None:  # noqa: F811
    internal = next(spec.id for spec in load_catalog().values() if spec.access != "public")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get(f"/tiles/{internal}/12/3234/1347.pbf", headers={"X-API-Key": STAFF_KEY}).status_code == 200
        assert client.get(f"/tiles/{internal}/12/3234/1347.pbf").status_code == 404


def test_a_repeated_item_page_is_the_same_page_with_the_same_headers(server) -> None:  # noqa: F811
    path = "/collections/repairs/items?limit=5"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for headers in ({}, {"Origin": "https://example.org", "Accept-Language": "en"}):
            first = _answer(client, path, **headers, **{"X-API-Key": VISITOR_KEY})  # through the stack
            again = _answer(client, path, **headers)  # cached, without a key: answered before the stack
            assert again == first
            assert client.get(path, headers=headers).headers["content-type"] == "application/geo+json"


def test_the_small_lru_keeps_the_ones_used_last_and_never_gives_a_value_of_another_key() -> None:
    """LruCache (server.published.layer): a hit moves its key to the end, so the one used longest ago goes first;
    hits are read without the lock, so threads putting, getting and clearing at once must never get another key's
    value, an error, or a cache over its size."""
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # used after b
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)

    shared = LruCache(16)
    wrong: list[tuple] = []
    failures: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(30_000):
                key = rng.randrange(40)
                if rng.random() < 0.3:
                    shared.put(key, ("value of", key))
                elif rng.random() < 0.002:
                    shared.clear()
                else:
                    value = shared.get(key)
                    if value is not None and value != ("value of", key):
                        wrong.append((key, value))
        except BaseException as error:  # noqa: BLE001 - collected, asserted below
            failures.append(error)

    run_at_once(work)
    assert not failures and not wrong
    assert len(shared._items) <= 16
