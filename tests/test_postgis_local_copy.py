"""The local GeoPackage copy of a PostGIS layer is made once per machine: workers (or servers) sharing a cache folder
find the copy another one made for the same version instead of reading the whole table again."""

from __future__ import annotations

import threading
from pathlib import Path

import pyogrio

from assets.stores.postgis import publish_postgis
from layers.catalog import load_catalog
from server.published.postgis_store import PostGISStore
from tests import pg
from tests.conftest import city_paths
from tests.test_postgis_publish import small_frame

postgres_cluster, postgres_url = pg.postgres_cluster, pg.postgres_url

CATALOG = load_catalog()
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
