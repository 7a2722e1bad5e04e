"""What a worker derives from a published version (the point index of a layer, the ranks of its time columns) is
read once per machine and kept on disk (server.published.stored_arrays): the other workers and the next start of
the server map it instead of reading the GeoPackage again (1M points: ~1 s of CPU per worker at every start, which
halved the tiles a restarted server answered in its first seconds)."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np

from server.features import point_reads
from server.features import provider as provider_module
from server.features.provider import GeoPackageProvider
from server.features.query import TimeWindow, window_counts
from server.features.time_ranks import read_ranks, stored_ranks
from server.published import stored_arrays as stored
from server.published.files import file_identity
from server.settings import get_server_settings
from tests.conftest import city_paths
from tests.server_fixtures import start_server, stop_server
from tests.test_point_index import DEADLINE_SECONDS, bbox_queries, check_answer, many_repairs, publish_repairs
from tests.test_provider import TABLE, definition, index_like_the_pipeline, repairs_frame, write_gpkg


def not_read_again(*_args):
    raise AssertionError("read from the GeoPackage again: the stored copy was not used")


def points_of(path):
    provider = GeoPackageProvider(definition(path))
    with provider._layer() as (_connection, meta, version):
        return point_reads.geopackage_points(provider.path, version, meta)


def test_the_point_index_is_read_once_and_then_mapped_from_the_store(tmp_path, monkeypatch):
    layer = write_gpkg(repairs_frame(seed=3), tmp_path / "repairs.gpkg")
    first = points_of(layer)
    assert first is not None and len(first) > 0
    monkeypatch.setattr(point_reads, "_read_geopackage_points", not_read_again)
    again = points_of(layer)  # as another worker, or the server started again, asks it
    for name in ("fids", "keys", "ys", "sorted_xs", "band_keys"):
        assert np.array_equal(getattr(again, name), getattr(first, name)), name
        assert isinstance(getattr(again, name).base, np.memmap)  # a view of the stored file, no copy
    assert (again.low_y, again.scale) == (first.low_y, first.scale)
    box = (104.1, 52.2, 104.3, 52.35)
    assert sorted(again.matching(box).tolist()) == sorted(first.matching(box).tolist())


def test_a_republished_layer_gets_its_own_index_and_the_one_before_is_removed(tmp_path):
    layer = write_gpkg(repairs_frame(seed=3), tmp_path / "repairs.gpkg")
    before = points_of(layer)
    write_gpkg(repairs_frame(seed=4, count=250), layer)  # published again: another file version
    after = points_of(layer)
    assert len(after) == 250 and len(before) == 400
    folder = get_server_settings().cache_path / "points"
    name = stored.digest((str(layer), TABLE))
    assert len(list(folder.glob(f"{name}-*"))) == 1  # the version before's arrays are gone from the disk


def test_time_ranks_are_read_once_and_then_taken_from_the_store(tmp_path):
    layer = write_gpkg(repairs_frame(seed=5), tmp_path / "repairs.gpkg")
    with sqlite3.connect(layer) as connection:
        ranks = read_ranks(connection, TABLE, "start_time", sample=16)
    identity = file_identity(layer)
    first = stored_ranks(str(layer), identity, TABLE, "start_time", lambda: ranks)
    again = stored_ranks(str(layer), identity, TABLE, "start_time", not_read_again)
    assert first == ranks and again == ranks


def test_nothing_to_keep_stores_nothing_and_an_unwritable_folder_builds_in_memory(tmp_path):
    assert stored.stored_arrays(tmp_path / "kept", "layer", "v1", lambda: None) is None
    assert not list((tmp_path / "kept").glob("layer-*"))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    arrays, values = stored.stored_arrays(blocked, "layer", "v1", lambda: ({"a": np.arange(3)}, {"n": 3}))
    assert arrays["a"].tolist() == [0, 1, 2] and values == {"n": 3}


def test_a_folder_of_another_layout_is_never_read(tmp_path):
    """A store written by an older server (the tile box indexes kept `<name>-<version>/` without the layout's mark)
    is built again and replaced, not read as if it were this layout."""
    old = tmp_path / "layer-v1"
    old.mkdir()
    (old / "index.json").write_text('{"dates": false}')
    arrays, values = stored.stored_arrays(tmp_path, "layer", "v1", lambda: ({"a": np.arange(2)}, {"n": 2}))
    assert arrays["a"].tolist() == [0, 1] and values == {"n": 2}
    assert not old.exists()


def test_whether_features_end_before_they_start_is_checked_once_on_the_machine(tmp_path):
    """The check that decides whether `datetime=` windows are counted by subtraction scans the table (1M: 0.2-0.3 s);
    every worker ran it at every start. A worker asking after another one did takes the stored answer: no SQL runs
    (its connection is closed here, so any statement would raise)."""
    layer = index_like_the_pipeline(write_gpkg(repairs_frame(seed=6), tmp_path / "repairs.gpkg"))
    provider = GeoPackageProvider(definition(layer))
    window = TimeWindow(provider.time_field, provider.time_end_field, None, None)
    with provider._layer() as (connection, meta, version):
        _, check = window_counts(meta, window)
        first = provider_module._ends_before_start(connection, (version, meta.table), window, check)
        expected = bool(connection.execute(check.sql, check.params).fetchone()[0])
    assert first == expected
    provider_module._ends_before_start_of.clear()  # as in another worker, or after a restart
    closed = sqlite3.connect(":memory:")
    closed.close()
    assert provider_module._ends_before_start(closed, (version, meta.table), window, check) == expected


def _workers_of(server) -> list[int]:
    """The worker processes `python -m server --workers N` spawned (its children but the resource tracker)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return [int(pid) for pid in children if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()]


def _mapping(pid: int, folder: Path) -> bool:
    return str(folder) in Path(f"/proc/{pid}/maps").read_text()


def test_a_restarted_server_maps_the_point_index_its_workers_stored(published_city, tmp_path):
    """`python -m server --workers 2` as the README starts it, over 20,000 points: the index is read ahead once and
    stored under the cache folder; after a restart every worker maps that very file (its inode unchanged: not read
    again from the GeoPackage) and answers bboxes from it as before."""
    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    frame = many_repairs(20_000)
    publish_repairs(frame, paths.published_path(TABLE))
    points = tmp_path / "cache" / "points"  # start_server's cache folder: beside the log
    queries = bbox_queries(11)[:12]

    def stored_fids() -> Path | None:
        found = [f for f in points.glob("*.v2") if (f / "index.json").exists()] if points.exists() else []
        return found[0] / "fids.npy" if found else None

    server = start_server(paths, tmp_path / "first.log", args=["--workers", "2"])
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (fids := stored_fids()) is None:
            assert time.monotonic() < deadline, "the point index was not stored"
            time.sleep(0.05)  # polling interval: the read-ahead thread stores it
        inode = fids.stat().st_ino
    finally:
        stop_server(server)
    server = start_server(paths, tmp_path / "second.log", args=["--workers", "2"])
    try:
        workers = _workers_of(server)
        assert len(workers) == 2
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not all(_mapping(pid, fids) for pid in workers):
            assert time.monotonic() < deadline, "a restarted worker did not map the stored index"
            time.sleep(0.05)  # polling interval: each worker's read-ahead maps it
        assert fids.stat().st_ino == inode  # the same file: nobody read the points again
        for query in queries:
            response = httpx.get(f"{server.url}/collections/{TABLE}/items", params=query, timeout=30)
            assert response.status_code == 200, response.text
            check_answer(response.json(), frame, query)
    finally:
        stop_server(server)
