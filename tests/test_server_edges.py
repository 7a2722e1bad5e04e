"""The server's edges: one answer per access level on every route, no 500 for odd input, links that ignore
`Host`, a bounded request body, command-line flags, and keys that follow their file without a restart."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from server.auth import hash_key
from tests.server_fixtures import (  # noqa: F401 - fixtures
    STAFF_KEY,
    VISITOR_KEY,
    anonymous,
    free_port,
    server,
    start_server,
    stop_server,
)

RELOAD_SECONDS = 30
INTERNAL_LAYER_URLS = [
    "/collections/addresses",
    "/collections/addresses/tiles",
    "/collections/addresses/tiles/WebMercatorQuad",
    "/collections/addresses/tiles/WebMercatorQuad/14/5420/12906?f=mvt",
    "/tiles/addresses/tilejson.json",
    "/tiles/addresses/14/12906/5420.pbf",
    "/styles/addresses.qml",
    "/downloads/addresses.gpkg",
]


@pytest.mark.parametrize("url", INTERNAL_LAYER_URLS)
def test_a_public_level_key_gets_403_on_every_route_of_an_internal_layer(server, url):  # noqa: F811
    with server.client(VISITOR_KEY) as visitor, server.client() as anonymous_client:
        response = visitor.get(url)
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "Forbidden"
        assert anonymous_client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/collections/repairs/items?sortby=", 400),
        ("/collections/repairs/items?sortby=,", 400),
        ("/collections/repairs/items?sortby=-", 400),
        ("/collections/repairs/items?bbox=NaN,NaN,NaN,NaN", 400),
        ("/collections/repairs/items?bbox=104,52,inf,53", 400),
        ("/collections/repairs/items/99999999999999999999", 404),
        ("/collections/repairs/items/-99999999999999999999", 404),
        ("/collections/disruption_load/coverage?bbox=0,0,1,1", 400),
        ("/collections/disruption_load/coverage?bbox=NaN,NaN,NaN,NaN", 400),
        ("/collections/disruption_load/coverage?bbox-crs=https://0.com&bbox=104,52,104.1,52.1", 400),
    ],
)
def test_odd_input_is_a_client_error_with_an_ogc_body(anonymous, url, status):  # noqa: F811
    response = anonymous.get(url)
    assert response.status_code == status, response.text
    assert response.json()["code"] and response.json()["description"]


def test_the_trailing_slash_redirect_ignores_the_host_header(server):  # noqa: F811
    response = httpx.get(f"{server.url}/collections/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (301, 307, 308)
    assert response.headers["location"] == f"{server.url}/collections"


def test_a_request_body_above_the_limit_is_refused_unread(server):  # noqa: F811
    body = b'{"op": "=", "args": [{"property": "permit_id"}, "' + b"x" * (50 * 2**20) + b'"]}'
    response = httpx.post(
        f"{server.url}/collections/repairs/items",
        content=body,
        headers={"Content-Type": "application/query-cql-json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PayloadTooLarge"

    def chunks():  # no Content-Length: the limit is counted as the body streams in
        for _ in range(50):
            yield b"x" * 2**20

    response = httpx.post(f"{server.url}/collections/repairs/items", content=chunks(), timeout=60)
    assert response.status_code == 413


@pytest.fixture
def flagged_server(published_city, tmp_path):
    """`python -m server --port P --workers 1` with GEOPORTAL_SERVER_PORT set elsewhere, keys from a file."""
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"- {{name: staff, level: internal, hash: '{hash_key(STAFF_KEY)}'}}\n", encoding="utf-8")
    port = free_port()
    running = start_server(
        published_city,
        tmp_path / "server.log",
        extra_env={"GEOPORTAL_SERVER_API_KEYS": "", "GEOPORTAL_SERVER_API_KEYS_FILE": str(keys)},
        args=["--port", str(port), "--workers", "1"],
    )
    running.keys = keys
    yield running
    stop_server(running)


def replace_keys(path, entries: list[tuple[str, str, str]]) -> None:
    """Written beside and renamed, as a secrets manager or an editor does."""
    text = "".join(f"- {{name: {name}, level: {level}, hash: '{hash_key(key)}'}}\n" for name, level, key in entries)
    staged = path.with_suffix(".new")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def poll_status(client: httpx.Client, url: str, status: int) -> int:
    deadline = time.monotonic() + RELOAD_SECONDS
    while (answer := client.get(url).status_code) != status and time.monotonic() < deadline:
        time.sleep(0.1)  # polling interval, bounded by the deadline
    return answer


def test_flags_win_over_settings_and_keys_follow_their_file(flagged_server):
    assert flagged_server.url.endswith(flagged_server.url.rsplit(":", 1)[1])  # reached on the flag's port
    new_key = "a-key-added-while-the-server-runs-0123"
    with flagged_server.client(STAFF_KEY) as staff, flagged_server.client(new_key) as newcomer:
        assert staff.get("/collections/addresses").status_code == 200
        assert newcomer.get("/collections/addresses").status_code == 401
        replace_keys(flagged_server.keys, [("staff", "internal", STAFF_KEY), ("newcomer", "internal", new_key)])
        assert poll_status(newcomer, "/collections/addresses", 200) == 200
        replace_keys(flagged_server.keys, [("newcomer", "internal", new_key)])  # staff's key revoked
        assert poll_status(staff, "/collections/addresses", 401) == 401
        assert newcomer.get("/collections/addresses").status_code == 200


@pytest.mark.parametrize("params", [{"houses": "6708316888174059061248"}, {"filter": "houses = 99999999999999999999"}])
def test_integers_beyond_64_bits_match_nothing(anonymous, params):  # noqa: F811
    # found by benchmarks/bench_fuzz.py: SQLite's driver raised OverflowError (a 500)
    response = anonymous.get("/collections/management_companies/items", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["features"] == []
