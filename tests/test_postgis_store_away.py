"""A PostGIS store that cannot be reached, with no local copy of a layer to fall back on: the feature routes answer
503 with an OGC exception saying so (it is the database, not the request nor a defect), never a 500 or a traceback."""

from __future__ import annotations

from pathlib import Path

from assets.stores.postgis import publish_postgis
from layers.catalog import load_catalog
from tests import pg
from tests.server_fixtures import STAFF_KEY
from tests.test_postgis_publish import small_frame

SPEC = load_catalog()["addresses"]
ITEMS = "/collections/addresses/items"


def test_a_database_away_without_a_local_copy_answers_503(tmp_path: Path) -> None:
    def publish(url: str) -> None:
        publish_postgis(small_frame(SPEC, ["kept"]), SPEC, url)

    with pg.server_on_own_cluster(tmp_path, "geoportal_away_503", publish) as (cluster, server):
        with server.client(STAFF_KEY) as client:
            assert client.get(ITEMS, params={"limit": 3}).status_code == 200
            cluster.stop()
            (tmp_path / "cache" / "postgis" / f"{SPEC.id}.gpkg").unlink()  # no copy left to serve from

            answers = [
                client.get(ITEMS, params={"limit": 5}),  # not the cached page
                client.get(ITEMS, params={"limit": 5, "f": "json"}),  # the store is tried again after a while
                client.get(f"{ITEMS}/12345"),
            ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["code"] == "ServiceUnavailable", body
            assert "cannot be reached" in body["description"], body
        assert "Traceback" not in server.log_text()
