"""The throw-away PostgreSQL cluster the PostGIS and Dagster-on-PostgreSQL tests run against (tests/pg.py)."""

from __future__ import annotations

import psycopg

from tests import pg
from tests.pg import Cluster

postgres_cluster, postgres_url = pg.postgres_cluster, pg.postgres_url  # the fixtures this module uses


def test_cluster_answers_with_postgis_on_a_private_port(postgres_url: str, postgres_cluster: Cluster) -> None:
    with psycopg.connect(postgres_url) as connection:
        (version,) = connection.execute("SELECT postgis_lib_version()").fetchone()
        (data_directory,) = connection.execute("SHOW data_directory").fetchone()
        (port,) = connection.execute("SHOW port").fetchone()
        (area,) = connection.execute(
            "SELECT ST_Area(ST_Transform(ST_MakeEnvelope(104.2, 52.2, 104.3, 52.3, 4326), 3857))"
        ).fetchone()
    assert version.startswith("3.")
    # the cluster lives in its own temporary folder, not in the system's /var/lib/postgresql
    assert data_directory == str(postgres_cluster.data)
    assert int(port) == postgres_cluster.port != 5432
    assert area > 0


def test_each_test_gets_its_own_database(postgres_url: str, postgres_cluster: Cluster) -> None:
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE only_here (id integer)")
    other = postgres_cluster.create_database("geoportal_other")
    with psycopg.connect(other) as connection:
        (count,) = connection.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'").fetchone()
    assert count == 0
