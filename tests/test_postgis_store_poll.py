"""The PostGIS store reads the registry's versions in the background: a request never waits on that query (it used
to run on the event loop for every request), and a new publication is still served within a second or so."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg

from assets.stores.postgis import SCHEMA, publish_postgis
from layers.catalog import load_catalog
from tests import pg
from tests.conftest import city_paths
from tests.server_fixtures import STAFF_KEY, start_server, stop_server
from tests.test_postgis_publish import small_frame

postgres_cluster, postgres_url = pg.postgres_cluster, pg.postgres_url

SPEC = load_catalog()["addresses"]
ITEMS = "/collections/addresses/items"
HANG_SECONDS = 10  # a request the registry lock held back would still be waiting after this
DEADLINE_SECONDS = 60


def ids(client: httpx.Client) -> list[str]:
    response = client.get(ITEMS, params={"f": "json"})
    assert response.status_code == 200, response.text
    return sorted(f["properties"][SPEC.id_field] for f in response.json()["features"])


def test_requests_are_answered_while_the_registry_is_locked_and_a_publication_is_seen_after(
    postgres_url: str, tmp_path: Path
) -> None:
    publish_postgis(small_frame(SPEC, ["first"]), SPEC, postgres_url)
    server = start_server(city_paths(tmp_path / "city"), tmp_path / "server.log", {"GEOPORTAL_STORE_URL": postgres_url})
    try:
        with server.client(STAFF_KEY) as client:
            assert ids(client) == ["first"]
            with psycopg.connect(postgres_url) as locker, locker.transaction():
                # what a long migration or a stuck session would do: every read of the registry waits
                locker.execute(f"LOCK TABLE {SCHEMA}.publications IN ACCESS EXCLUSIVE MODE")
                headers = {"X-API-Key": STAFF_KEY}
                with httpx.Client(base_url=server.url, headers=headers, timeout=HANG_SECONDS) as waiting:
                    for _ in range(3):
                        assert ids(waiting) == ["first"]
            publish_postgis(small_frame(SPEC, ["second", "third"]), SPEC, postgres_url)
            deadline = time.monotonic() + DEADLINE_SECONDS
            while (seen := ids(client)) != ["second", "third"] and time.monotonic() < deadline:
                time.sleep(0.05)  # polling interval
            assert seen == ["second", "third"]
        assert "Traceback" not in server.log_text()
    finally:
        stop_server(server)
