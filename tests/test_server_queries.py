"""Item queries through the real server: bbox, datetime, CQL2, sortby, CRS and paging agree with the GeoPackages."""

from __future__ import annotations

import json

import pandas as pd
import pyproj
import pytest
import shapely

from layers.catalog import load_catalog
from tests.server_fixtures import (  # noqa: F401 - fixtures
    anonymous,
    fetch,
    published_frame,
    server,
    staff,
    walk,
)

CATALOG = load_catalog()
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"
MSK = "http://www.opengis.net/def/crs/CITY/0/msk38-3"
NOW = "2026-11-24T12:00:00Z"


@pytest.fixture(scope="module")
def repairs(server):  # noqa: F811
    return published_frame(server.paths, "repairs")


def ids(features: list[dict]) -> set[int]:
    return {f["id"] for f in features}


def central_box(frame) -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = frame.total_bounds
    dx, dy = (maxx - minx) / 4, (maxy - miny) / 4
    return minx + dx, miny + dy, maxx - dx, maxy - dy


def test_bbox_selects_the_features_it_intersects(anonymous, server):  # noqa: F811
    for layer_id in ["repairs", "road_closures", "police_precincts"]:
        frame = published_frame(server.paths, layer_id)
        box = central_box(frame)
        expected = set(frame.index[frame.intersects(shapely.box(*box))])
        assert 0 < len(expected) < len(frame), layer_id
        found = walk(anonymous, f"/collections/{layer_id}/items", bbox=",".join(map(str, box)), limit=10)
        assert ids(found) == expected, layer_id


def test_bbox_in_web_mercator(anonymous, repairs):  # noqa: F811
    box = central_box(repairs)
    to_mercator = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:3857", always_xy=True)
    (x1, x2), (y1, y2) = to_mercator.transform([box[0], box[2]], [box[1], box[3]])
    found = walk(
        anonymous, "/collections/repairs/items", bbox=f"{x1},{y1},{x2},{y2}", **{"bbox-crs": EPSG.format(3857)}
    )
    assert ids(found) == set(repairs.index[repairs.intersects(shapely.box(*box))])


def active(frame, start: str | None, end: str | None) -> set[int]:
    """Features active at some moment of [start, end]: begun by its end, not ended before its start."""
    keep = pd.Series(True, index=frame.index)
    if end is not None:
        keep &= frame["start_time"] <= pd.Timestamp(end)
    if start is not None:
        keep &= frame["end_time"].isna() | (frame["end_time"] >= pd.Timestamp(start))
    return set(frame.index[keep])


@pytest.mark.parametrize(
    ("datetime", "start", "end"),
    [
        (NOW, NOW, NOW),  # "closed now"
        ("2026-11-23T00:00:00Z/2026-11-29T23:59:59Z", "2026-11-23T00:00:00Z", "2026-11-29T23:59:59Z"),  # this week
        ("../2026-10-01T00:00:00Z", None, "2026-10-01T00:00:00Z"),
        ("2026-12-01T00:00:00Z/..", "2026-12-01T00:00:00Z", None),
    ],
)
def test_datetime_selects_features_active_then(anonymous, repairs, datetime, start, end):  # noqa: F811
    page = fetch(anonymous, "/collections/repairs/items", datetime=datetime, limit=1000)
    assert ids(page["features"]) == active(repairs, start, end)
    assert page["numberMatched"] == len(active(repairs, start, end))


def test_datetime_outside_the_extent_is_an_empty_page_not_an_error(anonymous):  # noqa: F811
    page = fetch(anonymous, "/collections/repairs/items", datetime="1999-01-01T00:00:00Z")
    assert page["numberMatched"] == 0 and page["features"] == []


CQL2_TEXT = [
    ("network = 'heat'", lambda f: f["network"] == "heat"),
    (
        "network IN ('heat', 'water') AND work_kind = 'emergency'",
        lambda f: f["network"].isin(["heat", "water"]) & (f["work_kind"] == "emergency"),
    ),
    ("NOT (network = 'heat') AND end_time IS NULL", lambda f: (f["network"] != "heat") & f["end_time"].isna()),
    ("CASEI(network) = CASEI('HEAT')", lambda f: f["network"] == "heat"),
    ("address LIKE '%Ленина%'", lambda f: f["address"].fillna("").str.contains("Ленина")),
    ("start_time >= TIMESTAMP('2026-11-01T00:00:00Z')", lambda f: f["start_time"] >= pd.Timestamp("2026-11-01T00:00Z")),
]


@pytest.mark.parametrize(("expression", "predicate"), CQL2_TEXT, ids=[e for e, _ in CQL2_TEXT])
def test_cql2_text_filters(anonymous, repairs, expression, predicate):  # noqa: F811
    expected = set(repairs.index[predicate(repairs)])
    page = fetch(anonymous, "/collections/repairs/items", filter=expression, **{"filter-lang": "cql2-text"}, limit=1000)
    assert ids(page["features"]) == expected and page["numberMatched"] == len(expected)


def test_cql2_between_on_integers(anonymous, server):  # noqa: F811
    districts = published_frame(server.paths, "election_districts")
    expected = set(districts.index[districts["district_no"].between(3, 7)])
    found = fetch(anonymous, "/collections/election_districts/items", filter="district_no BETWEEN 3 AND 7")
    assert ids(found["features"]) == expected and expected


def test_cql2_spatial_functions(anonymous, repairs):  # noqa: F811
    box = central_box(repairs)
    inside = set(repairs.index[repairs.intersects(shapely.box(*box))])
    bbox_text = f"S_INTERSECTS(geometry, BBOX({','.join(map(str, box))}))"
    assert ids(fetch(anonymous, "/collections/repairs/items", filter=bbox_text, limit=1000)["features"]) == inside
    within = f"S_WITHIN(geom, {shapely.box(*box).wkt})"
    assert ids(fetch(anonymous, "/collections/repairs/items", filter=within, limit=1000)["features"]) == inside


def test_cql2_json_by_get_and_post(anonymous, repairs):  # noqa: F811
    box = central_box(repairs)
    expression = {
        "op": "and",
        "args": [
            {"op": "=", "args": [{"property": "network"}, "heat"]},
            {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": list(box)}]},
        ],
    }
    expected = set(repairs.index[(repairs["network"] == "heat") & repairs.intersects(shapely.box(*box))])
    assert expected
    by_get = fetch(
        anonymous, "/collections/repairs/items", filter=json.dumps(expression), **{"filter-lang": "cql2-json"}
    )
    assert ids(by_get["features"]) == expected
    response = anonymous.post(
        "/collections/repairs/items",
        content=json.dumps(expression),
        headers={"Content-Type": "application/query-cql-json"},
    )
    assert response.status_code == 200, response.text
    assert ids(response.json()["features"]) == expected


def test_next_links_keep_the_filter(anonymous, repairs):  # noqa: F811
    expected = set(repairs.index[repairs["work_kind"] == "emergency"])
    found = walk(anonymous, "/collections/repairs/items", filter="work_kind = 'emergency'", limit=7)
    assert len(found) == len(ids(found)) and ids(found) == expected


def test_a_bad_filter_is_a_400_with_a_message(anonymous):  # noqa: F811
    response = anonymous.get("/collections/repairs/items", params={"filter": "network = = 'heat'"})
    assert response.status_code == 400 and response.json()["code"] == "InvalidParameterValue"
    response = anonymous.get("/collections/repairs/items", params={"filter": "no_such_field = 1"})
    assert response.status_code == 400


def test_sortby(anonymous, repairs):  # noqa: F811
    latest_first = walk(anonymous, "/collections/repairs/items", sortby="-start_time", limit=50)
    starts = [f["properties"]["start_time"] for f in latest_first]
    assert starts == sorted(starts, reverse=True) and len(starts) == len(repairs)
    by_network = walk(anonymous, "/collections/repairs/items", sortby="network,-permit_id", limit=50)
    keys = [(f["properties"]["network"], f["properties"]["permit_id"]) for f in by_network]
    expected = sorted(zip(repairs["network"], repairs["permit_id"], strict=True), key=lambda k: k[1], reverse=True)
    assert keys == sorted(expected, key=lambda k: k[0])


@pytest.mark.parametrize(
    ("crs", "definition", "lat_first"),
    [
        (EPSG.format(3857), "EPSG:3857", False),
        (EPSG.format(4326), "EPSG:4326", True),
        (MSK, CATALOG.city.crs["msk38-3"].proj4, False),
    ],
)
def test_output_crs(anonymous, repairs, crs, definition, lat_first):  # noqa: F811
    response = anonymous.get("/collections/repairs/items", params={"crs": crs, "limit": 20})
    assert response.status_code == 200 and response.headers["Content-Crs"] == f"<{crs}>"
    transform = pyproj.Transformer.from_crs("OGC:CRS84", pyproj.CRS.from_user_input(definition), always_xy=True)
    for feature in response.json()["features"]:
        lon, lat = repairs.geometry[feature["id"]].coords[0]
        x, y = transform.transform(lon, lat)
        expected = (lat, lon) if lat_first else (x, y)
        assert feature["geometry"]["coordinates"] == pytest.approx(expected, abs=1e-6)
    item = anonymous.get(f"/collections/repairs/items/{repairs.index[0]}", params={"crs": crs})
    assert item.status_code == 200 and item.headers["Content-Crs"] == f"<{crs}>"


def test_default_crs_is_announced_and_unknown_crs_refused(anonymous):  # noqa: F811
    response = anonymous.get("/collections/repairs/items", params={"limit": 1})
    assert response.headers["Content-Crs"] == f"<{CRS84}>"
    refused = anonymous.get("/collections/repairs/items", params={"crs": EPSG.format(32648)})
    assert refused.status_code == 400


def test_deep_paging_walks_every_feature_once(staff, server):  # noqa: F811
    frame = published_frame(server.paths, "addresses")
    first = fetch(staff, "/collections/addresses/items", limit=100)
    assert first["numberMatched"] == len(frame)
    walked = walk(staff, "/collections/addresses/items", limit=100)
    assert len(ids(walked)) == len(walked) == len(frame)  # no feature twice, none skipped
    assert ids(walked) == set(frame.index)
    deep = fetch(staff, "/collections/addresses/items", offset=1500, limit=100)
    assert [f["id"] for f in deep["features"]] == [f["id"] for f in walked[1500:1600]]
    assert deep["numberMatched"] == len(frame)


def test_properties_skip_geometry_and_explicit_nulls(anonymous, server):  # noqa: F811
    page = fetch(anonymous, "/collections/repairs/items", properties="permit_id,network", skipGeometry="true", limit=5)
    assert all(set(f["properties"]) == {"permit_id", "network"} and f["geometry"] is None for f in page["features"])
    for spec in CATALOG.public():
        features = fetch(anonymous, f"/collections/{spec.id}/items", limit=1000)["features"]
        public = {f.name for f in spec.public_fields}
        assert features and all(set(f["properties"]) == public for f in features), spec.id


def test_item_by_id_and_unknown_ids(anonymous, repairs):  # noqa: F811
    fid = int(repairs.index[0])
    response = anonymous.get(f"/collections/repairs/items/{fid}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/geo+json")
    assert response.json()["properties"]["permit_id"] == repairs.loc[fid, "permit_id"]
    for unknown in ["1", "not-a-number"]:
        missing = anonymous.get(f"/collections/repairs/items/{unknown}")
        assert missing.status_code == 404 and missing.json()["code"] == "NotFound"


def test_limits(anonymous, server):  # noqa: F811
    addresses_free = fetch(anonymous, "/collections/repairs/items")  # default page
    assert addresses_free["numberReturned"] == min(1000, addresses_free["numberMatched"])
    assert anonymous.get("/collections/repairs/items", params={"limit": 0}).status_code == 400
    assert fetch(anonymous, "/collections/repairs/items", limit=50000)["numberReturned"] <= 10000


def test_conformance_declares_filters_and_crs(anonymous):  # noqa: F811
    classes = set(fetch(anonymous, "/conformance")["conformsTo"])
    for needed in [
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
        "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    ]:
        assert needed in classes
    assert not any("create-replace-delete" in c for c in classes)  # read-only


def test_openapi_limit_for_qgis(anonymous):  # noqa: F811
    limit = fetch(anonymous, "/openapi")["components"]["parameters"]["limit"]["schema"]
    assert limit["maximum"] >= 1000 and "default" in limit


def test_collection_metadata(anonymous):  # noqa: F811
    repairs = fetch(anonymous, "/collections/repairs")
    assert repairs["storageCrs"] == CRS84 and MSK in repairs["crs"] and EPSG.format(4326) in repairs["crs"]
    assert repairs["extent"]["temporal"]["interval"][0][0].startswith("2026")
    download = next(link for link in repairs["links"] if link["rel"] == "enclosure")
    assert download["href"].endswith("/downloads/repairs.gpkg") and download["type"] == "application/geopackage+sqlite3"
    english = fetch(anonymous, "/collections/repairs", lang="en")
    assert english["title"] == CATALOG["repairs"].title.en and repairs["title"] == CATALOG["repairs"].title.ru


def test_every_link_of_the_landing_page_and_a_collection_answers(anonymous):  # noqa: F811
    links = fetch(anonymous, "/")["links"] + fetch(anonymous, "/collections/repairs")["links"]
    for link in links:
        if link["href"].startswith(str(anonymous.base_url).rstrip("/")):
            assert anonymous.get(link["href"]).status_code == 200, link["href"]


@pytest.mark.parametrize(
    "path", ["/", "/collections", "/collections/repairs", "/collections/repairs/items", "/conformance", "/openapi"]
)
def test_html_pages(anonymous, path):  # noqa: F811
    response = anonymous.get(path, params={"f": "html"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
