"""Tiles carried over a publication: after a republication that changes one feature, the server's shared tile store
keeps (hard-links) every tile the change cannot reach and renders only the others, and every tile it answers is
byte for byte what a server started on an empty cache answers, public and staff, GeoPackage and PostGIS."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mapbox_vector_tile
import numpy as np
import pytest
import shapely

from assets.publish import publish_geopackage, stable_fid
from layers.catalog import load_catalog
from server.tiles.carry import CHANGED_MIN
from server.tiles.index import ARRAYS, load_index
from server.tiles.render import TMS, connect
from server.tiles.vector import VectorTiles
from tests import pg
from tests.conftest import city_paths
from tests.server_fixtures import STAFF_KEY, RunningServer, start_server, stop_server
from tests.test_tiles import frame_for, repair

postgres_cluster = pg.postgres_cluster
SPEC = load_catalog()["repairs"]
OLD_POINT = (104.2800, 52.2900)  # where the changed repair was
NEW_POINT = (104.2950, 52.2990)  # where it is after the republication (another tile from z11 on)
CHANGED = "S-0"
FID = stable_fid("repairs", CHANGED)
COUNT = 400
DEADLINE_SECONDS = 60


def publish(folder: Path, point: tuple[float, float], network: str, swap_last: bool = False) -> None:
    """The pipeline's writer: a cluster round the changed repair (thinned cells with point_count at low zooms, and
    neighbours within a tile buffer of it) and a scatter over the city. `swap_last`: the last repair of the
    scatter ends and another appears in its place."""
    rng = np.random.default_rng(11)
    near = shapely.points(rng.normal(OLD_POINT[0], 0.004, 150), rng.normal(OLD_POINT[1], 0.003, 150))
    far = shapely.points(rng.uniform(104.2, 104.4, COUNT - 151), rng.uniform(52.2, 52.4, COUNT - 151))
    rows = [repair(CHANGED, network, "2026-01-01T00:00:00Z")]
    rows += [repair(f"S-{i}", "gas", "2026-01-01T00:00:00Z") for i in range(1, COUNT)]
    if swap_last:
        rows[-1] = repair("S-new", "water", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    publish_geopackage(frame_for("repairs", rows, [shapely.Point(point), *near, *far]), SPEC, folder / "repairs.gpkg")


def tile_list() -> list[tuple[int, int, int]]:
    """Every tile z0-z14 over the data, and z15-z16 round the changed repair's old and new place (its 3x3)."""
    tiles = {(t.z, t.x, t.y) for t in TMS.tiles(104.18, 52.18, 104.42, 52.42, zooms=list(range(15)))}
    for point in (OLD_POINT, NEW_POINT):
        for z in (15, 16):
            t = TMS.tile(*point, z)
            tiles |= {(z, t.x + dx, t.y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    return sorted(tiles)


def fetch_all(server: RunningServer, tiles: list[tuple[int, int, int]]) -> dict[tuple, bytes]:
    """(level, z, x, y) -> the tile's MVT bytes (gzip asked for, as browsers do; httpx decodes it)."""

    def get(job: tuple) -> tuple[tuple, bytes]:
        level, (z, x, y) = job
        with server.client(STAFF_KEY if level == "staff" else None) as client:
            response = client.get(f"/tiles/{z}/{x}/{y}.pbf", headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, (job, response.text[:300])
        return (level, z, x, y), response.content

    jobs = [(level, t) for level in ("public", "staff") for t in tiles]
    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(get, jobs))


def network_at(server: RunningServer, point: tuple[float, float]) -> str | None:
    t = TMS.tile(*point, 16)
    with server.client() as client:
        body = client.get(f"/tiles/repairs/{t.z}/{t.x}/{t.y}.pbf").content
    features = mapbox_vector_tile.decode(body).get("repairs", {}).get("features", [])
    return next((f["properties"]["network"] for f in features if f["id"] == FID), None)


def tile_files(cache: Path) -> dict[Path, int]:
    """Every tile file of the shared store (server/tiles/shared.py) and its inode."""
    return {path: path.stat().st_ino for path in (cache / "tiles").rglob("*-*-*-*.*") if path.suffix in (".mvt", ".gz")}


def level_of(folder: Path) -> str:
    """A folder's access level, by the attributes its layers.json says the tiles carry (staff see `notes`)."""
    layers = json.loads((folder / "layers.json").read_text())
    return "staff" if any("notes" in entry[-1] for entry in layers if len(entry) > 2) else "public"


@pytest.fixture(params=["geopackage", "postgis"])
def store(request, tmp_path: Path) -> Iterator[tuple[object, Path, dict]]:
    env: dict[str, str] = {}
    if request.param == "postgis":
        cluster = request.getfixturevalue("postgres_cluster")
        env["GEOPORTAL_STORE_URL"] = cluster.create_database(f"geoportal_carry_{tmp_path.name[-12:]}")
    paths = city_paths(tmp_path / "city")
    folder = paths.published_dir if request.param == "geopackage" else tmp_path / "writer"
    folder.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        publish(folder, OLD_POINT, "heat")
    yield paths, folder, env


def test_a_republication_renders_only_the_tiles_it_changes(store, tmp_path):
    paths, folder, env = store
    tiles = tile_list()
    (tmp_path / "a").mkdir()
    served = start_server(paths, tmp_path / "a" / "server.log", env)
    try:
        fetch_all(served, tiles)  # every tile of both levels in the shared store
        before = tile_files(tmp_path / "a" / "cache")
        assert before
        keep = tmp_path / "kept"  # links of the old files: their inodes cannot be reused by new tiles meanwhile
        keep.mkdir()
        for number, path in enumerate(before):
            os.link(path, keep / str(number))

        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            publish(folder, NEW_POINT, "water")  # the one repair moves and changes network
        deadline = time.monotonic() + DEADLINE_SECONDS
        while network_at(served, NEW_POINT) != "water":  # PostGIS: the next reading of the registry
            assert time.monotonic() < deadline, "the republication was never served"
        after = fetch_all(served, tiles)
        now = tile_files(tmp_path / "a" / "cache")
    finally:
        stop_server(served)

    (tmp_path / "b").mkdir()
    fresh = start_server(paths, tmp_path / "b" / "server.log", env)  # an empty cache on the same data
    try:
        expected = fetch_all(fresh, tiles)
    finally:
        stop_server(fresh)
    assert network_at_changed(expected) == ("water", None)
    different = [key for key in expected if after[key] != expected[key]]
    assert not different, f"{len(different)} tiles differ from a fresh render, e.g. {different[:5]}"

    # (b) the tiles the change cannot reach were carried over (the old files' inodes), the others rendered anew
    old_inodes = set(before.values())
    new_files = {path: inode for path, inode in now.items() if path not in before}
    carried = {path for path, inode in new_files.items() if inode in old_inodes}
    reached = {(z, *TMS.tile(*point, z)[:2]) for point in (OLD_POINT, NEW_POINT) for z in range(17)}
    for path in carried:
        z, x, y = (int(part) for part in path.name.split("-")[:3])
        assert (z, x, y) not in reached, f"tile {z}/{x}/{y} holds the changed repair yet was carried over"
    assert {level_of(path.parent) for path in carried} == {"public", "staff"}
    old_count = sum(1 for path in before if path.suffix == ".mvt")
    assert sum(1 for path in carried if path.suffix == ".mvt") >= old_count // 2, (len(carried), old_count)


def network_at_changed(tiles: dict[tuple, bytes]) -> tuple[str | None, str | None]:
    """The changed repair's network in the z16 tiles of its new and of its old place (public level)."""
    found = []
    for point in (NEW_POINT, OLD_POINT):
        t = TMS.tile(*point, 16)
        layer = mapbox_vector_tile.decode(tiles[("public", 16, t.x, t.y)]).get("repairs", {"features": []})
        found.append(next((f["properties"]["network"] for f in layer["features"] if f["id"] == FID), None))
    return found[0], found[1]


def worker(published: Path, shared: Path) -> VectorTiles:
    return VectorTiles(load_catalog(), lambda layer_id: published / f"{layer_id}.gpkg", shared_dir=shared)


def test_the_new_box_index_is_the_old_one_updated_as_a_scan_would_build_it(tmp_path):
    published, shared = tmp_path / "published", tmp_path / "tiles"
    published.mkdir()
    publish(published, OLD_POINT, "heat")
    tiles = worker(published, shared)
    low, far = TMS.tile(*OLD_POINT, 9), TMS.tile(104.39, 52.21, 15)
    tiles.tile(low.z, low.x, low.y)  # thinned: the box index is built and stored
    tiles.tile(far.z, far.x, far.y)
    publish(published, NEW_POINT, "water", swap_last=True)  # one changed, one ended, one appeared
    tiles.tile(far.z, far.x, far.y)  # carried over: the new version's index derived from the old one's
    (stored,) = (shared / "indexes").glob("*-*")
    db = connect(published / "repairs.gpkg")
    try:
        scanned = load_index(db, SPEC)
    finally:
        db.close()
    for name in ARRAYS:
        derived = np.load(stored / f"{name}.npy") if (stored / f"{name}.npy").exists() else None
        expected = getattr(scanned, name)
        assert (derived is None) == (expected is None) and (derived is None or np.array_equal(derived, expected))


def test_without_the_previous_version_at_hand_every_tile_is_rendered_anew(tmp_path):
    published, shared = tmp_path / "published", tmp_path / "tiles"
    published.mkdir()
    publish(published, OLD_POINT, "heat")
    tiles = worker(published, shared)
    far = TMS.tile(104.39, 52.21, 12)  # a few repairs, none of them the changed one
    assert tiles.tile(far.z, far.x, far.y).body
    before = tile_files(tmp_path)
    for kept in (shared / "versions").iterdir():  # the hard link of the file served before: gone
        kept.unlink()
    publish(published, NEW_POINT, "water")
    answer = worker(published, shared).tile(far.z, far.x, far.y)
    assert answer.body == worker(published, tmp_path / "empty").tile(far.z, far.x, far.y).body
    rendered = {path: inode for path, inode in tile_files(tmp_path).items() if path not in before}
    assert rendered and not set(rendered.values()) & set(before.values())


def test_a_republication_that_changes_most_features_renders_every_tile_anew(tmp_path):
    """Over CHANGED_SHARE of a layer (and CHANGED_MIN features) changed: nearly every tile is dirty anyway."""
    published, shared = tmp_path / "published", tmp_path / "tiles"
    published.mkdir()
    count = CHANGED_MIN + 200
    rng = np.random.default_rng(3)
    points = list(shapely.points(rng.uniform(104.2, 104.4, count), rng.uniform(52.2, 52.4, count)))

    def publish_all(network: str, changed: int) -> None:
        rows = [repair(f"M-{i}", network if i < changed else "gas", "2026-01-01T00:00:00Z") for i in range(count)]
        publish_geopackage(frame_for("repairs", rows, points), SPEC, published / "repairs.gpkg")

    far = TMS.tile(104.39, 52.21, 12)
    publish_all("gas", 0)
    assert worker(published, shared).tile(far.z, far.x, far.y).body
    for changed, carried in ((1, True), (count, False)):  # one repair (elsewhere), then every one changes network
        before = tile_files(tmp_path)
        publish_all("water" if carried else "heat", changed)
        answer = worker(published, shared).tile(far.z, far.x, far.y)
        assert answer.body == worker(published, tmp_path / f"empty{changed}").tile(far.z, far.x, far.y).body
        rendered = {path: inode for path, inode in tile_files(tmp_path).items() if path not in before}
        assert rendered and bool(set(rendered.values()) & set(before.values())) == carried
