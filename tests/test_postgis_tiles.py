"""Tiles from PostGIS (ST_AsMVT, server/tiles/postgis_render.py) against tiles from the same publication's GeoPackages
(server/tiles/render.py): the same features per layer, the same attributes and point_count, geometries within one
tile unit; polygons within the simplification tolerance (see `assert_same_tile`)."""

from __future__ import annotations

from pathlib import Path

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from assets.publish import publish_geopackage
from layers.catalog import load_catalog
from layers.settings import PathSettings
from server.published.postgis_store import PostGISStore
from server.tiles.render import TMS, TilePolicy
from server.tiles.vector import VectorTiles
from tests.pg import postgres_cluster, postgres_url, published_city_postgis  # noqa: F401 - fixtures
from tests.test_tiles import frame_for, repair

CATALOG = load_catalog()
ZOOMS = list(range(8, 15))


def decode(body: bytes) -> dict:
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})


def pair(published_dir: Path, url: str, cache: Path) -> tuple[VectorTiles, VectorTiles]:
    """The same publication served by the GeoPackage backend and by the PostGIS store's backend."""
    files = VectorTiles(CATALOG, lambda layer_id: published_dir / f"{layer_id}.gpkg", cache_bytes=0)
    store = PostGISStore(CATALOG, PathSettings(published_dir=published_dir), url, cache)
    return files, VectorTiles(CATALOG, backend=store.tile_backend(), cache_bytes=0)


def assert_same_tile(expected: bytes, actual: bytes, z: int, where: str) -> int:
    """Same source-layers, feature ids in the same (draw) order, properties (point_count included), geometries within
    1 tile unit.

    Polygons are simplified by GEOS's TopologyPreservingSimplifier on both sides, but shapely bundles a newer GEOS
    (3.12+ may drop a ring's start vertex) than Debian's PostGIS (3.11): both stay within the tolerance of the
    true shape, so they are within tolerance + 1 unit of each other, and a polygon under about a pixel may
    survive the rounding on one side only. Returns the number of features compared."""
    policy = TilePolicy()
    tolerance = policy.simplify_px * policy.extent / 256
    a, b = decode(expected), decode(actual)
    assert set(a) == set(b), where
    compared = 0
    for layer in a:
        polygons = CATALOG[layer].geometry_type == "MultiPolygon"
        fa = {f["id"]: f for f in a[layer]["features"]}
        fb = {f["id"]: f for f in b[layer]["features"]}
        if polygons:
            for only in (set(fa) - set(fb), set(fb) - set(fa)):
                for fid in only:
                    g = shape((fa.get(fid) or fb[fid])["geometry"])
                    x0, y0, x1, y1 = g.bounds
                    assert max(x1 - x0, y1 - y0) <= 2, f"{where} {layer} {fid}: {g.wkt[:200]}"
        else:
            assert set(fa) == set(fb), f"{where} {layer}: {set(fa) ^ set(fb)}"
        common = set(fa) & set(fb)
        order = [[f["id"] for f in tile[layer]["features"] if f["id"] in common] for tile in (a, b)]
        assert order[0] == order[1], f"{where} {layer}: not the same draw order"
        for fid in common:
            assert fa[fid]["properties"] == fb[fid]["properties"], f"{where} {layer} {fid}"
            ga, gb = shape(fa[fid]["geometry"]), shape(fb[fid]["geometry"])
            bound = tolerance + 1 if polygons else 1
            assert ga.hausdorff_distance(gb) <= bound + 1e-9, f"{where} {layer} {fid}: {ga.wkt[:200]} {gb.wkt[:200]}"
            compared += 1
    return compared


@pytest.fixture(scope="module")
def city_pair(published_city_postgis, tmp_path_factory):  # noqa: F811
    paths, url = published_city_postgis
    return pair(paths.published_dir, url, tmp_path_factory.mktemp("copies"))


@pytest.mark.parametrize("staff", [False, True], ids=["public", "staff"])
def test_sample_city_tiles_z8_z14_are_the_same_from_both_stores(city_pair, staff):
    files, postgis = city_pair
    compared = tiles = 0
    for tile in TMS.tiles(*files.bounds(staff=staff), zooms=ZOOMS):
        expected = files.tile(tile.z, tile.x, tile.y, staff=staff).body
        actual = postgis.tile(tile.z, tile.x, tile.y, staff=staff).body
        compared += assert_same_tile(expected, actual, tile.z, f"{tile} staff={staff}")
        tiles += 1
    assert tiles > 100 and compared > 1000


def test_public_tiles_carry_no_internal_field_or_layer(city_pair):
    files, postgis = city_pair
    internal_layers = {s.id for s in CATALOG.values() if s.access != "public"}
    internal_fields = {f.name for s in CATALOG.values() for f in s.fields if f.internal}
    seen = set()
    for tile in TMS.tiles(*files.bounds(), zooms=[12]):
        for layer, content in decode(postgis.tile(tile.z, tile.x, tile.y).body).items():
            assert layer not in internal_layers
            for feature in content["features"]:
                seen.update(feature["properties"])
    assert seen and not (seen & (internal_fields - {"point_count"}))


@pytest.mark.parametrize("layer_id", ["repairs", "road_closures", "outages", "election_districts"])
def test_per_layer_tiles_are_the_same(city_pair, layer_id):
    files, postgis = city_pair
    for tile in TMS.tiles(*files.bounds([layer_id]), zooms=[10, 13, 14]):
        expected = files.tile(tile.z, tile.x, tile.y, [layer_id]).body
        actual = postgis.tile(tile.z, tile.x, tile.y, [layer_id]).body
        assert set(decode(actual)) <= {layer_id}
        assert_same_tile(expected, actual, tile.z, f"{tile} {layer_id}")


@pytest.mark.parametrize(
    "moment", ["2026-11-24", "2026-11-20T00:00:00Z/2026-11-22T00:00:00Z", "../2026-01-01", "2027-01-01/.."]
)
def test_datetime_filtered_tiles_are_the_same(city_pair, moment):
    files, postgis = city_pair
    for tile in TMS.tiles(*files.bounds(), zooms=[9, 12, 14]):
        expected = files.tile(tile.z, tile.x, tile.y, datetime=moment).body
        actual = postgis.tile(tile.z, tile.x, tile.y, datetime=moment).body
        assert_same_tile(expected, actual, tile.z, f"{tile} {moment}")


def test_empty_tile_is_an_empty_body_from_both(city_pair):
    files, postgis = city_pair
    far = TMS.tile(-70.0, -40.0, 12)  # nowhere near the city
    assert files.tile(far.z, far.x, far.y).body == postgis.tile(far.z, far.x, far.y).body == b""


@pytest.fixture(scope="module")
def synthetic(postgres_cluster, tmp_path_factory):  # noqa: F811
    """4,000 repairs (a dense cluster and a scatter, instants and periods) and 2,000 closures (random polylines),
    published to GeoPackages and to PostGIS by the pipeline's own writers."""
    url = postgres_cluster.create_database("geoportal_synthetic_tiles")
    folder = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(11)
    n_points, n_lines = 4000, 2000
    rows = [
        repair(f"S-{i}", ["heat", "water", "gas"][i % 3], f"2026-0{1 + i % 9}-1{i % 10}T0{i % 10}:00:00Z",
               None if i % 4 == 0 else f"2026-1{i % 3}-2{i % 8}T12:30:00Z")
        for i in range(n_points)
    ]  # fmt: skip
    xs = np.concatenate([rng.uniform(104.25, 104.26, n_points // 2), rng.uniform(104.1, 104.5, n_points // 2)])
    ys = np.concatenate([rng.uniform(52.25, 52.255, n_points // 2), rng.uniform(52.2, 52.4, n_points // 2)])
    closures = [
        {"closure_id": f"C-{i}", "road_name": f"ул. {i}", "closure_type": "partial", "feed": "municipal",
         "start_time": f"2026-0{1 + i % 9}-01T00:00:00Z", "end_time": None if i % 5 else "2026-12-31T00:00:00Z",
         "has_detour": bool(i % 2)}
        for i in range(n_lines)
    ]  # fmt: skip
    starts = np.column_stack([rng.uniform(104.1, 104.5, n_lines), rng.uniform(52.2, 52.4, n_lines)])
    lines = [
        shapely.LineString(start + np.cumsum(rng.normal(0, 0.0005 * (1 + i % 7), (3 + i % 40, 2)), axis=0))
        for i, start in enumerate(starts)
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOPORTAL_STORE_URL", url)
        publish_geopackage(frame_for("repairs", rows, list(shapely.points(xs, ys))), CATALOG["repairs"],
                           folder / "repairs.gpkg")  # fmt: skip
        publish_geopackage(frame_for("road_closures", closures, lines), CATALOG["road_closures"],
                           folder / "road_closures.gpkg")  # fmt: skip
    return pair(folder, url, tmp_path_factory.mktemp("synthetic_copies"))


@pytest.mark.parametrize("datetime", [None, "2026-05-01T00:00:00Z/2026-10-01T00:00:00Z"], ids=["all", "window"])
def test_synthetic_points_and_lines_z8_z14_are_the_same(synthetic, datetime):
    files, postgis = synthetic
    clusters = 0
    for tile in TMS.tiles(104.1, 52.2, 104.5, 52.4, zooms=ZOOMS):
        if tile.z == 14 and (tile.x + tile.y) % 3:  # a third of z14's ~700 tiles: they hold no thinning
            continue
        expected = files.tile(tile.z, tile.x, tile.y, staff=True, datetime=datetime).body
        actual = postgis.tile(tile.z, tile.x, tile.y, staff=True, datetime=datetime).body
        assert_same_tile(expected, actual, tile.z, f"{tile} {datetime}")
        points = decode(actual).get("repairs", {}).get("features", [])
        clusters += sum(f["properties"].get("point_count", 1) > 1 for f in points)
    assert clusters > 0  # thinning happened, so point_count was compared too


def test_tiles_come_from_the_local_copies_while_the_database_is_away(tmp_path):
    from tests import pg

    reason = pg.missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = pg._started_cluster()  # its own: this test stops it
    try:
        url = cluster.create_database("away")
        rows = [repair(f"A-{i}", "heat", "2026-01-01T00:00:00Z") for i in range(50)]
        points = list(shapely.points(np.linspace(104.27, 104.29, 50), np.linspace(52.28, 52.30, 50)))
        (tmp_path / "writer").mkdir()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GEOPORTAL_STORE_URL", url)
            publish_geopackage(frame_for("repairs", rows, points), CATALOG["repairs"], tmp_path / "writer/repairs.gpkg")
        store = PostGISStore(CATALOG, PathSettings(published_dir=tmp_path / "published"), url, tmp_path / "cache")
        store.sync()  # the local copies, as the server's site rebuild makes them
        tiles = VectorTiles(CATALOG, backend=store.tile_backend(), cache_bytes=0)
        tile = TMS.tile(104.28, 52.29, 12)
        before = tiles.tile(tile.z, tile.x, tile.y).body
        cluster.stop()
        after = tiles.tile(tile.z, tile.x, tile.y).body
        assert decode(before)["repairs"]["features"]
        assert_same_tile(before, after, tile.z, "database away")
    finally:
        cluster.stop()


def test_the_shared_tile_store_keeps_databases_and_versions_apart(postgres_cluster, tmp_path):  # noqa: F811
    """Two databases whose first publication has the same version number, served with one cache folder (a server
    pointed at another database, or at one created again): neither is answered the other's tile; a new version
    is never answered the old one's."""
    point = TMS.tile(104.28, 52.29, 15)

    def publish(url: str, network: str) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GEOPORTAL_STORE_URL", url)
            frame = frame_for(
                "repairs", [repair("R-1", network, "2026-01-01T00:00:00Z")], [shapely.Point(104.28, 52.29)]
            )
            publish_geopackage(frame, CATALOG["repairs"], tmp_path / "writer" / "repairs.gpkg")

    def served(url: str, name: str) -> VectorTiles:
        store = PostGISStore(CATALOG, PathSettings(published_dir=tmp_path / name), url, tmp_path / f"copies-{name}")
        store.versions()
        return VectorTiles(CATALOG, backend=store.tile_backend(), shared_dir=tmp_path / "tiles")

    def network(tile) -> str:
        return decode(tile.body)["repairs"]["features"][0]["properties"]["network"]

    (tmp_path / "writer").mkdir()
    first, second = (postgres_cluster.create_database(f"shared_tiles_{n}") for n in (1, 2))
    publish(first, "heat")
    publish(second, "water")
    one, other = served(first, "one"), served(second, "other")
    assert network(one.tile(point.z, point.x, point.y)) == "heat"
    assert other.cached_tile(point.z, point.x, point.y) is None
    assert network(other.tile(point.z, point.x, point.y)) == "water"
    assert network(served(first, "again").tile(point.z, point.x, point.y)) == "heat"  # from the store: the same bytes
    publish(first, "gas")
    again = served(first, "after")
    assert again.cached_tile(point.z, point.x, point.y) is None
    assert network(again.tile(point.z, point.x, point.y)) == "gas"
