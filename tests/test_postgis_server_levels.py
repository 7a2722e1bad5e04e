"""tests/test_server_levels.py again, with the server reading the PostGIS store only (GEOPORTAL_STORE_URL, no
GeoPackage in its published folder); answers are checked against the GeoPackages of the same pipeline run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import pg
from tests.server_fixtures import RunningServer, stop_server
from tests.test_server_levels import *  # noqa: F403 - the same tests, over the other store

postgres_cluster, published_city_postgis = pg.postgres_cluster, pg.published_city_postgis


@pytest.fixture(scope="module")
def server(published_city_postgis, tmp_path_factory) -> Iterator[RunningServer]:
    running = pg.database_only_server(published_city_postgis, tmp_path_factory.mktemp("postgis_levels"))
    yield running
    stop_server(running)
