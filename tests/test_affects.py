"""`/affects` over HTTP on the real server: the sample's control address and point get the events and people the
published layers say (checked against an independent computation in metres), a miss gets candidates, bad input is a
400, and without a key no internal layer, field or value is anywhere in the bytes."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pyogrio
import pyproj
import pytest
from shapely.geometry import Point

from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from tests.conftest import SAMPLE_MOMENT
from tests.server_fixtures import anonymous, private_server, server, staff  # noqa: F401 - fixtures

EXPECTED = json.loads((REPO_ROOT / "data/sample/irkutsk/expected.json").read_text(encoding="utf-8"))
CONTROL = EXPECTED["control_point"]  # ул. Ленина 5А, a register building at a surveyed point
METRIC = "EPSG:32648"  # UTM 48N: Irkutsk is at 104° E; the server measures on its own local projection
EVENT_DOMAINS = {"repairs", "closures", "outages"}
ZONES = {"election_districts": "deputy_name", "police_precincts": "officer_name", "management_companies": "name"}


def register_row(paths) -> pd.Series:
    register = pyogrio.read_dataframe(paths.published_path("addresses"))
    return register[register.address_id == CONTROL["code"]].iloc[0]


def expected_events(paths, place: Point, radius: float, at: str) -> tuple[set, set]:
    """(layer, id) of every published event not ended at `at` within `radius` m of `place`, and apart those
    within a metre of the edge, where two projections may disagree."""
    moment = pd.Timestamp(at)
    origin = pyproj.Transformer.from_crs(4326, METRIC, always_xy=True).transform(place.x, place.y)
    found, edge = set(), set()
    for spec in load_catalog().values():
        if spec.domain not in EVENT_DOMAINS or spec.access != "public":
            continue
        frame = pyogrio.read_dataframe(paths.published_path(spec.id))
        ends = pd.to_datetime(frame[spec.temporal.end], utc=True)
        distance = frame.to_crs(METRIC).distance(Point(origin))
        for row_id, end, metres in zip(frame[spec.id_field], ends, distance, strict=True):
            if not (pd.isna(end) or end >= moment):
                continue
            if abs(metres - radius) < 1:
                edge.add((spec.id, str(row_id)))
            elif metres < radius:
                found.add((spec.id, str(row_id)))
    return found, edge


def answered_events(answer: dict) -> set[tuple[str, str]]:
    return {(event["layer"], event["id"]) for domain in answer["domains"] for event in domain["events"]}


def zones_of(paths, place: Point) -> dict[str, pd.Series]:
    found = {}
    for layer in ZONES:
        frame = pyogrio.read_dataframe(paths.published_path(layer))
        found[layer] = frame[frame.contains(place)].iloc[0]
    return found


def get(client, **params):
    response = client.get("/affects", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_known_address_lists_the_events_and_people_around_it(anonymous, server):  # noqa: F811
    answer = get(anonymous, address="ул. Ленина, 5А", at=SAMPLE_MOMENT)
    building = register_row(server.paths)
    assert answer["matched"] is True
    assert answer["building"]["properties"] == {"address": building.full_address}
    lon, lat = answer["building"]["geometry"]["coordinates"]
    assert (round(lon, 4), round(lat, 4)) == (CONTROL["lon"], CONTROL["lat"])

    expected, edge = expected_events(server.paths, building.geometry, 150, SAMPLE_MOMENT)
    answered = answered_events(answer)
    assert expected, "the control address has events around it in the sample"
    assert answered - edge == expected
    catalog = load_catalog()
    for domain in answer["domains"]:
        for event in domain["events"]:
            assert catalog[event["layer"]].domain == domain["id"]
            assert event["state"] == ("active" if event["start"] <= "2026-11-24T04:00:00.000Z" else "upcoming")
            assert 0 <= event["distance_m"] <= 150
    assert {e["state"] for d in answer["domains"] for e in d["events"]} == {"active", "upcoming"}

    zones = {zone["layer"]: zone["properties"] for zone in answer["zones"]}
    for layer, row in zones_of(server.paths, building.geometry).items():
        person = ZONES[layer]
        assert zones[layer][person] == row[person] and row[person]
    assert zones["election_districts"]["reception_phone"]  # whom to call
    assert zones["management_companies"]["dispatcher_phone"]


def test_point_gets_the_same_answer_and_names_the_building(anonymous, server):  # noqa: F811
    by_address = get(anonymous, address="Ленина 5а", at=SAMPLE_MOMENT)
    by_point = get(anonymous, lon=CONTROL["lon"], lat=CONTROL["lat"], at=SAMPLE_MOMENT)
    assert by_point["building"]["properties"]["address"] == by_address["building"]["properties"]["address"]
    assert by_point["building"]["properties"]["distance_m"] < 1
    assert answered_events(by_point) == answered_events(by_address)
    assert [z["id"] for z in by_point["zones"]] == [z["id"] for z in by_address["zones"]]

    wider = get(anonymous, lon=CONTROL["lon"], lat=CONTROL["lat"], at=SAMPLE_MOMENT, radius=400)
    expected, edge = expected_events(server.paths, Point(CONTROL["lon"], CONTROL["lat"]), 400, SAMPLE_MOMENT)
    assert answered_events(wider) - edge == expected
    assert answered_events(wider) > answered_events(by_point)


def test_events_that_ended_before_the_moment_are_not_listed(anonymous):  # noqa: F811
    now = get(anonymous, address="ул. Ленина, 5А", at=SAMPLE_MOMENT, radius=400)
    later = get(anonymous, address="ул. Ленина, 5А", at="2027-06-01T00:00:00Z", radius=400)
    ended = {
        (e["layer"], e["id"])
        for d in now["domains"]
        for e in d["events"]
        if e["end"] and e["end"] < "2027-06-01T00:00:00.000Z"
    }
    assert ended and not ended & answered_events(later)


@pytest.mark.parametrize(
    ("text", "street"),
    [("ул. Ленина, 9999", "ул. Ленина"), ("Ленена 5", "ул. Ленина"), ("Карла Маркса, 9999", "ул. Карла Маркса")],
)
def test_unknown_address_gets_the_closest_candidates(anonymous, text, street):  # noqa: F811
    answer = get(anonymous, address=text, at=SAMPLE_MOMENT)
    assert answer["matched"] is False and answer["building"] is None
    assert answer["domains"] == [] and answer["zones"] == []
    assert answer["reason"]
    assert answer["candidates"] and all(street in c["address"] for c in answer["candidates"])
    follow = anonymous.get(answer["candidates"][0]["href"].replace(str(anonymous.base_url).rstrip("/"), ""))
    assert follow.status_code == 200 and follow.json()["matched"] is True


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"address": ""},
        {"address": "x" * 500},
        {"lon": "104.28"},
        {"lon": "abc", "lat": "52.28"},
        {"lon": "nan", "lat": "52.28"},
        {"lon": "0", "lat": "0"},
        {"address": "Ленина 5", "lon": "104.28", "lat": "52.28"},
        {"address": "Ленина 5", "at": "yesterday"},
        {"address": "Ленина 5", "radius": "-1"},
        {"address": "Ленина 5", "radius": "50000"},
        {"address": "Ленина 5", "radius": "wide"},
        {"address": "Ленина 5", "f": "xml"},
        {"address": "Ленина 5", "lang": "de"},
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(anonymous, params):  # noqa: F811
    response = anonymous.get("/affects", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "InvalidParameterValue" and body["description"]


def test_html_for_browsers_in_the_language_asked(anonymous, server):  # noqa: F811
    page = anonymous.get(
        "/affects", params={"address": "ул. Ленина, 5А", "at": SAMPLE_MOMENT}, headers={"Accept": "text/html"}
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    answer = get(anonymous, address="ул. Ленина, 5А", at=SAMPLE_MOMENT)
    text = page.text
    assert answer["building"]["properties"]["address"] in text
    for _layer, event_id in answered_events(answer):
        assert f'data-id="{event_id}"' in text
    for zone in answer["zones"]:
        assert zone["properties"][ZONES[zone["layer"]]] in text
    english = anonymous.get(
        "/affects", params={"address": "ул. Ленина, 5А", "at": SAMPLE_MOMENT, "f": "html", "lang": "en"}
    )
    assert "Who answers for this address" in english.text and "Repairs and excavations" in english.text
    missing = anonymous.get("/affects", params={"address": "Ленина 9999", "f": "html"})
    assert 'id="no-match"' in missing.text and 'id="candidates"' in missing.text


def internal_words() -> set[str]:
    catalog = load_catalog()
    words = {spec.id for spec in catalog.values() if spec.access == "internal"}
    words |= {f.name for spec in catalog.values() for f in spec.fields if f.internal}
    words |= {f.name for f in catalog["addresses"].fields if f.name not in ("full_address",)} - {"street", "house"}
    return words


def internal_values(server, answer: dict) -> set[str]:  # noqa: F811
    """Values of internal fields of the very features the answer names, and the control building's register id."""
    catalog = load_catalog()
    values = {CONTROL["code"]}
    named = answered_events(answer) | {(z["layer"], z["id"]) for z in answer["zones"]}
    for layer, feature_id in named:
        spec = catalog[layer]
        frame = pyogrio.read_dataframe(server.paths.published_path(layer), read_geometry=False)
        row = frame[frame[spec.id_field].astype(str) == feature_id].iloc[0]
        values |= {str(row[f.name]) for f in spec.fields if f.internal and f.name in row and pd.notna(row[f.name])}
    return {v for v in values if len(v) > 3}


def test_no_key_no_internal_layer_field_or_value_in_the_bytes(anonymous, staff, server):  # noqa: F811
    requests = [
        {"address": "ул. Ленина, 5А", "at": SAMPLE_MOMENT, "radius": "1000"},
        {"lon": CONTROL["lon"], "lat": CONTROL["lat"], "at": SAMPLE_MOMENT, "radius": "1000"},
        {"address": "Ленина 9999"},
        {"address": "ул. Ленина, 5А", "at": SAMPLE_MOMENT, "radius": "1000", "f": "html"},
    ]
    full = get(staff, **requests[0])
    secrets = internal_values(server, full)
    assert len(secrets) > 3
    words = internal_words()
    for params in requests:
        body = anonymous.get("/affects", params=params).content.decode("utf-8")
        assert not [w for w in words if w in body], params
        assert not [v for v in secrets if v in body], params
    # the staff key does see the internal fields of the same events: the check above can fail
    assert "contractor_phone" in json.dumps(full, ensure_ascii=False)


def execute(client, inputs) -> httpx.Response:
    return client.post("/processes/affects/execution", json={"inputs": inputs})


def test_the_same_answer_as_an_ogc_api_process(anonymous, staff):  # noqa: F811
    listed = anonymous.get("/processes").json()["processes"]
    assert [p["id"] for p in listed] == ["affects"]
    described = anonymous.get("/processes/affects").json()
    assert {"address", "lon", "lat", "at", "radius"} <= set(described["inputs"])
    conformance = anonymous.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conformance

    inputs = {"address": "ул. Ленина, 5А", "at": SAMPLE_MOMENT, "radius": 400}
    executed = execute(anonymous, inputs)
    assert executed.status_code == 200, executed.text
    direct = get(anonymous, **inputs)
    assert executed.json()["building"] == direct["building"]
    assert answered_events(executed.json()) == answered_events(direct)
    assert not [w for w in internal_words() if w in executed.text]
    # the process runs at the caller's level: the staff key's configuration carries the internal fields
    assert "contractor_phone" in execute(staff, inputs).text

    point = execute(anonymous, {"lon": CONTROL["lon"], "lat": CONTROL["lat"], "at": SAMPLE_MOMENT})
    assert point.status_code == 200
    assert point.json()["building"]["properties"]["address"] == direct["building"]["properties"]["address"]


@pytest.mark.parametrize(
    "inputs",
    [{}, {"address": ""}, {"radius": "x", "address": "Ленина 5"}, {"address": ["Ленина 5"]}, {"city": "Иркутск"}],
)
def test_process_refuses_bad_inputs_with_a_400(anonymous, inputs):  # noqa: F811
    response = execute(anonymous, inputs)
    assert response.status_code == 400, response.text
    assert response.json()["description"]


@pytest.mark.parametrize(
    "body",
    [b"[]", b"null", b'"x"', b"not json", b'{"inputs": {}, "subscriber": {"successUri": "http://127.0.0.1:9/"}}',
     b'{"inputs": {"address": "Lenina 5"}, "response": "x"}', b'{"inputs": {"address": "Lenina 5"}, "outputs": 1}'],
)  # fmt: skip
def test_process_refuses_malformed_execute_requests_with_a_400(anonymous, server, body):  # noqa: F811
    response = anonymous.post(
        "/processes/affects/execution", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "Traceback" not in server.log_text()


def test_an_unreadable_layer_is_left_out_and_named(private_server):  # noqa: F811
    """A published file that cannot be read costs its own events, named in the answer and one log line."""
    path = private_server.paths.published_path("repairs")
    broken = path.with_suffix(".part")
    broken.write_bytes(b"not a GeoPackage " * 100)
    broken.replace(path)  # a new inode, as a publication makes
    with private_server.client() as client:
        answer = get(client, address="ул. Ленина, 5А", at=SAMPLE_MOMENT, radius=400)
        page = client.get("/affects", params={"address": "ул. Ленина, 5А", "at": SAMPLE_MOMENT, "f": "html"})
    assert answer["unavailable"] == ["repairs"]
    assert "repairs" not in {d["id"] for d in answer["domains"]} and answer["domains"] and answer["zones"]
    assert page.status_code == 200 and 'id="unavailable"' in page.text
    assert "/affects: repairs left out" in private_server.log_text()
