"""Responsibility on every event: the zones an event touches, with whom to call, as fields of its layer."""

from __future__ import annotations

import csv
import json
import re
import shutil

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import LineString, Point, box

from assets.responsibility import Zones, tag_zones
from layers.catalog import CatalogError, load_catalog
from layers.coordination import is_event_layer
from layers.settings import REPO_ROOT
from pipelines import defs
from pipelines.factory import layer_assets
from pipelines.jobs import domain_jobs
from pipelines.sensors import downstream_layers
from tests.conftest import city_paths, resource_for
from tests.server_fixtures import server  # noqa: F401 - fixture

CATALOG = load_catalog()
EVENTS = [spec.id for spec in CATALOG.values() if is_event_layer(spec)]
ZONES = {"election_districts": "district_no", "police_precincts": "precinct_id", "management_companies": "company_id"}
EXPECTED = json.loads((REPO_ROOT / "data/sample/irkutsk/expected.json").read_text(encoding="utf-8"))


def districts() -> Zones:
    frame = gpd.GeoDataFrame(
        {
            "district_no": [8, 7, 12],
            "deputy_name": ["Петров", "Иванов", None],
            "reception_phone": ["8", "7", "12"],
        },
        geometry=[box(1, 0, 2, 1), box(0, 0, 1, 1), box(2, 0, 3, 1)],
        crs="EPSG:4326",
    )
    return Zones(CATALOG["election_districts"], frame)


def test_an_event_gets_the_zone_it_lies_in_and_several_zones_joined_in_number_order():
    events = gpd.GeoDataFrame(
        {"permit_id": ["inside", "across", "outside", "three"], "district_no": [None] * 4},
        geometry=[
            Point(0.5, 0.5),
            LineString([(1.5, 0.5), (0.5, 0.5)]),
            Point(5, 5),
            LineString([(0.5, 0.5), (2.5, 0.5)]),
        ],
        crs="EPSG:4326",
    )
    tagged = tag_zones(events, [districts()]).set_index("permit_id")
    assert tagged.at["inside", "district_no"] == "7" and tagged.at["inside", "district_deputy_name"] == "Иванов"
    # 7 before 8 whatever the file order; the deputies stay in the same positions as the numbers
    assert tagged.at["across", "district_no"] == "7, 8"
    assert tagged.at["across", "district_deputy_name"] == "Иванов, Петров"
    # a zone without a deputy among several keeps its place with a dash
    assert tagged.at["three", "district_no"] == "7, 8, 12"
    assert tagged.at["three", "district_deputy_name"] == "Иванов, Петров, —"
    assert tagged.at["outside", "district_no"] is None and tagged.at["outside", "district_deputy_name"] is None


def test_the_catalog_derives_the_carried_fields_and_keeps_internal_ones_internal():
    repairs = CATALOG["repairs"]
    carried = {f.name: f for f in repairs.fields[-9:]}
    assert list(carried) == [
        "district_no",
        "district_deputy_name",
        "district_reception_phone",
        "company_id",
        "company_name",
        "company_dispatcher_phone",
        "precinct_id",
        "precinct_officer_name",
        "precinct_officer_phone",
    ]
    assert all(f.type == "string" for f in carried.values())
    assert carried["district_deputy_name"].title.ru == "Депутат"
    # the officer's phone is internal in the precincts, so it is internal on every event
    assert [name for name, f in carried.items() if f.internal] == ["precinct_officer_phone"]
    assert set(EVENTS) == {"repairs", "road_closures", "detours", "outages"}
    assert all(set(carried) <= {f.name for f in CATALOG[layer].fields} for layer in EVENTS)
    assert not {"district_no", "precinct_id"} & {f.name for f in CATALOG["addresses"].fields}


def copied_catalog(tmp_path):
    folder = tmp_path / "layers"
    shutil.copytree(REPO_ROOT / "layers", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return folder


def test_an_internal_zone_layer_makes_all_its_carried_fields_internal(tmp_path):
    folder = copied_catalog(tmp_path)
    path = folder / "management_companies.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "access: internal\n", encoding="utf-8")
    repairs = load_catalog(folder)["repairs"]
    assert all(repairs.field(name).internal for name in ("company_id", "company_name", "company_dispatcher_phone"))


def clash_with_a_declared_field(folder):
    path = folder / "repairs.yaml"
    declared = "  - {name: district_no, type: string, title: {ru: Округ, en: District}}\n"
    path.write_text(
        path.read_text(encoding="utf-8").replace("sources:\n", declared + "sources:\n", 1), encoding="utf-8"
    )


def two_zone_sets_carrying_one_name(folder):
    shutil.copy(folder / "election_districts.yaml", folder / "old_districts.yaml")


def responsibility_on_an_event_layer(folder):
    path = folder / "outages.yaml"
    path.write_text(
        path.read_text(encoding="utf-8") + "responsibility: {prefix: o, fields: [address]}\n", encoding="utf-8"
    )


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (clash_with_a_declared_field, "repairs.yaml: fields ['district_no'] are carried from responsibility zones"),
        (two_zone_sets_carrying_one_name, "two zone layers carry a field called 'district_deputy_name'"),
        (
            responsibility_on_an_event_layer,
            "outages.yaml: <top>: Value error, responsibility: only a zones layer answers for events",
        ),
    ],
)
def test_catalog_mistakes_in_responsibility_are_one_line(tmp_path, mistake, message):
    folder = copied_catalog(tmp_path)
    mistake(folder)
    with pytest.raises(CatalogError) as caught:
        load_catalog(folder)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_zones_are_upstream_of_every_event_layer_and_a_zone_change_reruns_them():
    graph = defs.resolve_asset_graph()
    for event in EVENTS:
        parents = {key.to_user_string() for key in graph.get(dg.AssetKey(event)).parent_keys}
        assert set(ZONES) <= parents, event
    for zone in ZONES:
        assert set(EVENTS) <= downstream_layers({zone}, CATALOG)
    zones_job = next(job for job in domain_jobs(CATALOG) if job.name == "zones_job")
    selected = {key.to_user_string() for key in zones_job.selection.resolve(graph)}
    assert selected == set(ZONES) | set(EVENTS)


def zones_at(frame: gpd.GeoDataFrame, zones: gpd.GeoDataFrame, field: str) -> pd.Series:
    """The zones each feature intersects, computed here from the published polygons: the reference."""

    def listed(geometry) -> str | None:
        hits = sorted(zones.loc[zones.intersects(geometry), field].astype(str), key=natural)
        return ", ".join(hits) if hits else None

    return frame.geometry.map(listed)


def natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


@pytest.mark.parametrize("event", EVENTS)
def test_sample_events_carry_the_zones_their_geometry_touches(published_city, event):
    frame = pyogrio.read_dataframe(published_city.published_path(event))
    for zone, field in ZONES.items():
        polygons = pyogrio.read_dataframe(published_city.published_path(zone))
        assert frame[field].tolist() == zones_at(frame, polygons, field).tolist(), zone
    assert frame["district_no"].notna().all() and frame["district_deputy_name"].notna().all()


def test_planted_events_carry_the_zones_the_generator_drew_them_in(published_city):
    """expected.json holds the zones of the planted events, intersected by the generator in МСК."""
    published = {
        layer: pyogrio.read_dataframe(published_city.published_path(layer), read_geometry=False).set_index(key)
        for layer, key in (("repairs", "permit_id"), ("road_closures", "closure_id"))
    }
    for event, zones in EXPECTED["responsibility"].items():
        row = published["road_closures" if event.startswith("ПД") else "repairs"].loc[event]
        assert {field: row[field] for field in zones} == zones, event
    assert ", " in EXPECTED["responsibility"]["ПД-2026-201"]["precinct_id"], "the planted closure crosses precincts"


def test_planted_events_name_their_people(published_city):
    repairs = pyogrio.read_dataframe(published_city.published_path("repairs")).set_index("permit_id")
    deputies = pyogrio.read_dataframe(published_city.published_path("election_districts"), read_geometry=False)
    companies = pyogrio.read_dataframe(published_city.published_path("management_companies"), read_geometry=False)
    for permit in EXPECTED["conflicts"]["overlapping_excavations"][0]:
        row = repairs.loc[permit]
        district = deputies[deputies.district_no.astype(str) == row.district_no].iloc[0]
        assert row.district_deputy_name == district.deputy_name
        assert row.district_reception_phone == district.reception_phone
        company = companies[companies.company_id == row.company_id].iloc[0]
        assert (row.company_name, row.company_dispatcher_phone) == (company["name"], company.dispatcher_phone)
    closures = pyogrio.read_dataframe(published_city.published_path("road_closures"))
    assert closures.district_no.str.contains(", ").any(), "a closure crossing districts names them all"


def test_a_changed_zone_set_retags_the_events(published_city, tmp_path):
    """Deputies change after a by-election: the zones layer is republished and its events re-run with it."""
    paths = city_paths(tmp_path)
    shutil.copytree(published_city.published_dir, paths.published_dir)
    source = REPO_ROOT / "data/sample/irkutsk/zones"
    live = paths.live_dir / "zones"
    live.mkdir(parents=True)
    for name in source.glob("election_districts.*"):
        shutil.copy(name, live / name.name)
    with open(source / "deputies.csv", encoding="cp1251", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    rows[7][1] = "Новикова Анна Сергеевна"  # district 7
    with open(live / "deputies.csv", "w", encoding="cp1251", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)
    selection = sorted(downstream_layers({"election_districts"}, CATALOG) & {"election_districts", "repairs"})
    result = dg.materialize(layer_assets(CATALOG), selection=selection, resources={"geoportal": resource_for(paths)})
    assert result.success
    repairs = pyogrio.read_dataframe(paths.published_path("repairs"))
    in_seven = repairs.district_no.str.split(", ").map(lambda numbers: "7" in numbers)
    assert in_seven.any()
    assert repairs.loc[in_seven, "district_deputy_name"].str.contains("Новикова Анна Сергеевна").all()
    assert not repairs.loc[~in_seven, "district_deputy_name"].str.contains("Новикова").any()


def test_gdal_filters_events_by_district_over_http(server):  # noqa: F811
    """QGIS's way in: GDAL's OAPIF driver sends the CQL2 filter on a responsibility field to the server."""
    local = pyogrio.read_dataframe(server.paths.published_path("repairs"))
    remote = pyogrio.read_dataframe(f"OAPIF:{server.url}", layer="repairs", where="district_no = '7'")
    assert len(remote) and sorted(remote.permit_id) == sorted(local.loc[local.district_no == "7", "permit_id"])
    assert "filter=district_no" in server.log_text()
    crossing = pyogrio.read_dataframe(f"OAPIF:{server.url}", layer="road_closures", where="district_no LIKE '%, %'")
    closures = pyogrio.read_dataframe(server.paths.published_path("road_closures"))
    assert len(crossing) and sorted(crossing.closure_id) == sorted(
        closures.loc[closures.district_no.str.contains(", "), "closure_id"]
    )
    # without a key the officer's internal phone is not a field of the events
    assert "precinct_officer_phone" not in remote.columns and "precinct_officer_name" in remote.columns
