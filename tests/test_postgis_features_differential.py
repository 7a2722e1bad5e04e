"""The same feature questions asked of `python -m server` over each store: one pipeline run published the sample
city both as GeoPackages and into PostGIS, one server reads the files, the other reads the database directly
(server.features.postgis_provider), and every answer must be the same: status, ids, properties, geometries,
numberMatched, the pages a client walks through `next` links, for a public caller and for staff."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests import pg
from tests.conftest import SAMPLE_MOMENT
from tests.server_fixtures import STAFF_KEY, RunningServer
from tests.test_postgis_server import both_servers  # noqa: F401 - the fixture: a server per store

postgres_cluster, published_city_postgis = pg.postgres_cluster, pg.published_city_postgis

EPSG_3857 = "http://www.opengis.net/def/crs/EPSG/0/3857"
EPSG_4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"
MSK = "http://www.opengis.net/def/crs/CITY/0/msk38-3"
POLYGON = "POLYGON((104.2 52.2, 104.35 52.2, 104.35 52.32, 104.2 52.32, 104.2 52.2))"
REPAIRS, CLOSURES, OUTAGES = (
    "/collections/repairs/items",
    "/collections/road_closures/items",
    "/collections/outages/items",
)


def cql_json(expression: dict) -> dict:
    return {"filter": json.dumps(expression, ensure_ascii=False), "filter-lang": "cql2-json"}


def text(expression: str) -> dict:
    return {"filter": expression, "filter-lang": "cql2-text"}


QUERIES: list[tuple[str, str, dict]] = [
    ("all repairs", REPAIRS, {"limit": 1000}),
    ("small bbox", REPAIRS, {"bbox": "104.25,52.25,104.30,52.30"}),
    ("bbox, offset", REPAIRS, {"bbox": "104.1,52.2,104.4,52.4", "limit": 5, "offset": 3}),
    ("bbox-crs 3857", REPAIRS, {"bbox": "11605000,6840000,11620000,6860000", "bbox-crs": EPSG_3857}),
    ("bbox-crs 4326 lat first", REPAIRS, {"bbox": "52.25,104.25,52.30,104.30", "bbox-crs": EPSG_4326}),
    ("datetime instant", CLOSURES, {"datetime": f"{SAMPLE_MOMENT[:19]}Z", "limit": 1000}),
    ("datetime local day", CLOSURES, {"datetime": SAMPLE_MOMENT[:10], "limit": 1000}),
    ("datetime open start", REPAIRS, {"datetime": "../2026-11-20", "limit": 1000}),
    ("datetime open end", REPAIRS, {"datetime": "2026-11-25/..", "limit": 1000}),
    ("datetime month", REPAIRS, {"datetime": "2026-11-01/2026-11-30", "limit": 1000}),
    ("datetime offset zone", OUTAGES, {"datetime": "2026-11-24T10:00:00+08:00/2026-11-24T18:00:00+08:00"}),
    ("text and time", OUTAGES, text("resource = 'heating' AND start_time > TIMESTAMP('2026-01-01T00:00:00Z')")),
    ("in", REPAIRS, {**text("network IN ('heat', 'water')"), "limit": 1000}),
    ("like", REPAIRS, {**text("address LIKE '%Ленина%'"), "limit": 1000}),
    ("casei like", REPAIRS, {**text("CASEI(address) LIKE CASEI('%ЛЕНИНА%')"), "limit": 1000}),
    ("casei equals", REPAIRS, text("CASEI(network) = CASEI('HEAT')")),
    ("accenti", REPAIRS, text("ACCENTI(address) LIKE ACCENTI('%е%')")),
    ("not like", REPAIRS, {**text("address NOT LIKE '%ул.%'"), "limit": 1000}),
    ("between integers", "/collections/election_districts/items", text("district_no BETWEEN 2 AND 5")),
    ("integer compared with text", "/collections/election_districts/items", text("district_no = 3")),
    ("boolean", CLOSURES, {**text("has_detour = true"), "limit": 1000}),
    ("is null", REPAIRS, {**text("end_time IS NULL"), "limit": 1000}),
    ("is not null and or", REPAIRS, text("end_time IS NOT NULL AND (network = 'gas' OR network = 'power')")),
    ("temporal after", REPAIRS, text("T_AFTER(start_time, TIMESTAMP('2026-11-20T00:00:00Z'))")),
    ("date literal on a datetime", REPAIRS, text("start_time >= DATE('2026-11-24')")),
    ("s_intersects", REPAIRS, {**text(f"S_INTERSECTS(geom, {POLYGON})"), "limit": 1000}),
    ("s_within bbox", REPAIRS, text("S_WITHIN(geom, BBOX(104.2, 52.2, 104.35, 52.32))")),
    ("spatial under or", REPAIRS, {**text(f"network = 'gas' OR S_INTERSECTS(geom, {POLYGON})"), "limit": 1000}),
    ("not", REPAIRS, {**text("NOT (network = 'heat')"), "limit": 1000}),
    (
        "json and",
        REPAIRS,
        cql_json(
            {
                "op": "and",
                "args": [
                    {"op": "=", "args": [{"property": "network"}, "heat"]},
                    {"op": "s_intersects", "args": [{"property": "geom"}, {"bbox": [104.1, 52.2, 104.4, 52.4]}]},
                ],
            }
        ),
    ),
    ("json in", REPAIRS, cql_json({"op": "in", "args": [{"property": "network"}, ["gas", "power"]]})),
    ("json like", REPAIRS, cql_json({"op": "like", "args": [{"property": "address"}, "%Карла%"]})),
    ("sortby two keys", REPAIRS, {"sortby": "-start_time,permit_id", "limit": 40, "offset": 10}),
    ("sortby with nulls", REPAIRS, {"sortby": "end_time", "limit": 1000}),
    ("sortby nulls descending", REPAIRS, {"sortby": "-end_time,+network", "limit": 1000}),
    ("sortby text", CLOSURES, {"sortby": "road_name", "limit": 1000}),
    ("q", REPAIRS, {"q": "ленина", "limit": 1000}),
    ("q two terms", REPAIRS, {"q": "ЛЕНИНА,маркса", "limit": 1000}),
    ("properties", REPAIRS, {"properties": "permit_id,network", "limit": 50}),
    ("skip geometry", REPAIRS, {"skipGeometry": "true", "limit": 50}),
    ("hits", REPAIRS, {"resulttype": "hits", "bbox": "104.1,52.2,104.4,52.4"}),
    ("crs 3857", REPAIRS, {"crs": EPSG_3857, "limit": 50}),
    ("crs city", REPAIRS, {"crs": MSK, "limit": 50}),
    ("crs 4326 lat first", CLOSURES, {"crs": EPSG_4326, "limit": 50}),
    ("offset past the end", REPAIRS, {"offset": 100000}),
    ("unknown field", REPAIRS, text("no_such_field = 1")),
    ("internal field filtered", REPAIRS, text("contractor_phone IS NULL")),
    ("internal field sorted", REPAIRS, {"sortby": "contractor_phone"}),
    ("bad datetime", REPAIRS, {"datetime": "yesterday"}),
    ("reversed bbox", REPAIRS, {"bbox": "104.3,52.3,104.2,52.2"}),
    ("bad filter", REPAIRS, text("network = = 'x'")),
    ("bad limit", REPAIRS, {"limit": "many"}),
]
WALKS = [
    ("walk bbox", REPAIRS, {"bbox": "104.0,52.2,104.5,52.4", "limit": 37}),
    ("walk sorted", REPAIRS, {"sortby": "-end_time", "limit": 41}),
    (
        "walk window and filter",
        CLOSURES,
        {"datetime": "2026-11-01/2026-12-31", **text("has_detour = false"), "limit": 3},
    ),
]
CALLERS = {"public": None, "staff": STAFF_KEY}


def answer(server: RunningServer, path: str, params: dict, key: str | None) -> tuple[int, object]:
    """Status and body, the links' host (each server has its own port) and the response time stamp taken out."""
    with server.client(key) as client:
        response = client.get(path, params={"f": "json", **params})
    if response.headers.get("content-type", "").startswith("application/json") or response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            return response.status_code, response.text
    else:
        body = response.json()
    if isinstance(body, dict):
        body.pop("timeStamp", None)
        body["links"] = [_relative(link) for link in body.get("links", [])]
    return response.status_code, body


def _relative(link: dict) -> dict:
    parts = urlsplit(link["href"])
    return {**link, "href": f"{parts.path}?{parts.query}"}


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("name", "path", "params"), QUERIES, ids=[q[0] for q in QUERIES])
def test_the_same_answer_from_either_store(both_servers, name: str, path: str, params: dict, caller: str):  # noqa: F811
    key = CALLERS[caller]
    files = answer(both_servers["geopackage"], path, params, key)
    database = answer(both_servers["postgis"], path, params, key)
    assert database == files
    if caller == "public" and files[0] == 200 and path == REPAIRS:
        assert all("contractor_phone" not in f["properties"] for f in files[1]["features"])  # staff-only field


def test_the_questions_select_something(both_servers):  # noqa: F811
    """A comparison of two empty answers proves little: most questions must find features."""
    found = [
        name
        for name, path, params in QUERIES
        if (status := answer(both_servers["geopackage"], path, params, STAFF_KEY))[0] == 200
        and status[1].get("features")
    ]
    assert len(found) >= 35, found


@pytest.mark.parametrize(("name", "path", "params"), WALKS, ids=[w[0] for w in WALKS])
def test_walking_the_next_links_gives_the_same_pages(both_servers, name: str, path: str, params: dict):  # noqa: F811
    walked = {}
    for store, server in both_servers.items():
        pages, query, hrefs = [], {"f": "json", **params}, []
        with server.client(STAFF_KEY) as client:
            url: str | None = path
            while url:
                body = client.get(url, params=query or None).json()
                pages.append(([f["id"] for f in body["features"]], body["numberMatched"], body["numberReturned"]))
                url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
                hrefs.append(url)
                query = {}
                assert len(pages) < 500
        walked[store] = pages
    assert walked["postgis"] == walked["geopackage"]
    ids = [i for page, _, _ in walked["postgis"] for i in page]
    assert len(ids) == len(set(ids)) == walked["postgis"][0][1] > params["limit"], hrefs


def test_items_by_id_are_the_same(both_servers):  # noqa: F811
    _, page = answer(both_servers["geopackage"], REPAIRS, {"limit": 3}, STAFF_KEY)
    paths = [f"{REPAIRS}/{f['id']}" for f in page["features"]] + [f"{REPAIRS}/1", f"{REPAIRS}/abc", f"{REPAIRS}/1e99"]
    for path in paths:
        for key in CALLERS.values():
            for params in ({}, {"crs": MSK}):
                files = answer(both_servers["geopackage"], path, params, key)
                assert answer(both_servers["postgis"], path, params, key) == files
    assert answer(both_servers["postgis"], f"{REPAIRS}/1", {}, None)[0] == 404
