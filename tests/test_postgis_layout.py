"""The PostGIS publisher lays a layer's rows out along a space-filling curve: a small bbox reads a few table pages,
not one per feature (the rows' fids are hashes, so fid order scatters neighbours over the whole table)."""

from __future__ import annotations

import numpy as np
import psycopg
import shapely

from assets.publish import stable_fid
from assets.stores.postgis import SCHEMA, publish_postgis
from layers.catalog import load_catalog
from tests import pg
from tests.test_postgis_publish import small_frame

postgres_cluster, postgres_url = pg.postgres_cluster, pg.postgres_url

COUNT = 20_000


def test_neighbours_share_table_pages(postgres_url: str) -> None:
    spec = load_catalog()["addresses"]
    ids = [f"a{n}" for n in range(COUNT)]
    frame = small_frame(spec, ids)
    rng = np.random.default_rng(5)
    frame["fid"] = [stable_fid(spec.id, i) for i in ids]
    frame = frame.set_geometry(shapely.points(rng.uniform(104.0, 104.5, COUNT), rng.uniform(52.2, 52.4, COUNT)))
    publish_postgis(frame, spec, postgres_url)
    with psycopg.connect(postgres_url) as connection:
        rows, pages = connection.execute(
            f"SELECT count(*), count(DISTINCT (ctid::text::point)[0]) FROM {SCHEMA}.addresses"
            " WHERE geom && ST_MakeEnvelope(104.2, 52.25, 104.25, 52.27, 4326)"
        ).fetchone()
        (total_pages,) = connection.execute(
            f"SELECT count(DISTINCT (ctid::text::point)[0]) FROM {SCHEMA}.addresses"
        ).fetchone()
    assert rows > 100
    # in fid order nearly every row of the box would sit on its own page
    assert pages <= max(10, rows // 10), (rows, pages, total_pages)
    with psycopg.connect(postgres_url) as connection:
        fids = {fid for (fid,) in connection.execute(f"SELECT fid FROM {SCHEMA}.addresses")}
    assert fids == set(frame["fid"])
