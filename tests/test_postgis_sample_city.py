"""tests/test_sample_city.py again on the pipeline run with GEOPORTAL_STORE_URL set: the same counts, rejects and
values; test_postgis_publish proves that run's PostGIS tables equal its GeoPackages row by row."""

from __future__ import annotations

import pytest

from tests import pg
from tests.test_sample_city import *  # noqa: F403 - the same tests, on the run that also published to PostGIS

postgres_cluster, published_city_postgis = pg.postgres_cluster, pg.published_city_postgis


@pytest.fixture(scope="module")
def published_city(published_city_postgis):
    return published_city_postgis[0]
