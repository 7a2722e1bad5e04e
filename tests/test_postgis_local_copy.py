"""The local GeoPackage copy of a PostGIS layer is made once per machine: workers (or servers) sharing a cache folder
find the copy another one made for the same version instead of reading the whole table again. A lone bbox answered
from the copy (server.features.postgis_provider) is the table's answer, byte for byte."""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from assets.stores.postgis import publish_postgis
from layers.catalog import load_catalog
from server.features import point_reads
from server.features.crs import EPSG_URI
from server.features.point_reads import POINT_INDEXES
from server.features.postgis_provider import PostGISProvider
from server.features.provider import NotInstant
from server.ogcapi.config import feature_provider
from server.published.postgis_store import PostGISStore
from tests import pg
from tests.conftest import city_paths
from tests.test_point_index import catalog_repairs, many_repairs
from tests.test_postgis_publish import small_frame
from tests.test_provider import spec as crs

postgres_cluster, postgres_url = pg.postgres_cluster, pg.postgres_url

CATALOG = load_catalog()
DATABASES = itertools.count()
SPEC = CATALOG["addresses"]


def worker(url: str, base: Path) -> PostGISStore:
    """A server worker's store: its own state, the machine's cache folder."""
    return PostGISStore(CATALOG, city_paths(base / "city"), url, base / "cache")


def ids(path: Path) -> list[str]:
    return sorted(pyogrio.read_dataframe(path, columns=[SPEC.id_field])[SPEC.id_field])


def test_a_second_worker_uses_the_copy_the_first_one_made(postgres_url: str, tmp_path: Path) -> None:
    publish_postgis(small_frame(SPEC, ["a", "b"]), SPEC, postgres_url)
    first, second = worker(postgres_url, tmp_path), worker(postgres_url, tmp_path)
    assert SPEC.id in first.sync()
    copy = first.layer_path(SPEC.id)
    made = copy.stat().st_ino
    assert SPEC.id in second.sync()
    assert copy.stat().st_ino == made  # not read from PostGIS and written again
    assert ids(copy) == ["a", "b"]

    # a new publication: copied once more, and again the other worker finds it done
    publish_postgis(small_frame(SPEC, ["c"]), SPEC, postgres_url)
    assert SPEC.id in second.sync()
    remade = copy.stat().st_ino
    assert remade != made and ids(copy) == ["c"]
    assert SPEC.id in first.sync()
    assert copy.stat().st_ino == remade


def test_a_copy_that_went_missing_is_made_again(postgres_url: str, tmp_path: Path) -> None:
    publish_postgis(small_frame(SPEC, ["a"]), SPEC, postgres_url)
    first, second = worker(postgres_url, tmp_path), worker(postgres_url, tmp_path)
    assert SPEC.id in first.sync()
    first.layer_path(SPEC.id).unlink()  # an operator cleaning the cache folder: the stamp alone is not a copy
    assert SPEC.id in second.sync()
    assert ids(second.layer_path(SPEC.id)) == ["a"]


def test_workers_syncing_at_once_serve_one_good_copy(postgres_url: str, tmp_path: Path) -> None:
    publish_postgis(small_frame(SPEC, [f"id-{n}" for n in range(500)]), SPEC, postgres_url)
    stores = [worker(postgres_url, tmp_path) for _ in range(3)]
    served: list[list[str]] = []
    threads = [threading.Thread(target=lambda s=store: served.append(s.sync())) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert served == [[SPEC.id]] * 3
    assert ids(stores[0].layer_path(SPEC.id)) == sorted(f"id-{n}" for n in range(500))


# ---------------------------------------------------------------------- bboxes answered from the copy


@pytest.fixture
def repairs_copied(postgres_cluster, tmp_path, monkeypatch):
    """3,000 repairs with a value in every field (both levels'), published into PostGIS, and a worker's store that
    made its local copy and noted it, as the server's rebuild does; the server reads point indexes from 1 point."""
    monkeypatch.setattr(point_reads, "FEW_POINTS", 1)
    url = postgres_cluster.create_database(f"geoportal_copy_answers_{os.getpid()}_{next(DATABASES)}")
    spec, frame = catalog_repairs(many_repairs(3_000))
    rng = np.random.default_rng(3)
    frame["address"] = [f"ул. Ленина, {n}" if n % 7 else None for n in range(len(frame))]
    frame["contractor"] = rng.choice(["ООО «Теплосеть»", 'АО "Водоканал"', "ИП Петров\tи К°"], len(frame))
    frame["end_time"] = [
        None if n % 5 == 0 else start + pd.Timedelta(hours=int(h))
        for n, (start, h) in enumerate(zip(frame["start_time"], rng.integers(1, 500, len(frame)), strict=True))
    ]
    frame["contractor_phone"] = [f"+7 3952 {n:06d}" for n in range(len(frame))]
    frame["notes"] = [None if n % 3 else "ночные работы\nпо согласованию" for n in range(len(frame))]
    frame.loc[7, "geometry"] = shapely.Point()  # empty: in no bbox
    publish_postgis(frame, spec, url)
    store = worker(url, tmp_path)
    store.versions()  # the poll's note of the current versions
    assert store.sync() == [spec.id]
    return store, spec


@pytest.mark.parametrize("level", ["public", "internal"])
def test_a_bbox_from_the_local_copy_is_the_tables_answer_to_the_byte(repairs_copied, level: str) -> None:
    """The copy (read from the table, written by the pipeline's GeoPackage writer) renders every field and geometry
    as the table's SQL does: each page from the copy's point index equals the table's, the same JSON bytes."""
    store, layer = repairs_copied
    provider = PostGISProvider(feature_provider(layer, CATALOG, store, level))
    provider.read_ahead()
    assert POINT_INDEXES.wait_for_reads(60)
    rng = np.random.default_rng(5)
    asked = 0
    for _ in range(60):
        x, y, w = rng.uniform(104.18, 104.4), rng.uniform(52.24, 52.35), rng.choice([0.005, 0.02, 0.1])
        query = {"bbox": [x, y, x + w, y + w / 2], "offset": int(rng.integers(0, 5)), "limit": int(rng.integers(1, 20))}
        if rng.random() < 0.3:
            query["select_properties"] = ["status", "start_time"]
        if rng.random() < 0.3:
            query["skip_geometry"] = True
        if rng.random() < 0.3:
            query["crs_transform_spec"] = crs(EPSG_URI.format(code=rng.choice([3857, 4326])))
        copied = provider.query(instant=True, **query)
        table = provider._query(**query)
        assert json.dumps(copied, ensure_ascii=False) == json.dumps(table, ensure_ascii=False), query
        asked += table["numberReturned"]
    assert asked > 200
    with pytest.raises(NotInstant):  # not a lone bbox: the table's
        provider.query(instant=True, bbox=[104.2, 52.25, 104.3, 52.3], datetime_="2026-11-10/2026-11-20")
