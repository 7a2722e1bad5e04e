"""A lone bbox over a point layer answered from the points held in memory (server.features.point_index, read by
server.features.point_reads): the same matches, numberMatched and pages as the stores' SQL, for every version the
server serves and never from the version before.

tests/test_provider.py's answer tests run again here with every layer's index read before the first query, over the
GeoPackage and over PostGIS (skipped, with the reason, where PostgreSQL with PostGIS is not installed); the index itself
is checked against the rectangle test on random points with their edges, duplicates and NaNs; the served app reads the
index of a layer of 20,000 points after start and after a republication without a request asking; and the real server
(`python -m server --workers 2`) answers bboxes over it as the brute-force rectangle test does, before and after a
republication."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import time

import geopandas as gpd
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import shapely

from server.features import point_reads
from server.features.connections import POOL
from server.features.point_index import PointIndex, may_be_lone_box, page
from server.features.point_reads import POINT_INDEXES, PointIndexes
from server.features.postgis_provider import PostGISProvider, note_copy, note_versions, register_database
from server.features.provider import GeoPackageProvider, NotInstant
from server.published.files import file_identity
from tests import pg, test_provider
from tests.conftest import city_paths
from tests.pg_load import load_geopackage
from tests.server_fixtures import start_server, stop_server
from tests.test_provider import *  # noqa: F403 - the same answers, from the index
from tests.test_provider import TABLE, definition, repairs_frame, write_gpkg

postgres_cluster = pg.postgres_cluster
POSTGIS_PROVIDER = "server.features.postgis_provider.PostGISProvider"
DEADLINE_SECONDS = 60

# Only the tests asking the `provider` fixture are about answers; the others are about files and construction.
_ANSWER_TESTS = {
    name
    for name, test in vars(test_provider).items()
    if name.startswith("test_") and "provider" in inspect.signature(test).parameters
}
_ANSWER_TESTS.discard("test_sixteen_threads_get_the_same_answers_as_one")  # builds providers of its own
for _name in [n for n in list(globals()) if n.startswith("test_") and n in vars(test_provider)]:
    if _name not in _ANSWER_TESTS:
        del globals()[_name]


def with_index(provider: GeoPackageProvider) -> GeoPackageProvider:
    """The provider once its layer's current index is held (read ahead as after a publication)."""
    provider.read_ahead()
    assert POINT_INDEXES.wait_for_reads(DEADLINE_SECONDS)
    assert held_points(provider) is not None, "the layer's index was not read"
    return provider


def held_points(provider: GeoPackageProvider) -> int | None:
    """How many points the layer's index holds for its current version; None when no index is held for it (a
    PostGIS layer's: its local copy's, when a copy of the version noted current is noted)."""
    if isinstance(provider, PostGISProvider):
        provider = provider._current_copy()
        if provider is None:
            return None
    with provider._layer() as (_connection, _meta, version):
        index = POINT_INDEXES.held(provider._layer_key(), version)
    return None if index is None else len(index.fids)


def noted(url: str, version: int, copy=None) -> None:
    """What the PostGIS store does: its poll notes the registry's `version` as current, and once its local copy of
    that version is made, the copy's file (server.published.postgis_store). Here the GeoPackage the table was loaded
    from stands for the copy: the same rows, fids and values (tests/test_postgis_local_copy.py checks a real copy)."""
    note_versions(url, [(TABLE, version)])
    if copy is not None:
        note_copy(url, TABLE, version, file_identity(copy))


@pytest.fixture
def few_points_are_enough(monkeypatch):
    """The test layers hold 400 points; the server reads indexes from 10,000 (below, SQL is as fast)."""
    monkeypatch.setattr(point_reads, "FEW_POINTS", 1)


@pytest.fixture(scope="module")
def database(postgres_cluster, layer) -> str:
    url = postgres_cluster.create_database(f"geoportal_point_index_{os.getpid()}")
    noted(url, load_geopackage(layer, TABLE, url, indexed=("start_time", "end_time")), layer)
    return url


@pytest.fixture(params=["geopackage", "postgis"])
def provider(request, layer, few_points_are_enough) -> GeoPackageProvider:
    if request.param == "geopackage":
        return with_index(GeoPackageProvider(definition(layer)))
    url = request.getfixturevalue("database")
    return with_index(PostGISProvider(definition(register_database(url), name=POSTGIS_PROVIDER)))


# ---------------------------------------------------------------------- the index against the rectangle test


def random_points(seed: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(104.0, 104.5, count), rng.uniform(52.2, 52.4, count)
    xs[: count // 10] = np.round(xs[: count // 10], 2)  # many on the lines the boxes below are drawn along
    ys[: count // 10] = np.round(ys[: count // 10], 2)
    xs[-5:], ys[-5:] = xs[0], ys[0]  # the same place five more times
    xs[10], ys[11] = np.nan, np.inf  # no coordinate: in no rectangle
    fids = rng.permutation(np.arange(1, 3 * count, 3, dtype=np.int64)[:count])
    return fids, xs, ys


def boxes(seed: int) -> list[tuple[float, float, float, float]]:
    rng = np.random.default_rng(seed)
    found = [(104.0, 52.2, 104.5, 52.4), (0.0, 0.0, 1.0, 1.0), (104.1, 52.25, 104.12, 52.26), (-180, -90, 180, 90)]
    for _ in range(300):
        width = rng.choice([1e-6, 1e-3, 0.01, 0.1, 0.6])
        x, y = rng.uniform(103.9, 104.5), rng.uniform(52.15, 52.4)
        if rng.random() < 0.3:
            x, y = round(x, 2), round(y, 2)  # edges through the points on the lines
        found.append((x, y, x + width, y + width / 2))
    return found


def brute_force(fids, xs, ys, box) -> list[int]:
    minx, miny, maxx, maxy = box
    with np.errstate(invalid="ignore"):
        inside = (xs >= minx) & (xs <= maxx) & (ys >= miny) & (ys <= maxy)
    return sorted(fids[inside].tolist())


@pytest.mark.parametrize("count", [1, 7, 5_000, 30_000])  # 30,000: large rectangles gather with numpy
def test_an_index_finds_exactly_the_points_inside_a_rectangle_edges_included(count):
    fids, xs, ys = random_points(count, max(count, 12))
    fids, xs, ys = fids[:count], xs[:count], ys[:count]
    index = PointIndex.of(fids, xs, ys)
    for box in boxes(count):
        assert sorted(int(fid) for fid in index.matching(box)) == brute_force(fids, xs, ys, box), box


def test_points_on_one_line_or_in_one_place_make_an_index_too():
    for xs, ys in [(np.full(50, 104.3), np.linspace(52.2, 52.4, 50)), (np.full(50, 104.3), np.full(50, 52.3))]:
        fids = np.arange(50, dtype=np.int64)
        index = PointIndex.of(fids, xs, ys)
        for box in [(104.3, 52.3, 104.4, 52.4), (104.2, 52.2, 104.3, 52.3), (104.31, 52.2, 104.4, 52.4)]:
            assert sorted(int(fid) for fid in index.matching(box)) == brute_force(fids, xs, ys, box)
    empty = PointIndex.of(np.array([], np.int64), np.array([]), np.array([]))
    assert len(empty.matching((0.0, 0.0, 1.0, 1.0))) == 0


def test_a_page_is_the_slice_of_the_matches_in_fid_order():
    matches = np.random.default_rng(5).permutation(1000).astype(np.int64) * 7
    ordered = sorted(matches.tolist())
    for offset, limit in [(0, 10), (0, 1000), (0, 2000), (990, 10), (995, 10), (1000, 10), (37, 1), (0, 1)]:
        assert page(matches, offset, limit) == ordered[offset : offset + limit]
    # page reorders the array it is given in place: PointIndex.matching's is a new one each time, never the index's
    fids, xs, ys = random_points(2, 5000)
    index = PointIndex.of(fids, xs, ys)
    held = [array.copy() for array in (index.fids, index.keys, index.ys)]
    for box in boxes(200):
        expected = brute_force(fids, xs, ys, box)
        assert page(index.matching(box), 0, 10) == expected[:10]
        assert page(index.matching(box), 3, 5) == expected[3:8]
    assert all(np.array_equal(a, b) for a, b in zip(held, (index.fids, index.keys, index.ys), strict=True))


def test_the_indexes_held_stay_within_the_budget_the_layer_read_longest_ago_giving_way():
    fids, xs, ys = random_points(1, 1000)
    index = PointIndex.of(fids, xs, ys)
    indexes = PointIndexes(budget_bytes=int(index.nbytes * 1.5))
    for layer in ("a", "b"):
        indexes.read_later(layer, 1, lambda: index, layer)
        assert indexes.wait_for_reads(DEADLINE_SECONDS)
    assert indexes.held("a", 1) is None and indexes.held("b", 1) is index
    assert indexes.held("b", 2) is None  # another version of the layer: not this index


# ---------------------------------------------------------------------- versions: never the one before


def provider_over(store: str, path, request, name: str, **overrides) -> tuple[GeoPackageProvider, str | None]:
    """A provider of the layer in `path`: the file itself, or the file loaded into a new PostGIS database with `path`
    noted as its local copy (then also its URL, to publish into). `overrides`: the definition's (test_provider's)."""
    if store == "geopackage":
        return GeoPackageProvider(definition(path, **overrides)), None
    url = request.getfixturevalue("postgres_cluster").create_database(f"geoportal_index_{name}_{os.getpid()}")
    noted(url, load_geopackage(path, TABLE, url), path)
    return PostGISProvider(definition(url, name=POSTGIS_PROVIDER, **overrides)), url


def moved(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The same features a little to the east: every bbox near an edge finds others."""
    again = frame.copy()
    again["geometry"] = shapely.transform(again.geometry.values, lambda xy: xy + [0.013, 0.0])
    return again


@pytest.mark.parametrize("store", ["geopackage", "postgis"])
def test_a_republished_layer_is_never_answered_from_the_index_of_the_version_before(
    store, request, tmp_path, few_points_are_enough
):
    first, second = repairs_frame(seed=4, count=3000), moved(repairs_frame(seed=4, count=3000))
    path = write_gpkg(first, tmp_path / f"{TABLE}.gpkg")
    provider, url = provider_over(store, path, request, "versions")
    box = [104.2, 52.25, 104.3, 52.35]

    def truth(frame: gpd.GeoDataFrame) -> list[int]:
        return sorted(frame.loc[frame.geometry.intersects(shapely.box(*box)), "fid"].tolist())

    with_index(provider)
    assert test_provider.ids(provider.query(bbox=box, limit=3000)["features"]) == truth(first)
    (tmp_path / "next").mkdir()
    republished = write_gpkg(second, tmp_path / "next" / f"{TABLE}.gpkg")
    if store == "geopackage":
        os.replace(republished, path)
    else:
        version = load_geopackage(republished, TABLE, url)
        noted(url, version)  # the store's poll saw it; no copy of it yet
    answer = provider.query(bbox=box, limit=3000)  # the new version's first bbox: its index is not read yet
    assert test_provider.ids(answer["features"]) == truth(second) and answer["numberMatched"] == len(truth(second))
    if store == "postgis":
        noted(url, version, republished)
    with_index(provider)
    answer = provider.query(bbox=box, limit=3000)
    assert test_provider.ids(answer["features"]) == truth(second) and answer["numberMatched"] == len(truth(second))


# ---------------------------------------------------------------------- rows kept: never another version's or fields'

# No boolean or number among them: an instant page's properties come as SQLite's JSON (server.features.json_rows).
SQLITE_JSON_FIELDS = ["permit_id", "network", "address", "start_time", "day"]


def relabelled(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The same features in the same places (the same fids, so the same pages), other values of two fields."""
    again = frame.copy()
    again["network"] = "republished " + again["network"]
    again["address"] = again["address"].fillna("") + " (republished)"
    return again


def kept_rows_pages(provider: GeoPackageProvider, seed: int) -> list[dict]:
    """Pages of 10 of 40 small bboxes, each as an instant page (SQLite's JSON) and through `query` (pygeoapi's route,
    the Python way), the features' values as a client reads them; twice, so the second round is read from the rows
    kept by the first."""
    from server.ogcapi.speedups import to_json_bytes

    found = []
    for _ in range(2):
        rng = np.random.default_rng(seed)  # the same boxes each round
        for _ in range(40):
            x, y = rng.uniform(104.0, 104.45), rng.uniform(52.2, 52.38)
            box, offset = [x, y, x + 0.05, y + 0.02], int(rng.integers(0, 3))
            plan = provider.instant_page(box, offset, 10)
            assert plan is not None, "the index was not held"
            for answer in (plan.read(None, json_text=True), provider.query(bbox=box, offset=offset, limit=10)):
                found.append(orjson.loads(to_json_bytes(answer)))
    return found


def values_of(frame: gpd.GeoDataFrame, fields: list[str]) -> dict[int, dict]:
    """What a page says of each feature, as the frame has it."""
    rows = frame.set_index("fid")
    return {
        fid: {
            name: value
            for name, value in rows.loc[fid, fields].items()
            if not (value is None or (not isinstance(value, str) and pd.isna(value)))
        }
        for fid in rows.index
    }


def assert_pages_hold(pages: list[dict], frame: gpd.GeoDataFrame, fields: list[str]) -> None:
    truth = values_of(frame, fields)
    assert sum(len(answer["features"]) for answer in pages) > 300
    for answer in pages:
        for feature in answer["features"]:
            properties = {
                name: pd.Timestamp(value) if name == "start_time" else value
                for name, value in feature["properties"].items()
                if value is not None
            }
            assert set(feature["properties"]) == set(fields) and properties == truth[feature["id"]], feature


@pytest.mark.parametrize("store", ["geopackage", "postgis"])
def test_a_republished_layers_pages_hold_none_of_the_rows_kept_from_the_version_before(
    store, request, tmp_path, few_points_are_enough
):
    """Index pages' rows are kept per worker (server.features.row_cache), per version: after a republication with the
    same fids in the same places and other values, every page holds the new values (both ways of reading)."""
    first = repairs_frame(seed=10, count=3000)
    second = relabelled(first)
    path = write_gpkg(first, tmp_path / f"{TABLE}.gpkg")
    provider, url = provider_over(store, path, request, "kept", properties=SQLITE_JSON_FIELDS, time_field=None)
    with_index(provider)
    assert_pages_hold(kept_rows_pages(provider, seed=1), first, SQLITE_JSON_FIELDS)
    (tmp_path / "next").mkdir()
    republished = write_gpkg(second, tmp_path / "next" / f"{TABLE}.gpkg")
    if store == "geopackage":
        os.replace(republished, path)
    else:
        noted(url, load_geopackage(republished, TABLE, url), republished)
    with_index(provider)
    assert_pages_hold(kept_rows_pages(provider, seed=1), second, SQLITE_JSON_FIELDS)


def test_pages_of_one_file_asked_with_other_fields_share_no_rows(tmp_path, few_points_are_enough):
    """A staff definition (an internal field more) and a public one over the same file and version: each page holds
    its own fields, whichever was asked first, both ways of reading."""
    path = write_gpkg(repairs_frame(seed=11, count=3000), tmp_path / f"{TABLE}.gpkg")
    frame = gpd.read_file(path, engine="pyogrio", fid_as_index=True).rename_axis("fid").reset_index()
    staff_fields = [*SQLITE_JSON_FIELDS, "contractor_phone"]
    staff = with_index(GeoPackageProvider(definition(path, properties=staff_fields, time_field=None)))
    public = with_index(GeoPackageProvider(definition(path, properties=SQLITE_JSON_FIELDS, time_field=None)))
    assert_pages_hold(kept_rows_pages(staff, seed=2), frame, staff_fields)
    assert_pages_hold(kept_rows_pages(public, seed=2), frame, SQLITE_JSON_FIELDS)
    assert_pages_hold(kept_rows_pages(staff, seed=2), frame, staff_fields)


def test_a_layer_holding_a_point_with_z_is_answered_in_sql(tmp_path, few_points_are_enough):
    frame = repairs_frame(seed=6, count=200)
    frame["geometry"] = shapely.force_3d(frame.geometry.values, 10.0)
    provider = GeoPackageProvider(definition(write_gpkg(frame, tmp_path / f"{TABLE}.gpkg")))
    provider.read_ahead()
    assert POINT_INDEXES.wait_for_reads(DEADLINE_SECONDS)
    assert held_points(provider) is None
    box = [104.2, 52.25, 104.3, 52.35]
    truth = sorted(frame.loc[frame.geometry.intersects(shapely.box(*box)), "fid"].tolist())
    assert test_provider.ids(provider.query(bbox=box, limit=1000)["features"]) == truth


@pytest.mark.parametrize("store", ["geopackage", "postgis"])
def test_null_and_empty_points_are_in_no_bbox_and_the_rest_still_come_from_the_index(
    store, request, tmp_path, few_points_are_enough
):
    frame = repairs_frame(seed=7, count=300)
    frame.loc[5, "geometry"] = None
    frame.loc[6, "geometry"] = shapely.Point()  # empty: GDAL flags it in the blob's header
    provider, _ = provider_over(store, write_gpkg(frame, tmp_path / f"{TABLE}.gpkg"), request, "empty")
    with_index(provider)
    assert held_points(provider) == 298
    for box in ([104.2, 52.25, 104.3, 52.35], [103.0, 51.0, 105.0, 53.0]):
        present = frame[[g is not None and not g.is_empty for g in frame.geometry]]
        truth = sorted(present.loc[present.geometry.intersects(shapely.box(*box)), "fid"].tolist())
        answer = provider.query(bbox=box, limit=1000)
        assert test_provider.ids(answer["features"]) == truth and answer["numberMatched"] == len(truth)


def test_a_geopackage_holding_more_points_than_it_says_is_read_whole(tmp_path, few_points_are_enough, monkeypatch):
    """gpkg_ogr_contents' feature_count sizes the arrays the points are read into; a file whose count is stale (a
    writer that does not keep it) still has every point read, a chunk at a time."""
    import sqlite3

    frame = repairs_frame(seed=8, count=3000)
    path = write_gpkg(frame, tmp_path / f"{TABLE}.gpkg")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE gpkg_ogr_contents SET feature_count = 10 WHERE table_name = ?", (TABLE,))
    monkeypatch.setattr(point_reads, "CHUNK", 256)
    provider = with_index(GeoPackageProvider(definition(path)))
    assert held_points(provider) == 3000
    box = [104.2, 52.25, 104.3, 52.35]
    truth = sorted(frame.loc[frame.geometry.intersects(shapely.box(*box)), "fid"].tolist())
    answer = provider.query(bbox=box, limit=3000)
    assert test_provider.ids(answer["features"]) == truth and answer["numberMatched"] == len(truth)


def test_a_point_index_is_read_in_its_turn_not_beside_a_box_index_build(tmp_path, few_points_are_enough):
    """While a tile box index build holds the turn (server.memory.LARGE_BUILDS) the index is not read: bboxes are
    answered in SQL meanwhile, and from the index once it is read."""
    from server.memory import LARGE_BUILDS

    frame = repairs_frame(seed=9, count=400)
    provider = GeoPackageProvider(definition(write_gpkg(frame, tmp_path / f"{TABLE}.gpkg")))
    box = [104.2, 52.25, 104.3, 52.35]
    truth = sorted(frame.loc[frame.geometry.intersects(shapely.box(*box)), "fid"].tolist())
    with LARGE_BUILDS.turn():
        provider.read_ahead()
        assert not POINT_INDEXES.wait_for_reads(1.0)  # 400 points: read in milliseconds, were it not waiting
        assert held_points(provider) is None
        assert test_provider.ids(provider.query(bbox=box, limit=1000)["features"]) == truth
    with_index(provider)
    assert test_provider.ids(provider.query(bbox=box, limit=1000)["features"]) == truth


def test_a_small_bbox_page_is_instant_only_while_the_current_versions_index_is_held(tmp_path, few_points_are_enough):
    """instant_page (a page run on the event loop, server.early_answers) only when the file's current version's
    index is held and the page reads few rows; not for the version before."""
    frame = repairs_frame(seed=10, count=400)
    path = write_gpkg(frame, tmp_path / f"{TABLE}.gpkg")
    provider = GeoPackageProvider(definition(path))
    box = [104.2, 52.25, 104.3, 52.35]
    assert not provider.instant_page(box, 0, 10)  # no index read yet
    with pytest.raises(NotInstant):
        provider.query(bbox=box, limit=10, instant=True)
    with_index(provider)
    assert provider.instant_page(box, 0, 10) and provider.instant_page(box, 100, 20)
    assert not provider.instant_page(box, 0, 21) and not provider.instant_page([], 0, 10)
    (tmp_path / "next").mkdir()
    os.replace(write_gpkg(moved(frame), tmp_path / "next" / f"{TABLE}.gpkg"), path)
    assert not provider.instant_page(box, 0, 10)  # the version before's index does not make it instant
    with pytest.raises(NotInstant):  # judged instant before the file changed: the caller reads it off the loop
        provider.query(bbox=box, limit=10, instant=True)
    with_index(provider)
    assert provider.instant_page(box, 0, 10)
    assert (
        test_provider.ids(provider.query(bbox=box, limit=10, instant=True)["features"])
        == truth_in(moved(frame), box)[:10]
    )


def test_an_instant_page_reads_the_version_it_was_judged_on_or_nothing(tmp_path, few_points_are_enough):
    """The InstantPage instant_page gives reads the rows of the file version whose index judged it, however the file
    changed since: from a connection of that version kept idle, else NotInstant (the caller reads the page off the
    loop). Never the index of one version with the rows of another."""
    frame = repairs_frame(seed=12, count=400)
    path = write_gpkg(frame, tmp_path / f"{TABLE}.gpkg")
    provider = with_index(GeoPackageProvider(definition(path)))
    box = [104.2, 52.25, 104.3, 52.35]

    def inside(answer: dict) -> bool:
        return all(
            box[0] <= x <= box[2] and box[1] <= y <= box[3]
            for x, y in (feature["geometry"]["coordinates"] for feature in answer["features"])
        )

    plan = provider.instant_page(box, 5, 10)
    answer = plan.read()
    assert test_provider.ids(answer["features"]) == truth_in(frame, box)[5:15]
    assert answer["numberMatched"] == len(truth_in(frame, box)) and inside(answer)
    assert answer == provider.query(bbox=box, offset=5, limit=10)  # what query answers, to the value
    judged = provider.instant_page(box, 0, 10)  # a connection of the first version is idle in the pool now
    (tmp_path / "next").mkdir()
    os.replace(write_gpkg(moved(frame), tmp_path / "next" / f"{TABLE}.gpkg"), path)
    answer = judged.read()
    assert test_provider.ids(answer["features"]) == truth_in(frame, box)[:10] and inside(answer)
    with_index(provider)
    judged = provider.instant_page(box, 0, 10)
    assert judged.read() == provider.query(bbox=box, limit=10)
    assert test_provider.ids(judged.read()["features"]) == truth_in(moved(frame), box)[:10]
    (tmp_path / "third").mkdir()
    os.replace(write_gpkg(frame, tmp_path / "third" / f"{TABLE}.gpkg"), path)
    POOL.clear()  # no connection of the version judged is left: only the third could be read
    with pytest.raises(NotInstant):
        judged.read()


# Text SQLite's JSON and orjson must escape alike: quotes, backslashes, every control character, DEL, line and
# paragraph separators, Cyrillic, a 4-byte emoji, numeric-looking text, empty text, none.
AWKWARD_TEXT = [
    'say "hi"',
    "back\\slash \\u0041",
    "line\nbreak\ttab\rcr\x08bs\x0cff",
    "".join(chr(c) for c in range(32)) + "\x7f",
    "sep \u2028 \u2029 nbsp\u00a0",
    "ул. Ленина, 5",
    "emoji \U0001f600",
    "",
    "12",
    "1e5",
    None,
]


def awkward_layer(path) -> None:
    """A point layer whose public fields SQLite's JSON may write: text (declared TEXT, VARCHAR(20) and no type at
    all), an INTEGER of 64 bits, a DATETIME and a DATE, holding AWKWARD_TEXT and the extreme integers."""
    count = 400
    rng = np.random.default_rng(21)
    frame = gpd.GeoDataFrame(
        {
            "fid": np.arange(1, count + 1, dtype="int64") * 7919,
            "permit_id": [f"P-{i}" for i in range(count)],
            "address": [AWKWARD_TEXT[i % len(AWKWARD_TEXT)] for i in range(count)],
            "floors": pd.array([[2**63 - 1, -(2**63), 0, None, 7][i % 5] for i in range(count)], dtype="Int64"),
            "start_time": pd.to_datetime([f"2026-11-{1 + i % 28:02d}T08:00:00Z" for i in range(count)], utc=True),
            "end_time": pd.to_datetime([None] * count, utc=True),
            "day": [f"2026-12-{1 + i % 28:02d}" for i in range(count)],
        },
        geometry=shapely.points(rng.uniform(104.2, 104.4, count), rng.uniform(52.25, 52.35, count)),
        crs="EPSG:4326",
    )
    write_gpkg(frame, path)
    alter_rows(path, 'ALTER TABLE repairs ADD COLUMN "code" VARCHAR(20)')
    alter_rows(path, 'ALTER TABLE repairs ADD COLUMN "loose"')  # no declared type: any value, kept as it is
    alter_rows(path, 'ALTER TABLE repairs ADD COLUMN "due" DATE')
    alter_rows(path, 'ALTER TABLE repairs ADD COLUMN "seen" DATETIME')  # NUMERIC affinity, as DATE's
    alter_rows(path, 'UPDATE repairs SET "code" = address, "loose" = permit_id, "due" = "day", "seen" = start_time')


def alter_rows(path, statement: str, *params) -> None:
    """Change values in place, as no publication does (a file put there by hand); GeoPackage's triggers need
    SpatiaLite's functions to compile, and none of them fires for columns other than the geometry."""
    import sqlite3

    connection = sqlite3.connect(path)
    for name in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
        connection.create_function(name, 1, lambda blob: 0)
    with connection:
        connection.execute(statement, params)
    connection.close()


AWKWARD_PUBLIC = ["permit_id", "address", "floors", "start_time", "end_time", "day", "code", "loose", "due", "seen"]


@pytest.mark.parametrize(
    "change",
    [
        None,
        ("UPDATE repairs SET loose = 0.30000000000000004 WHERE fid % 3 = 0",),  # a REAL where any value may be
        ("UPDATE repairs SET floors = 1.5 WHERE fid % 5 = 0",),  # INTEGER affinity keeps a fraction REAL
        ("UPDATE repairs SET seen = '0.1' WHERE fid % 4 = 0",),  # DATETIME's NUMERIC affinity makes it REAL 0.1
        ("UPDATE repairs SET address = ? WHERE fid % 6 = 0", b"\x00\xffbytes"),  # a BLOB in a TEXT column
    ],
    ids=["text-and-integers", "real-untyped", "real-integer", "real-datetime", "blob-in-text"],
)
def test_an_instant_pages_properties_written_by_sqlite_are_the_ones_python_writes(
    change, tmp_path, few_points_are_enough
):
    """An instant page's properties may come as SQLite's JSON (server.features.json_rows): the page's body is then
    byte for byte the one the Python rendering writes. Where a value would be written otherwise (a REAL, a BLOB) the
    page is read the Python way: the same bytes again, never the other number or an error."""
    from orjson import Fragment

    from server.ogcapi.speedups import to_json_bytes

    path = tmp_path / f"{TABLE}.gpkg"
    awkward_layer(path)
    if change is not None:
        alter_rows(path, *change)
    provider = with_index(GeoPackageProvider(definition(path, properties=AWKWARD_PUBLIC, time_field=None)))
    rng = np.random.default_rng(5)
    kinds = set()
    for _ in range(120):
        x, y = rng.uniform(104.2, 104.38), rng.uniform(52.25, 52.34)
        box, offset = [x, y, x + 0.02, y + 0.01], int(rng.integers(0, 3))
        plan = provider.instant_page(box, offset, 10)
        written, python = plan.read(None, json_text=True), plan.read(None, json_text=False)
        for feature in python["features"]:
            assert isinstance(feature["properties"], dict)
        kinds.update(type(feature["properties"]) for feature in written["features"])
        asked = provider.query(bbox=box, offset=offset, limit=10)  # pygeoapi's route: never SQLite's JSON
        assert to_json_bytes(written) == to_json_bytes(python) == to_json_bytes(asked), box
    assert Fragment in kinds  # the clean pages are SQLite's JSON in every case
    if change is None:
        assert kinds == {Fragment}
    else:
        assert dict in kinds  # the pages holding such a value were read the Python way


def test_sqlites_json_is_asked_only_of_a_utf8_file_and_within_json_objects_arguments(tmp_path):
    """A file whose text is UTF-16 (SQLite allows it, GeoPackage does not) would come back from CAST(... AS BLOB) in
    UTF-16; json_object takes at most 127 arguments, two per property: neither is asked for SQLite's JSON."""
    import dataclasses

    from server.features.json_rows import MAX_PROPERTIES, json_properties
    from server.published.layer import current_meta

    path = tmp_path / f"{TABLE}.gpkg"
    awkward_layer(path)
    meta = current_meta(str(path), TABLE)
    # TEXT and VARCHAR(20), not INTEGER, DATETIME, DATE or no type at all
    assert meta.utf8 and meta.text_affinity == {"permit_id", "address", "day", "code"}
    assert json_properties(meta, AWKWARD_PUBLIC, lambda name: f'"{name}"') is not None
    assert json_properties(dataclasses.replace(meta, utf8=False), AWKWARD_PUBLIC, lambda name: f'"{name}"') is None
    many = ["permit_id"] * (MAX_PROPERTIES + 1)
    assert json_properties(meta, many, lambda name: f'"{name}"') is None


def test_a_layer_with_a_boolean_or_a_number_field_is_written_the_python_way(tmp_path, few_points_are_enough):
    """SQLite's JSON writes a boolean as 0/1 and a REAL with 15 digits: such fields keep the page's properties
    Python's."""
    frame = repairs_frame(seed=14, count=400)
    path = write_gpkg(frame, tmp_path / f"{TABLE}.gpkg")
    for fields in (["permit_id", "has_detour"], ["permit_id", "depth"]):
        provider = with_index(GeoPackageProvider(definition(path, properties=fields)))
        answer = provider.instant_page([104.2, 52.25, 104.3, 52.35], 0, 10).read(None, json_text=True)
        assert answer["features"] and all(isinstance(f["properties"], dict) for f in answer["features"])


def truth_in(frame: gpd.GeoDataFrame, box) -> list[int]:
    return sorted(frame.loc[frame.geometry.intersects(shapely.box(*box)), "fid"].tolist())


def test_a_postgis_bbox_is_answered_from_the_local_copy_of_the_version_noted_and_no_other(
    postgres_cluster, tmp_path, few_points_are_enough
):
    """A PostGIS layer's lone bbox comes from its local copy only while the copy noted is of the version the store's
    poll noted current and its path still holds that file; else from the table (and never on the event loop)."""
    first, second = repairs_frame(seed=11, count=400), moved(repairs_frame(seed=11, count=400))
    for folder in ("first", "second", "third"):
        (tmp_path / folder).mkdir()
    first_path = write_gpkg(first, tmp_path / "first" / f"{TABLE}.gpkg")
    second_path = write_gpkg(second, tmp_path / "second" / f"{TABLE}.gpkg")
    url = postgres_cluster.create_database(f"geoportal_index_copy_{os.getpid()}")
    provider = PostGISProvider(definition(register_database(url), name=POSTGIS_PROVIDER))
    box = [104.2, 52.25, 104.3, 52.35]

    def from_table(frame: gpd.GeoDataFrame) -> None:
        assert not provider.instant_page(box, 0, 10)
        with pytest.raises(NotInstant):
            provider.query(bbox=box, limit=10, instant=True)
        answer = provider.query(bbox=box, limit=1000)
        assert test_provider.ids(answer["features"]) == truth_in(frame, box)
        assert answer["numberMatched"] == len(truth_in(frame, box))

    def from_copy(frame: gpd.GeoDataFrame) -> None:
        assert provider.instant_page(box, 0, 10) and not provider.instant_page(box, 0, 21)
        answer = provider.query(bbox=box, limit=1000, instant=True)
        assert test_provider.ids(answer["features"]) == truth_in(frame, box)
        assert answer["numberMatched"] == len(truth_in(frame, box))

    first_version = load_geopackage(first_path, TABLE, url)
    noted(url, first_version)
    provider.read_ahead()
    assert POINT_INDEXES.wait_for_reads(DEADLINE_SECONDS)
    from_table(first)  # no copy made yet
    noted(url, first_version, first_path)
    with_index(provider)
    from_copy(first)
    second_version = load_geopackage(second_path, TABLE, url)
    noted(url, second_version)  # republished: the copy is of the version before
    from_table(second)
    noted(url, second_version, second_path)
    with_index(provider)
    from_copy(second)
    # the copy's path now holds another file (a newer copy another worker made) while the note names this one
    os.replace(write_gpkg(first, tmp_path / "third" / f"{TABLE}.gpkg"), second_path)
    from_table(second)


def test_only_the_arguments_of_a_lone_bbox_may_send_a_postgis_query_to_the_copy():
    """may_be_lone_box: asked by the PostGIS provider before it builds the copy's query (building it for a `datetime=`
    window cost 25-30 % of its req/s); true for a plain page's arguments (server/ogcapi/plain_items.py)."""
    plain = {
        "offset": 0,
        "limit": 10,
        "resulttype": "results",
        "bbox": [104.2, 52.25, 104.3, 52.35],
        "datetime_": None,
        "properties": [],
        "sortby": [],
        "select_properties": ["status"],
        "skip_geometry": True,
        "q": None,
        "filterq": None,
        "crs_transform_spec": None,
    }
    assert may_be_lone_box(plain) and may_be_lone_box({"bbox": plain["bbox"]})
    others = {
        "datetime_": "2026-11-01/..",
        "properties": [("status", "active")],
        "sortby": [{"property": "start_time", "order": "+"}],
        "q": "Ленина",
        "filterq": {"op": "=", "args": [{"property": "status"}, "active"]},
        "bbox": [],
    }
    for name, value in others.items():
        assert not may_be_lone_box({**plain, name: value}), name


# ---------------------------------------------------------------------- the server as it runs


def many_repairs(count: int) -> gpd.GeoDataFrame:
    """`count` repair permits of the catalog's `repairs` layer, points spread over the sample city."""
    from assets.publish import stable_fid

    rng = np.random.default_rng(count)
    ids = [f"P-{i:06d}" for i in range(count)]
    return gpd.GeoDataFrame(
        {
            "fid": np.array([stable_fid(TABLE, i) for i in ids], dtype="int64"),
            "permit_id": ids,
            "network": rng.choice(["heat", "water", "gas"], count),
            "work_kind": "planned",
            "status": "active",
            "start_time": pd.Timestamp("2026-11-01T00:00:00Z") + pd.to_timedelta(rng.integers(0, 999, count), "h"),
        },
        geometry=shapely.points(rng.uniform(104.2, 104.4, count), rng.uniform(52.25, 52.35, count)),
        crs="EPSG:4326",
    )


def catalog_repairs(frame: gpd.GeoDataFrame):
    """The catalog's `repairs` spec, and `frame` with every field of it (the ones it lacks empty)."""
    from layers.catalog import load_catalog

    spec = load_catalog()[TABLE]
    frame = frame.copy()
    for name in (f.name for f in spec.fields if f.name not in frame):
        frame[name] = None
    return spec, frame


def publish_repairs(frame: gpd.GeoDataFrame, path) -> None:
    from assets.publish import publish_geopackage

    spec, frame = catalog_repairs(frame)
    publish_geopackage(frame, spec, path)


def truth(frame: gpd.GeoDataFrame, bbox: str) -> list[int]:
    box = shapely.box(*(float(v) for v in bbox.split(",")))
    return sorted(frame.loc[frame.geometry.intersects(box), "fid"].tolist())


def bbox_queries(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    queries = [{"bbox": "104.25,52.27,104.33,52.31", "limit": "2000"}]
    for _ in range(30):
        x, y, w = rng.uniform(104.18, 104.4), rng.uniform(52.24, 52.35), rng.choice([0.002, 0.01, 0.05])
        queries.append({"bbox": f"{x:.5f},{y:.5f},{x + w:.5f},{y + w / 2:.5f}", "limit": "50", "offset": "10"})
    for _ in range(10):  # a web map's small pages: answered on the event loop once the index is held (instant_page)
        x, y, w = rng.uniform(104.18, 104.4), rng.uniform(52.24, 52.35), rng.choice([0.002, 0.01])
        queries.append({"bbox": f"{x:.5f},{y:.5f},{x + w:.5f},{y + w / 2:.5f}", "limit": "10", "offset": "2"})
    return queries


def check_answer(body: dict, frame: gpd.GeoDataFrame, query: dict) -> None:
    expected = truth(frame, query["bbox"])
    offset, limit = int(query.get("offset", 0)), int(query["limit"])
    assert body["numberMatched"] == len(expected), query
    assert [f["id"] for f in body["features"]] == expected[offset : offset + limit], query


async def index_read_ahead(layer, count: int, what: str) -> None:
    """Wait until the served app's read-ahead thread holds the index of the file now at `layer` (`count` points)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        with POOL.connection(str(layer)) as (_connection, version):
            index = POINT_INDEXES.held((str(layer), TABLE), version)
        if index is not None:
            assert len(index.fids) == count
            return
        assert time.monotonic() < deadline, f"the index of {what} was not read ahead"
        await asyncio.sleep(0.05)  # polling interval: the server's thread reads it


def test_the_served_app_reads_the_index_of_each_version_and_answers_from_it(published_city, tmp_path):
    """The app as `python -m server` runs it (its lifespan's read-ahead thread, the items route): the index of the
    published version is read without a request asking, a republished version's bboxes are right at once (in SQL
    until its index is read), and then answered from its index."""
    from server.app import create_app

    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    layer = paths.published_path(TABLE)
    first, second = many_repairs(20_000), moved(many_repairs(20_000))
    publish_repairs(first, layer)
    app = create_app(paths=paths)

    async def index_of_current_version(what: str) -> None:
        await index_read_ahead(layer, 20_000, what)

    async def ask(client, frame: gpd.GeoDataFrame) -> None:
        for query in bbox_queries(len(frame)):
            response = await client.get(f"/collections/{TABLE}/items", params={**query, "f": "json"})
            assert response.status_code == 200, response.text
            check_answer(response.json(), frame, query)

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                await index_of_current_version("the version served at start")
                await ask(client, first)
                publish_repairs(second, layer)
                await ask(client, second)  # right at once, whatever answers it
                await index_of_current_version("the republished version")
                await ask(client, second)

    asyncio.run(serve())


def test_a_page_answered_from_the_index_on_the_event_loop_is_made_again_not_kept(published_city, tmp_path):
    """The page cache keeps what is costly to make again: the first page of 1,000 asked twice is the page kept (one
    `timeStamp`), a small bbox answered instantly from the index is read again (two), with the same features."""
    from server.app import create_app
    from server.ogcapi.plain_items import plain_layer

    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    layer = paths.published_path(TABLE)
    frame = many_repairs(20_000)
    publish_repairs(frame, layer)
    app = create_app(paths=paths)
    small = {"bbox": "104.25,52.27,104.27,52.28", "limit": "10"}

    async def twice(client, params: dict) -> list[dict]:
        answers = [await client.get(f"/collections/{TABLE}/items", params=params) for _ in range(2)]
        assert [answer.status_code for answer in answers] == [200, 200], answers[0].text
        return [answer.json() for answer in answers]

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            await index_read_ahead(layer, len(frame), "the version served")
            provider = plain_layer(app.state.live.site.views["public"], TABLE).provider
            assert provider.instant_page([104.25, 52.27, 104.27, 52.28], 0, 10)  # what the small page asks
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                first, again = await twice(client, {"limit": "1000"})
                assert first == again  # kept: the same timeStamp
                first, again = await twice(client, small)
                assert first["timeStamp"] != again["timeStamp"]  # read again
                assert first["features"] == again["features"] and first["numberMatched"] == again["numberMatched"]
                check_answer(first, frame, small)
                # its properties written by SQLite (server.features.json_rows), the route's by Python: the same
                routed = {**small, "properties": ",".join(provider.properties)}  # not a plain page: pygeoapi's route
                answer = await client.get(f"/collections/{TABLE}/items", params=routed)
                assert answer.status_code == 200 and answer.json()["features"] == first["features"]

    asyncio.run(serve())


@pytest.mark.parametrize("store", ["geopackage", "postgis"])
def test_two_server_workers_answer_bboxes_over_many_points_right_before_and_after_a_republication(
    store, published_city, tmp_path, request
):
    """Over PostGIS the bboxes come from each worker's local copy of the version its poll noted (a worker may find
    the copy replaced by the other's newer one meanwhile), else from the table."""
    paths = city_paths(tmp_path / "city")
    first, second = many_repairs(20_000), moved(many_repairs(20_000))
    env = {}
    if store == "geopackage":
        shutil.copytree(published_city.published_dir, paths.published_dir)

        def publish(frame: gpd.GeoDataFrame) -> None:
            publish_repairs(frame, paths.published_path(TABLE))

    else:
        from assets.stores.postgis import publish_postgis

        url = request.getfixturevalue("postgres_cluster").create_database(f"geoportal_index_workers_{os.getpid()}")
        paths.published_dir.mkdir(parents=True)
        env["GEOPORTAL_STORE_URL"] = url

        def publish(frame: gpd.GeoDataFrame) -> None:
            spec, filled = catalog_repairs(frame)
            publish_postgis(filled, spec, url)

    publish(first)
    server = start_server(paths, tmp_path / "server.log", env, args=["--workers", "2"])
    try:
        for frame in (first, second):
            if frame is second:
                publish(second)
            deadline = time.monotonic() + DEADLINE_SECONDS
            for query in bbox_queries(7) * 3:  # while the workers read their indexes, and after
                response = httpx.get(f"{server.url}/collections/{TABLE}/items", params=query, timeout=30)
                assert response.status_code == 200, response.text
                body = response.json()
                if frame is second and body["numberMatched"] != len(truth(second, query["bbox"])):
                    assert time.monotonic() < deadline, "the republished layer was not served"
                    continue  # a worker sees the new file at its next check of the published folder
                check_answer(body, frame, query)
    finally:
        stop_server(server)
