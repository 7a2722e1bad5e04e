"""The tile store the workers share on disk: a tile rendered by one worker is answered by another (another process)
without rendering; a publication, an access level or a time window never meets another's bytes; the combined tileset
is pre-rendered once per publication, not once per worker; the box index low zooms are thinned from is built once per
publication and memory-mapped by every worker."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from server.memory import LARGE_BUILDS
from server.tiles.index import load_index
from server.tiles.vector import VectorTiles
from tests.test_tiles import (
    CATALOG,
    CLUSTER_SIZE,
    FID_A,
    FID_B,
    POINT_A,
    TMS,
    features_by_id,
    publish_repairs,
    tile_of,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def published(tmp_path) -> Path:
    folder = tmp_path / "published"
    folder.mkdir()
    publish_repairs(folder)
    return folder


def worker(published: Path, shared: Path) -> VectorTiles:
    """What each server worker holds: its own LRU, the one shared folder."""
    return VectorTiles(CATALOG, lambda layer_id: published / f"{layer_id}.gpkg", shared_dir=shared)


def ask_another_process(published: Path, shared: Path, z: int, x: int, y: int, **options) -> dict | None:
    """`cached_tile` (which never renders) in a fresh interpreter, as a second worker process would ask it."""
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from layers.catalog import load_catalog
        from server.tiles.vector import VectorTiles
        published, shared = Path({str(published)!r}), Path({str(shared)!r})
        tiles = VectorTiles(load_catalog(), lambda layer: published / f"{{layer}}.gpkg", shared_dir=shared)
        tile = tiles.cached_tile({z}, {x}, {y}, **json.loads(sys.argv[1]))
        print(json.dumps(None if tile is None else {{"body": tile.body.hex(), "headers": tile.headers}}))
    """)
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps(options)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout.splitlines()[-1])


def test_another_worker_answers_a_tile_the_first_rendered_byte_for_byte(published, tmp_path):
    shared = tmp_path / "tiles"
    t = tile_of(POINT_A, 15)
    first = worker(published, shared)
    for gzip in (False, True):
        tile = first.tile(t.z, t.x, t.y, gzip=gzip)
        other = ask_another_process(published, shared, t.z, t.x, t.y, gzip=gzip)
        assert other == {"body": tile.body.hex(), "headers": tile.headers}  # same bytes, ETag and encoding
    assert ask_another_process(published, shared, t.z, t.x + 1, t.y) is None  # nobody rendered that one


def test_a_new_publication_is_never_answered_from_the_store(published, tmp_path):
    shared = tmp_path / "tiles"
    t = tile_of(POINT_A, 15)
    first, second = worker(published, shared), worker(published, shared)
    old = first.tile(t.z, t.x, t.y)
    assert features_by_id(old.body, "repairs")[FID_A]["properties"]["network"] == "heat"
    publish_repairs(published, network_of_a="water")  # a new file (renamed into place)
    assert first.cached_tile(t.z, t.x, t.y) is None and second.cached_tile(t.z, t.x, t.y) is None
    new = second.tile(t.z, t.x, t.y)
    assert features_by_id(new.body, "repairs")[FID_A]["properties"]["network"] == "water"
    assert first.cached_tile(t.z, t.x, t.y).body == new.body and new.etag != old.etag
    # the next pre-rendering removes the replaced version's tiles
    folders = lambda: {p.name for p in first.shared().folder.iterdir()}  # noqa: E731
    before = folders()
    first.refresh(max_zoom=3)
    assert len(before - folders()) == 1  # the old version's folder; the new one's tiles stay
    assert worker(published, shared).cached_tile(t.z, t.x, t.y).body == new.body


def test_staff_and_time_filtered_tiles_are_apart_from_the_public_ones(published, tmp_path):
    shared = tmp_path / "tiles"
    t = tile_of(POINT_A, 15)
    first, second = worker(published, shared), worker(published, shared)
    staff = first.tile(t.z, t.x, t.y, staff=True)
    assert "notes" in features_by_id(staff.body, "repairs")[FID_A]["properties"]
    in_march = first.tile(t.z, t.x, t.y, datetime="2025-03-01")
    assert FID_A not in features_by_id(in_march.body, "repairs")  # R-1 ended on 20 January
    assert second.cached_tile(t.z, t.x, t.y) is None  # neither is the public, unfiltered tile
    public = second.tile(t.z, t.x, t.y)
    assert "notes" not in features_by_id(public.body, "repairs")[FID_A]["properties"]
    assert second.cached_tile(t.z, t.x, t.y, staff=True).body == staff.body
    # windows are as many as requests make up: not kept on disk, only in the worker that rendered one
    assert second.cached_tile(t.z, t.x, t.y, datetime="2025-03-01") is None
    assert first.cached_tile(t.z, t.x, t.y, datetime="2025-03-01").body == in_march.body


def test_only_the_tilesets_tiles_are_kept_on_disk(published, tmp_path):
    """What requests can make up without bound (time windows, empty tiles anywhere in the world, overzoom past the
    advertised maxzoom) stays in each worker's memory; the disk holds at most the data's tiles per publication."""
    shared = tmp_path / "tiles"
    first = worker(published, shared)
    here, deep, far = tile_of(POINT_A, 15), tile_of(POINT_A, first.maxzoom + 2), TMS.tile(-70.0, -40.0, 12)
    assert first.tile(here.z, here.x, here.y, datetime="2025-01-15").body
    assert first.tile(deep.z, deep.x, deep.y).body and first.tile(far.z, far.x, far.y).body == b""
    assert not list(shared.rglob("*.mvt"))
    first.tile(here.z, here.x, here.y)
    assert len(list(shared.rglob("*.mvt"))) == 1


def test_an_empty_tile_over_the_data_is_kept_on_disk_and_another_worker_answers_it(published, tmp_path):
    """A map asks the empty tiles between its features again and again; rendered each time (the LRU's churn) each
    took a rendering turn behind the others (warm tiles, 32 MB LRU, 1M points: p95 120-172 ms). Over the data's box
    it is kept as an empty file, answered by another process without rendering; far away it is not (above)."""
    shared = tmp_path / "tiles"
    first = worker(published, shared)
    west, south, east, north = first.bounds()
    between = TMS.tile(104.32, 52.275, 15)  # between POINT_A and the cluster: inside the box, no feature near
    assert west < 104.32 < east and south < 52.275 < north
    assert first.tile(between.z, between.x, between.y).body == b""
    assert [path.stat().st_size for path in shared.rglob("*.mvt")] == [0]
    for gzip in (False, True):
        answer = ask_another_process(published, shared, between.z, between.x, between.y, gzip=gzip)
        assert answer is not None, "the other worker would render it"
        assert answer["body"] == ""
        assert answer["headers"] == first.tile(between.z, between.x, between.y, gzip=gzip).headers
    # asked as a file (a server that sends files): the empty file itself, opened once, never read into the LRU
    second = worker(published, shared)
    stored, _ = second.looked_up(between.z, between.x, between.y, as_file=True)
    assert stored is not None and stored.file is not None and stored.file.size == 0 and stored.body == b""
    os.close(stored.file.fd)
    assert len(second.cache) == 0


def test_the_combined_tileset_is_prerendered_once_for_all_workers(published, tmp_path):
    shared = tmp_path / "tiles"
    first, second = worker(published, shared), worker(published, shared)
    assert first.refresh(max_zoom=6) and not second.refresh(max_zoom=6)
    restarted = worker(published, shared)
    assert not restarted.refresh(max_zoom=6)  # a server started again finds them rendered
    for t in TMS.tiles(*second.bounds(), zooms=list(range(7))):
        for gzip in (False, True):
            assert second.cached_tile(t.z, t.x, t.y, gzip=gzip) == first.tile(t.z, t.x, t.y, gzip=gzip)
    publish_repairs(published, network_of_a="water")
    assert second.refresh(max_zoom=6)  # whichever worker comes first renders the new publication


def test_the_box_index_is_built_once_per_publication_and_mapped_by_every_worker(published, tmp_path):
    shared = tmp_path / "tiles"
    first, second = worker(published, shared), worker(published, shared)
    t = tile_of(POINT_A, 10)  # thinned: read from the box index
    first.tile(t.z, t.x, t.y, ["repairs"])
    second.tile(t.z, t.x, t.y, ["repairs"], datetime="2025-01-15")  # not in the tile store: rendered, from the index
    (stored,) = (shared / "indexes").glob("*-*")
    for service in (first, second):
        ((_, index),) = service.indexes._indexes.values()
        assert isinstance(index.ids.base, np.memmap) and len(index.ids) == CLUSTER_SIZE + 2  # a view of the file
    publish_repairs(published, network_of_a="water")
    march = second.tile(t.z, t.x, t.y, ["repairs"], datetime="2025-03-01")  # R-1 had ended, R-2 had begun
    assert FID_A not in features_by_id(march.body, "repairs") and FID_B in features_by_id(march.body, "repairs")
    (replaced,) = (shared / "indexes").glob("*-*")
    assert replaced != stored  # the new publication's; the old one's removed


def test_prerendering_into_the_shared_store_leaves_the_lru_to_the_tiles_requests_ask(published, tmp_path):
    """The worker that pre-renders keeps the tiles on disk only: in its LRU they held 32 MB of tiles nobody asked it
    for (1M points: the pre-rendering worker's steady memory). Without a shared store the LRU is where they go."""
    shared = worker(published, tmp_path / "tiles")
    assert shared.refresh(max_zoom=6) and len(shared.cache) == 0
    t = tile_of(POINT_A, 6)
    asked = shared.cached_tile(t.z, t.x, t.y, gzip=True)  # from the store, as a request's hit
    assert asked is not None and asked.body and len(shared.cache) == 1
    alone = VectorTiles(CATALOG, lambda layer_id: published / f"{layer_id}.gpkg")
    assert alone.refresh(max_zoom=6)
    assert len(alone.cache) == len(list(TMS.tiles(*alone.bounds(), zooms=list(range(7)))))
    assert alone.cached_tile(t.z, t.x, t.y).body == shared.tile(t.z, t.x, t.y).body  # type: ignore[union-attr]


def test_a_box_index_build_waits_for_its_turn_with_the_reads_that_keep_objects(published):
    """A box index build (a layer's rows alive at once) and the point index and time ranks reads (objects kept for
    long) never run at once in a worker (server.memory.LARGE_BUILDS): the build waits while a read holds the turn."""
    db = sqlite3.connect(published / "repairs.gpkg", check_same_thread=False)
    built: list = []
    builder = threading.Thread(target=lambda: built.append(load_index(db, CATALOG["repairs"])))
    with LARGE_BUILDS.turn():
        builder.start()
        builder.join(1.0)  # a few hundred rows: built in milliseconds, were it not waiting
        assert builder.is_alive() and not built
    builder.join(60)
    assert not builder.is_alive() and len(built[0].ids) == CLUSTER_SIZE + 2
