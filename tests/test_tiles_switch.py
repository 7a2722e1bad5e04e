"""Tiles switch to a republished version once its tiles are prepared: until then every worker answers tiles of the
version before (no request waits for the comparison or for a changed tile's rendering), then every tile is what a
server started on an empty cache answers, with the same ETag; a preparation that does not end in
GEOPORTAL_SERVER_TILE_SWITCH_SECONDS is not waited for. GeoPackage and PostGIS, public and staff."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mapbox_vector_tile
import pytest

from server.tiles.render import TMS
from tests import pg
from tests.server_fixtures import STAFF_KEY, RunningServer, start_server, stop_server
from tests.test_tiles_carry import FID, NEW_POINT, OLD_POINT, publish, store, tile_list

postgres_cluster = pg.postgres_cluster
__all__ = ["postgres_cluster", "store"]
DEADLINE_SECONDS = 60
PROBE = "/tiles/0/0/0.pbf"  # the combined tile over everything: its ETag names the version of every layer


def fetch(server: RunningServer, paths: list[tuple[str, str]]) -> dict[tuple, tuple[str, bytes]]:
    """(level, path) -> the answer's ETag and MVT bytes (gzip asked for, as browsers do; httpx decodes it)."""

    def get(job: tuple[str, str]) -> tuple[tuple, tuple[str, bytes]]:
        level, path = job
        with server.client(STAFF_KEY if level == "staff" else None) as client:
            response = client.get(path, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, (job, response.text[:300])
        return job, (response.headers["etag"], response.content)

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(get, paths))


def combined(tiles: list[tuple[int, int, int]]) -> list[tuple[str, str]]:
    return [(level, f"/tiles/{z}/{x}/{y}.pbf") for level in ("public", "staff") for z, x, y in tiles]


def around_the_change() -> list[tuple[str, str]]:
    """The repairs' own tiles z12-z16 over the changed repair's old and new places: no request asked for them
    before the republication, so while it is prepared they are rendered, from the version before."""
    tiles = {TMS.tile(*point, z) for point in (OLD_POINT, NEW_POINT) for z in range(12, 17)}
    return [(level, f"/tiles/repairs/{t.z}/{t.x}/{t.y}.pbf") for level in ("public", "staff") for t in tiles]


def network_in(body: bytes) -> str | None:
    """The changed repair's network if the tile holds it, else None."""
    features = mapbox_vector_tile.decode(body).get("repairs", {}).get("features", [])
    return next((f["properties"]["network"] for f in features if f["id"] == FID), None)


def item_network(server: RunningServer) -> str | None:
    with server.client() as client:
        response = client.get(f"/collections/repairs/items/{FID}", params={"f": "json"})
    return response.json()["properties"]["network"] if response.status_code == 200 else None


def namespace(cache: Path) -> Path:
    """The shared tile store's folder of the server's namespace (server/tiles/shared.py)."""
    (found,) = {layers.parent.parent for layers in (cache / "tiles").glob("*/*/layers.json")}
    return found


@contextlib.contextmanager
def preparing_elsewhere(folder: Path) -> Iterator[None]:
    """What a worker preparing a new version's tiles holds: the namespace's switch lock. While this test holds it,
    the server's own workers cannot prepare the republication (they wait for 'another worker')."""
    with open(folder / ".switch.lock", "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def republish(folder: Path, env: dict[str, str], server: RunningServer) -> None:
    """The changed repair moves and changes network; returns once the server's features API serves it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        publish(folder, NEW_POINT, "water")
    deadline = time.monotonic() + DEADLINE_SECONDS
    while item_network(server) != "water":  # PostGIS: the next reading of the registry
        assert time.monotonic() < deadline, "the republication was never served"


def wait_for_switch(server: RunningServer, etag: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        with server.client() as client:
            if client.get(PROBE, headers={"Accept-Encoding": "gzip"}).headers["etag"] != etag:
                return
        assert time.monotonic() < deadline, "the tiles never switched to the new version"


def fresh_answers(paths, env: dict[str, str], log: Path, asked: list[tuple[str, str]]) -> dict:
    log.parent.mkdir()
    fresh = start_server(paths, log, env)  # an empty cache on the same data
    try:
        return fetch(fresh, asked)
    finally:
        stop_server(fresh)


def test_tiles_are_answered_from_the_version_before_until_the_new_ones_are_prepared(store, tmp_path):
    paths, folder, env = store
    asked = combined(tile_list())
    (tmp_path / "a").mkdir()
    served = start_server(paths, tmp_path / "a" / "server.log", {**env, "GEOPORTAL_SERVER_TILE_SWITCH_SECONDS": "3600"})
    try:
        before = fetch(served, asked)
        with preparing_elsewhere(namespace(tmp_path / "a" / "cache")):
            republish(folder, env, served)
            during = fetch(served, asked)  # cached: the same answers, the same ETags
            rendered = fetch(served, around_the_change())  # not cached: rendered now, from the version before
        wait_for_switch(served, before[("public", PROBE)][0])
        after = fetch(served, [*asked, *around_the_change()])
    finally:
        stop_server(served)

    changed = [key for key in before if during[key] != before[key]]
    assert not changed, f"{len(changed)} tiles answered at the new version before the switch, e.g. {changed[:3]}"
    for level in ("public", "staff"):
        old, new = (TMS.tile(*point, 16) for point in (OLD_POINT, NEW_POINT))
        old_tile, new_tile = (rendered[(level, f"/tiles/repairs/16/{t.x}/{t.y}.pbf")][1] for t in (old, new))
        assert (network_in(old_tile), network_in(new_tile)) == ("heat", None), level

    expected = fresh_answers(paths, env, tmp_path / "b" / "server.log", [*asked, *around_the_change()])
    different = [key for key in expected if after[key] != expected[key]]
    assert not different, f"{len(different)} tiles (body or ETag) differ from a fresh server's, e.g. {different[:3]}"
    new = TMS.tile(*NEW_POINT, 16)
    assert network_in(after[("public", f"/tiles/repairs/16/{new.x}/{new.y}.pbf")][1]) == "water"


def test_a_preparation_that_does_not_end_in_time_is_not_waited_for(store, tmp_path):
    paths, folder, env = store
    asked = [*combined([(z, *TMS.tile(*NEW_POINT, z)[:2]) for z in (0, 8, 14, 16)]), *around_the_change()]
    (tmp_path / "a").mkdir()
    served = start_server(paths, tmp_path / "a" / "server.log", {**env, "GEOPORTAL_SERVER_TILE_SWITCH_SECONDS": "1"})
    try:
        before = fetch(served, asked)
        with preparing_elsewhere(namespace(tmp_path / "a" / "cache")):  # and never done
            republish(folder, env, served)
            wait_for_switch(served, before[("public", PROBE)][0])
            after = fetch(served, asked)
    finally:
        stop_server(served)
    expected = fresh_answers(paths, env, tmp_path / "b" / "server.log", asked)
    different = [key for key in expected if after[key] != expected[key]]
    assert not different, f"{len(different)} tiles (body or ETag) differ from a fresh server's, e.g. {different[:3]}"
