"""The PostGIS store reads the registry's versions in the background: a request never waits on that query (it used
to run on the event loop for every request), and a new publication is still served within a second or so."""

from __future__ import annotations

import subprocess
import sys
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
ROOT = Path(__file__).resolve().parent.parent  # the project, where the script imports from
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


SIGNATURE_SCRIPT = """
import sys, time
from pathlib import Path
from assets.stores.postgis import publish_postgis
from layers.catalog import load_catalog
from server.published.postgis_store import PostGISStore
from tests.conftest import city_paths
from tests.test_postgis_publish import small_frame

url, folder = sys.argv[1], Path(sys.argv[2])


def unchanged_over_polls(store, signature):
    # asked every 50 ms over five of the poller's 0.2 s rounds, nothing published: always the same object
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        assert store.signature() is signature, "a new signature object without a change"
        time.sleep(0.05)

spec = load_catalog()["addresses"]
paths = city_paths(folder / "city")
paths.published_dir.mkdir(parents=True)  # where the raster products are watched, as a published city has it
store = PostGISStore(load_catalog(), paths, url, folder / "cache")
first = store.signature()
unchanged_over_polls(store, first)
publish_postgis(small_frame(spec, ["second"]), spec, url)
deadline = time.monotonic() + 60
while (now := store.signature()) == first and time.monotonic() < deadline:
    time.sleep(0.05)  # polling interval
assert now != first and now[0] == ("postgis", *store.versions()), (first, now)
unchanged_over_polls(store, now)
print("signature ok")
"""


def test_the_stores_signature_is_one_object_until_a_publication_changes_it(postgres_url: str, tmp_path: Path) -> None:
    """Asked on every request: the same object while nothing changed, over many polls of the registry (a request's
    check is then known by identity: server.ogcapi.site.LiveSite.file_versions), a new one naming the new version
    after a publication. In a process of its own, whose registry poller ends with it."""
    publish_postgis(small_frame(SPEC, ["first"]), SPEC, postgres_url)
    run = subprocess.run(
        [sys.executable, "-c", SIGNATURE_SCRIPT, postgres_url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0 and "signature ok" in run.stdout, run.stderr[-3000:]
