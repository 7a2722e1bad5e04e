"""tests/test_server_access.py again, with the server reading the PostGIS store only (GEOPORTAL_STORE_URL, no
GeoPackage in its published folder); answers are checked against the GeoPackages of the same pipeline run."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from tests import pg
from tests.server_fixtures import RunningServer, stop_server
from tests.test_server_access import *  # noqa: F403 - the same tests, over the other store

postgres_cluster, published_city_postgis = pg.postgres_cluster, pg.published_city_postgis


@pytest.fixture(scope="module")
def server(published_city_postgis, tmp_path_factory) -> Iterator[RunningServer]:
    running = pg.database_only_server(published_city_postgis, tmp_path_factory.mktemp("postgis_access"))
    yield running
    stop_server(running)


def test_internal_fields_are_cut_out_of_the_public_download(anonymous, staff, server, tmp_path):  # noqa: F811
    """As in test_server_access, except the staff download is the server's own copy of the PostGIS table: the same
    rows as the pipeline's GeoPackage, not the same bytes."""
    published = published_frame(server.paths, "repairs")  # noqa: F405
    phones = published["contractor_phone"].dropna()
    assert len(phones)
    public = anonymous.get("/downloads/repairs.gpkg")
    full = staff.get("/downloads/repairs.gpkg")
    assert public.status_code == full.status_code == 200
    assert public.headers["content-type"] == "application/geopackage+sqlite3"
    assert not any(phone.encode() in public.content for phone in phones)  # not even in freed pages
    for name, response in (("public", public), ("full", full)):
        (tmp_path / f"{name}.gpkg").write_bytes(response.content)
    with sqlite3.connect(tmp_path / "full.gpkg") as db:
        rows = db.execute("SELECT fid, contractor_phone FROM repairs ORDER BY fid").fetchall()
    with sqlite3.connect(server.paths.published_path("repairs")) as db:
        assert rows == db.execute("SELECT fid, contractor_phone FROM repairs ORDER BY fid").fetchall()
    with sqlite3.connect(tmp_path / "public.gpkg") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(repairs)")}
        count = db.execute("SELECT count(*) FROM repairs").fetchone()[0]
    assert not columns & {"contractor_phone", "notes"} and "permit_id" in columns
    assert count == len(published)
