"""What changed, over HTTP on the real server: a republication with one closure ended and one added is exactly those
two changes in `/changes` and in the Atom feed; the WZDx 4.2 feed validates against the official schemas (offline);
without a key no internal layer, field or value is anywhere in the bytes; an internal-only edit is staff-only."""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import dagster as dg
import geopandas as gpd
import jsonschema
import pyogrio
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from shapely.geometry import Point

from assets.changes import BASELINE, KINDS, read_changes, record_publication, stamp
from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from pipelines.factory import layer_asset
from tests.conftest import SHARED_DATA, city_paths, resource_for
from tests.server_fixtures import STAFF_KEY, VISITOR_KEY, start_server, stop_server

ATOM = "{http://www.w3.org/2005/Atom}"
WZDX = SHARED_DATA / "wzdx"
SAMPLE_CSV = REPO_ROOT / "data/sample/irkutsk/closures/municipal_closures.csv"
ENDED, ADDED = "ПД-2026-103", "ПД-2026-901"
INTERNAL_LAYERS = ("conflicts", "addresses")


def republish_closures(paths) -> None:
    """The city's closures file delivered again without ENDED and with ADDED (a copy of another row, new id)."""
    rows = list(csv.reader(io.StringIO(SAMPLE_CSV.read_text(encoding="cp1251")), delimiter=";"))
    header, body = rows[0], [row for row in rows[1:] if row[0] != ENDED]
    assert len(body) == len(rows) - 2, f"{ENDED} is in the sample once"
    added = list(body[0])
    added[0], added[5], added[6] = ADDED, "01.12.2026 09:00", "20.01.2027 18:00"
    target = paths.live_dir / "closures" / SAMPLE_CSV.name
    target.parent.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows([header, *body, added])
    target.write_bytes(out.getvalue().encode("cp1251"))
    catalog = load_catalog()
    result = dg.materialize(
        [layer_asset(catalog["road_closures"], set())], resources={"geoportal": resource_for(paths)}
    )
    assert result.success


@pytest.fixture(scope="module")
def republished(published_city, tmp_path_factory):
    """A copy of the published sample, its closures republished once; the server over it; the moment between."""
    paths = city_paths(tmp_path_factory.mktemp("changes"))
    shutil.copytree(published_city.published_dir, paths.published_dir)
    logged = read_changes(paths.changes_path(), ["road_closures"], "", public=False, kinds=(*KINDS, BASELINE))
    last = max(change.at for change in logged)
    deadline = time.monotonic() + 5
    while stamp(datetime.now(UTC)) <= last and time.monotonic() < deadline:  # the log is dated to the second
        time.sleep(0.05)
    since = stamp(datetime.now(UTC))
    republish_closures(paths)
    server = start_server(paths, tmp_path_factory.mktemp("changes-server") / "server.log")
    yield server, since
    stop_server(server)


def test_changes_are_the_ended_and_the_added_closure(republished):
    server, since = republished
    with server.client() as client:
        answer = client.get("/changes", params={"since": since, "layer": "road_closures"})
    assert answer.status_code == 200, answer.text
    found = {(c["kind"], c["id"]) for c in answer.json()["changes"]}
    assert found == {("ended", ENDED), ("appeared", ADDED)}
    added = next(c for c in answer.json()["changes"] if c["id"] == ADDED)
    assert added["properties"]["closure_id"] == ADDED and added["properties"]["road_name"]
    ended = next(c for c in answer.json()["changes"] if c["id"] == ENDED)
    assert ended["properties"]["road_name"] == "ул. Свердлова", "an ended feature keeps the fields it had"


def test_atom_feed_has_exactly_those_entries(republished):
    server, since = republished
    with server.client() as client:
        answer = client.get("/feeds/road_closures.atom", params={"since": since})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(answer.content)
    entries = feed.findall(f"{ATOM}entry")
    kinds = {entry.find(f"{ATOM}category").get("term") for entry in entries}
    titles = " ".join(entry.find(f"{ATOM}title").text for entry in entries)
    assert len(entries) == 2 and kinds == {"ended", "appeared"}
    assert ENDED in titles and ADDED in titles
    link = next(e for e in entries if ADDED in e.find(f"{ATOM}title").text).find(f"{ATOM}link").get("href")
    with server.client() as client:
        item = client.get(link.removeprefix(server.url), params={"f": "json"})
    assert item.status_code == 200 and item.json()["properties"]["closure_id"] == ADDED


def wzdx_validator() -> jsonschema.Draft7Validator:
    """The official 4.2 schemas with GeoJSON's, registered by `$id`: every `$ref` resolves offline."""
    files = [*WZDX.glob("schemas-4.2/*.json"), *WZDX.glob("geojson-schema/*.json")]
    documents = [json.loads(path.read_text(encoding="utf-8")) for path in files]
    registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT7)) for doc in documents if "$id" in doc
    )
    schema = json.loads((WZDX / "schemas-4.2/WorkZoneFeed.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())


@pytest.mark.skipif(not (WZDX / "schemas-4.2").is_dir(), reason=f"WZDx schemas not at {WZDX}")
def test_wzdx_feed_is_valid_and_links_closures_to_detours(republished):
    server, _ = republished
    with server.client() as client:
        answer = client.get("/feeds/wzdx.geojson")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/geo+json"
    document = answer.json()
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in wzdx_validator().iter_errors(document)]
    assert errors == []
    by_id = {f["id"]: f for f in document["features"]}
    assert ADDED in by_id and ENDED not in by_id
    detours = [f for f in document["features"] if f["properties"]["core_details"]["event_type"] == "detour"]
    assert detours, "the sample's detours are in the feed"
    for detour in detours:
        closure = next(
            r["id"]
            for r in detour["properties"]["core_details"]["related_road_events"]
            if r["type"] == "related-work-zone"
        )
        links = by_id[closure]["properties"]["core_details"]["related_road_events"]
        assert {"type": "related-detour", "id": detour["id"]} in links


def internal_values(paths) -> set[str]:
    """Every value of an internal-only field of a public layer, as published (phones, notes)."""
    values = set()
    for spec in load_catalog().values():
        internal = [f.name for f in spec.fields if f.internal]
        if spec.access != "public" or not internal or not paths.published_path(spec.id).exists():
            continue
        frame = pyogrio.read_dataframe(paths.published_path(spec.id), columns=internal, read_geometry=False)
        for name in internal:
            values |= {str(v) for v in frame[name].dropna() if len(str(v)) > 5}
    return values


def test_public_feeds_and_changes_carry_nothing_internal(republished):
    server, _ = republished
    secrets = internal_values(server.paths)
    assert secrets, "the sample has internal values to look for"
    internal_fields = {f.name for spec in load_catalog().values() for f in spec.fields if f.internal}
    bodies = {}
    with server.client() as anonymous, server.client(VISITOR_KEY) as visitor:
        for client, name in ((anonymous, "anonymous"), (visitor, "visitor")):
            bodies[f"{name} changes"] = client.get("/changes", params={"since": "2000-01-01"}).content
        for layer in ("road_closures", "repairs", "detours", "outages"):
            bodies[f"{layer}.atom"] = anonymous.get(f"/feeds/{layer}.atom", params={"since": "2000-01-01"}).content
        bodies["wzdx"] = anonymous.get("/feeds/wzdx.geojson").content
        assert anonymous.get("/changes", params={"layer": "conflicts"}).status_code == 404
        assert visitor.get("/changes", params={"layer": "conflicts"}).status_code == 403
        assert anonymous.get("/feeds/conflicts.atom").status_code == 404
        assert anonymous.get("/feeds/addresses.atom").status_code == 404
    assert ADDED.encode() in bodies["road_closures.atom"] and ADDED.encode() in bodies["anonymous changes"]
    for name, body in bodies.items():
        text = body.decode("utf-8")
        assert not [layer for layer in INTERNAL_LAYERS if f'"{layer}"' in text or f"/{layer}" in text], name
        assert not [field for field in internal_fields if field in text], name
        assert not [value for value in secrets if value in text], name
    with server.client(STAFF_KEY) as staff:
        everything = staff.get("/changes", params={"since": "2000-01-01"}).text
        assert '"conflicts"' in everything and any(value in everything for value in secrets)


def test_since_and_limits_are_checked(republished):
    server, _ = republished
    with server.client() as client:
        for params in ({"since": "yesterday"}, {"limit": "0"}, {"limit": "x"}, {"what": "1"}):
            answer = client.get("/changes", params=params)
            assert answer.status_code == 400 and answer.json()["code"] == "InvalidParameterValue", params
        assert client.get("/changes", params={"layer": "nothing"}).status_code == 404
        first = client.get("/changes", params={"since": "2000-01-01", "layer": "road_closures", "limit": "1"}).json()
        following = client.get(first["links"][0]["href"].removeprefix(server.url)).json()
    assert len(first["changes"]) == 1 and following["changes"][0]["seq"] > first["changes"][-1]["seq"]


def test_internal_only_edit_is_staff_only_and_a_restart_keeps_the_log(tmp_path: Path):
    spec = load_catalog()["repairs"]
    names = [f.name for f in spec.fields]
    row = {name: None for name in names} | {spec.id_field: "R-1", "notes": "first", "contractor": "ООО А"}
    log = tmp_path / "_changes.sqlite"

    def publish(**values) -> dict[str, int]:
        frame = gpd.GeoDataFrame([row | values], geometry=[Point(104.3, 52.3)], crs="EPSG:4326")
        return record_publication(log, spec, frame)

    nothing = dict.fromkeys(KINDS, 0)
    assert publish() == {**nothing, BASELINE: 1}, "the first publication is the baseline"
    assert publish(notes="second") == {**nothing, "changed": 1}  # a new connection each time: the log persists
    assert publish(notes="second") == nothing
    assert publish(contractor="ООО Б") == {**nothing, "changed": 1}
    public = [c.kind for c in read_changes(log, ["repairs"], "", public=True)]
    staff = [c.kind for c in read_changes(log, ["repairs"], "", public=False)]
    assert public == ["changed"] and staff == ["changed", "changed"], "the notes edit is for staff only"
    both = gpd.GeoDataFrame(
        [row | {"contractor": "ООО Б"}, row | {spec.id_field: "R-2"}], geometry=[Point(104.3, 52.3)] * 2, crs=4326
    )
    assert record_publication(log, spec, both) == {**nothing, "appeared": 1}
    empty = gpd.GeoDataFrame({name: [] for name in names}, geometry=[], crs="EPSG:4326")
    assert record_publication(log, spec, empty) == {**nothing, "ended": 2}


def test_a_change_log_that_cannot_be_written_fails_the_layer_in_one_line(published_city, tmp_path: Path):
    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    published = paths.published_path("detours").read_bytes()
    paths.changes_path().unlink()
    paths.changes_path().mkdir()  # SQLite cannot open a folder
    result = dg.materialize(
        [layer_asset(load_catalog()["detours"], set())],
        resources={"geoportal": resource_for(paths)},
        raise_on_error=False,
    )
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"detours: cannot record the changes in {paths.changes_path()}: ")
    assert "\n" not in description
    assert paths.published_path("detours").read_bytes() == published, "nothing was republished without its log"
