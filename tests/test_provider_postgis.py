"""tests/test_provider.py's query tests again, with the provider reading PostGIS (PostGISProvider) instead of the
GeoPackage: the same contract GeoPackage is loaded into a PostGIS table, and every test that takes the `provider`
fixture (bbox, datetime with local days, CQL2 text and JSON, q, sortby with NULLs, deep paging, CRSs, ids, typing)
must pass unchanged. Skipped, with the reason, where PostgreSQL with PostGIS is not installed."""

from __future__ import annotations

import inspect
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from pygeoapi.provider.base import ProviderConnectionError

from server.features import paging, pg_pool, pg_windows
from server.features.filter_parse import parse_cql2_text
from server.features.postgis_provider import PostGISProvider, register_database
from server.features.provider import GeoPackageProvider
from server.features.query import TimeWindow
from tests import pg, test_provider
from tests.pg_load import load_geopackage
from tests.test_provider import *  # noqa: F403 - the same tests, over the other store
from tests.test_provider import TABLE, definition, repairs_frame, write_gpkg

postgres_cluster = pg.postgres_cluster
POSTGIS_PROVIDER = "server.features.postgis_provider.PostGISProvider"

# Only the tests asking the `provider` fixture are about answers; the others are about GeoPackage files.
_ANSWER_TESTS = {
    name
    for name, test in vars(test_provider).items()
    if name.startswith("test_") and "provider" in inspect.signature(test).parameters
}
_ANSWER_TESTS.discard("test_sixteen_threads_get_the_same_answers_as_one")  # builds GeoPackage providers: see below
for _name in [n for n in list(globals()) if n.startswith("test_") and n in vars(test_provider)]:
    if _name not in _ANSWER_TESTS:
        del globals()[_name]


@pytest.fixture(scope="module")
def database(postgres_cluster, layer) -> str:
    url = postgres_cluster.create_database(f"geoportal_provider_{os.getpid()}")
    load_geopackage(layer, TABLE, url, indexed=("start_time", "end_time"))
    return url


@pytest.fixture
def provider(database) -> PostGISProvider:
    return PostGISProvider(definition(register_database(database), name=POSTGIS_PROVIDER))


def test_the_database_url_stays_out_of_the_configuration(database):
    name = register_database(database.replace("@", ":secret@", 1))
    assert "secret" not in name and name.startswith("postgis://127.0.0.1:")


def test_constructing_connects_to_nothing():
    PostGISProvider(definition("postgresql://nobody@127.0.0.1:9/none", name=POSTGIS_PROVIDER))


def test_an_unreachable_database_without_a_copy_is_a_connection_error():
    unreachable = PostGISProvider(definition("postgresql://nobody@127.0.0.1:9/none", name=POSTGIS_PROVIDER))
    with pytest.raises(ProviderConnectionError):
        unreachable.query(limit=1)


def test_an_unreachable_database_serves_the_fallback_copy(tmp_path):
    copy = write_gpkg(repairs_frame(seed=5, count=30), tmp_path / f"{TABLE}.gpkg")
    away = PostGISProvider(
        definition("postgresql://nobody@127.0.0.1:9/none", name=POSTGIS_PROVIDER, fallback=str(copy))
    )
    assert away.query(limit=100)["numberMatched"] == 30


def test_a_republished_table_is_served_at_once(postgres_cluster, tmp_path):
    url = postgres_cluster.create_database(f"geoportal_republished_{os.getpid()}")
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = write_gpkg(repairs_frame(seed=1, count=50), tmp_path / "first" / f"{TABLE}.gpkg")
    load_geopackage(first, TABLE, url)
    provider = PostGISProvider(definition(url, name=POSTGIS_PROVIDER))
    assert provider.query(limit=10, offset=20)["numberMatched"] == 50
    second = write_gpkg(repairs_frame(seed=2, count=70), tmp_path / "second" / f"{TABLE}.gpkg")
    load_geopackage(second, TABLE, url)
    after = provider.query(limit=10, offset=20)
    assert after["numberMatched"] == 70
    assert all(f["properties"]["permit_id"].startswith("P-2-") for f in after["features"])


def test_sixteen_threads_get_the_same_answers_as_one(provider, database):
    queries = test_provider.thread_queries()
    truth = [json.dumps(provider.query(**q), sort_keys=True) for q in queries]

    def run(index: int) -> bool:
        shared = provider if index % 2 else PostGISProvider(definition(database, name=POSTGIS_PROVIDER))
        return all(
            json.dumps(shared.query(**q), sort_keys=True) == t
            for q, t in zip(queries, truth, strict=True)
            for _ in range(3)
        )

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(run, range(64)))


@pytest.mark.parametrize("end_field", ["end_time", None], ids=["intervals", "instants"])
@pytest.mark.parametrize(
    "window",
    ["2026-11-05/2026-11-12", "../2026-11-03", "2026-12-01/..", "2026-11-20", "2026-11-20T06:00:00Z", "2027-01-01/.."],
)
def test_window_counts_match_the_geopackage(database, layer, end_field, window):
    """numberMatched of a lone datetime= comes from sorted times held per version (server.features.pg_windows)."""
    gpkg = GeoPackageProvider(definition(layer, time_end_field=end_field, timezone="Asia/Irkutsk"))
    postgis = PostGISProvider(
        definition(database, name=POSTGIS_PROVIDER, time_end_field=end_field, timezone="Asia/Irkutsk")
    )
    for _counted_by in ("SQL while the sorted times are read", "the sorted times"):
        for query in ({"limit": 5}, {"limit": 0}, {"resulttype": "hits"}):
            expected = gpkg.query(datetime_=window, **query)
            assert postgis.query(datetime_=window, **query) == expected
        assert pg_windows.wait_for_reads(60)
        paging.clear()  # numberMatched is remembered per query: count again
    assert gpkg.query(datetime_=window, limit=1000)["numberMatched"] > 0 or window.startswith("2027")


def test_the_sorted_times_are_read_off_the_request(database):
    """The first window of a version is counted in SQL (None here) while a thread reads the sorted times (1-3 s on
    1M features, which a request used to wait for); the windows after are counted from them."""
    provider = PostGISProvider(definition(register_database(database), name=POSTGIS_PROVIDER))
    window = TimeWindow("start_time", "end_time", "2026-11-05T00:00:00.000Z", "2026-11-12T00:00:00.000Z")
    with pg_pool.pool(provider.url).connection() as connection:
        meta, version = provider._current(connection)
        pg_windows._held.clear()
        first = pg_windows.window_count(connection, provider.url, version, meta, window)
        assert pg_windows.wait_for_reads(60)
        counted = pg_windows.window_count(connection, provider.url, version, meta, window)
        expected = connection.execute(
            "SELECT count(*) FROM geoportal.repairs WHERE start_time <= %s AND (end_time >= %s OR end_time IS NULL)",
            (window.last, window.first),
        ).fetchone()[0]
    assert first is None
    assert counted == expected > 0


@pytest.mark.parametrize(
    "text",
    [
        "ACCENTI(address) LIKE ACCENTI('%Байкальская%')",  # й folds to и on both sides
        "ACCENTI(address) LIKE '%Байкальская%'",  # only the property is folded: nothing matches
        "CASEI(address) = CASEI('БАЙКАЛЬСКАЯ УЛ., 7')",
        "address LIKE '%Ленина%' AND NOT address LIKE 'ул.%'",
        "floors = '3'",  # text literal read as the integer property's type
        "network = 4",  # number literal compared with text, as SQLite's affinity does
        "has_detour = true OR depth BETWEEN 1 AND 2",
    ],
)
def test_folding_and_literal_typing_match_the_geopackage(database, layer, text):
    gpkg = GeoPackageProvider(definition(layer))
    postgis = PostGISProvider(definition(database, name=POSTGIS_PROVIDER))
    node = parse_cql2_text(text)
    expected = gpkg.query(filterq=node, limit=1000)
    assert postgis.query(filterq=node, limit=1000) == expected
    if "'%Байкальская%'" not in text or "ACCENTI('" in text:
        assert expected["numberMatched"] > 0 or "= CASEI" in text or "network = 4" in text


def test_date_properties_match_the_geopackage(postgres_cluster, tmp_path):
    """A DATE column (typed `date` in PostGIS): output text, comparisons, local-day windows and sorting."""
    from datetime import date as calendar_date

    import pyarrow as pa
    import pyogrio
    import shapely

    frame = repairs_frame(seed=9, count=120)
    days = [calendar_date(2026, 11, 1 + (n * 7) % 30) if n % 11 else None for n in range(len(frame))]
    table = pa.table(
        {
            "fid": pa.array(frame["fid"], pa.int64()),
            "permit_id": pa.array(frame["permit_id"]),
            "network": pa.array(frame["network"]),
            "day": pa.array(days, pa.date32()),
            "geom": pa.array(shapely.to_wkb(frame.geometry.values), pa.binary()),
        }
    )
    path = tmp_path / f"{TABLE}.gpkg"
    pyogrio.write_arrow(
        table, path, layer=TABLE, driver="GPKG", geometry_name="geom", geometry_type="Point", crs="EPSG:4326",
        layer_options={"FID": "fid", "GEOMETRY_NAME": "geom", "SPATIAL_INDEX": "YES"},
    )  # fmt: skip
    url = postgres_cluster.create_database(f"geoportal_dates_{os.getpid()}")
    load_geopackage(path, TABLE, url)
    by_day = {"time_field": "day", "time_end_field": None, "timezone": "Asia/Irkutsk"}
    by_day["properties"] = ["permit_id", "network", "day"]
    gpkg = GeoPackageProvider(definition(path, **by_day))
    postgis = PostGISProvider(definition(url, name=POSTGIS_PROVIDER, **by_day))
    assert gpkg.get_fields()["day"] == postgis.get_fields()["day"] == {"type": "string", "format": "date"}
    queries = [
        {"limit": 1000},
        {"datetime_": "2026-11-08/2026-11-15", "limit": 1000},
        {"datetime_": "2026-11-20T00:00:00+08:00", "limit": 1000},
        {"filterq": parse_cql2_text("day >= DATE('2026-11-10') AND day < '2026-11-20'"), "limit": 1000},
        {"filterq": parse_cql2_text("day LIKE '2026-11-1%'"), "limit": 1000},
        {"sortby": [{"property": "day", "order": "-"}], "limit": 50, "offset": 30},
        {"properties": [("day", "2026-11-08")], "limit": 1000},
    ]
    for query in queries:
        expected = gpkg.query(**query)
        assert postgis.query(**query) == expected, query
        assert expected["numberMatched"] > 0, query
    assert {f["properties"]["day"] for f in gpkg.query(limit=1000)["features"]} >= {"2026-11-08", None}


def test_read_ahead_the_first_window_of_a_version_is_counted_from_the_sorted_times(database):
    """After a publication the server reads each version's sorted times ahead (server.ogcapi.read_ahead): the first
    window asked is counted from them, not in SQL while they are read (nor kept waiting for them)."""
    provider = PostGISProvider(definition(register_database(database), name=POSTGIS_PROVIDER))
    window = TimeWindow("start_time", "end_time", "2026-11-05T00:00:00.000Z", "2026-11-12T00:00:00.000Z")
    pg_windows._held.clear()
    provider.read_ahead()
    assert pg_windows.wait_for_reads(60)
    with pg_pool.pool(provider.url).connection() as connection:
        meta, version = provider._current(connection)
        first = pg_windows.window_count(connection, provider.url, version, meta, window)
        expected = connection.execute(
            "SELECT count(*) FROM geoportal.repairs WHERE start_time <= %s AND (end_time >= %s OR end_time IS NULL)",
            (window.last, window.first),
        ).fetchone()[0]
    assert first == expected > 0
