"""The conflicts layer: the catalog's rules on events, the planted sample cases, the check in the UI, the styles."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import LineString, Point

from assets.conflicts import find_conflicts, local_metres
from layers.catalog import CatalogError, load_catalog
from layers.settings import REPO_ROOT
from pipelines.conflicts import CHECK, rules_definitions
from pipelines.factory import layer_assets
from pipelines.resources import GeoportalResource
from server.styles.maplibre import maplibre_layers
from server.styles.qml import qgis_style
from tests.conftest import city_paths, resource_for
from tests.server_fixtures import STAFF_KEY, server  # noqa: F401 - fixture

CATALOG = load_catalog()
EXPECTED = json.loads((REPO_ROOT / "data/sample/irkutsk/expected.json").read_text(encoding="utf-8"))["conflicts"]
RESURFACING = """title: {ru: Ремонт покрытия, en: Resurfacing}
description: {ru: Завершённый ремонт дорожного покрытия, en: Finished road resurfacing}
domain: repairs
geometry_type: LineString
id_field: job_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: job_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Окончание, en: End}}
sources:
  - path: roads/resurfacing.csv
    format: csv
    delimiter: ";"
    date_format: "%d.%m.%Y"
    crs: msk38-3
    columns: {Код: job_id, Начало: start_time, Окончание: end_time}
    geometry: {wkt: WKT}
"""


@pytest.fixture(scope="module")
def with_resurfacing(tmp_path_factory):
    """The repository catalog plus a small resurfacing layer of our own."""
    folder = tmp_path_factory.mktemp("catalog") / "layers"
    shutil.copytree(REPO_ROOT / "layers", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "resurfacing.yaml").write_text(RESURFACING, encoding="utf-8")
    return load_catalog(folder)


# a local metric frame around the city's centre: x east, y north in metres
METRES = local_metres(CATALOG.city.extent)


def frame(rows: list[dict], geometries: list, columns: list[str]) -> gpd.GeoDataFrame:
    table = pd.DataFrame(rows, columns=[*columns, "start_time", "end_time"])
    for name in ("start_time", "end_time"):
        if name in table:
            table[name] = pd.to_datetime(table[name], utc=True)
    return gpd.GeoDataFrame(table, geometry=geometries, crs=METRES).to_crs("EPSG:4326")


def repairs(*works: tuple[str, float, float, str, str | None]) -> gpd.GeoDataFrame:
    rows = [
        {"permit_id": pid, "contractor": f"Подрядчик {pid}", "status": "active", "start_time": s, "end_time": e}
        for pid, _, _, s, e in works
    ]
    return frame(rows, [Point(x, y) for _, x, y, _, _ in works], ["permit_id", "contractor", "status"])


def closures(*closed: tuple[str, LineString, str, str | None]) -> gpd.GeoDataFrame:
    rows = [{"closure_id": cid, "organizer": "КГО", "start_time": s, "end_time": e} for cid, _, s, e in closed]
    return frame(rows, [line for _, line, _, _ in closed], ["closure_id", "organizer"])


def outages(*buildings: tuple[str, str, float, float, str, str]) -> gpd.GeoDataFrame:
    rows = [
        {"outage_id": oid, "notice_id": nid, "organization": "Водоканал", "start_time": s, "end_time": e}
        for oid, nid, _, _, s, e in buildings
    ]
    return frame(rows, [Point(x, y) for _, _, x, y, _, _ in buildings], ["outage_id", "notice_id", "organization"])


def found_by(rule: str, published: dict, catalog=CATALOG) -> pd.DataFrame:
    result = find_conflicts(catalog["conflicts"], catalog, published)
    return result.frame[result.frame.rule == rule]


EMPTY = {
    "detours": frame([], [], ["detour_id"]),
    "outages": outages(),
    "road_closures": closures(),
    "repairs": repairs(),
}


def test_two_excavations_collide_when_near_in_space_and_time():
    published = {
        **EMPTY,
        "repairs": repairs(
            ("A", 0, 0, "2027-01-10", "2027-01-25"),
            ("B", 20, 0, "2027-01-20", "2027-02-05"),  # 20 m, overlapping 20-25 January: a conflict
            ("C", 0, 45, "2027-01-10", "2027-01-25"),  # 45 m from A: farther than buffer_m 30
            ("D", -25, 0, "2027-01-25", "2027-02-01"),  # 25 m from A, starting when A ends: no overlap
        ),
    }
    found = found_by("overlapping_excavations", published)
    assert list(zip(found.id_a, found.id_b, strict=True)) == [("A", "B")]
    [row] = found.itertuples()
    assert (row.layer_a, row.layer_b, row.party_a, row.party_b) == ("repairs", "repairs", "Подрядчик A", "Подрядчик B")
    assert (row.start_time, row.end_time) == (
        pd.Timestamp("2027-01-20", tz="UTC"),
        pd.Timestamp("2027-01-25", tz="UTC"),
    )
    assert row.geometry.geom_type == "MultiPolygon" and row.geometry.contains(
        gpd.GeoSeries([Point(10, 0)], crs=METRES).to_crs("EPSG:4326").iloc[0]
    )


def test_carriageway_works_need_a_closure_in_their_period():
    street = LineString([(0, 0), (400, 0)])
    published = {
        **EMPTY,
        "road_closures": closures(
            ("past", street, "2026-11-01", "2026-11-20"),
            ("now", LineString([(300, 0), (400, 0)]), "2027-01-01", "2027-01-31"),
        ),
        "repairs": repairs(
            ("on_street", 100, 5, "2027-01-10", "2027-01-20"),  # on the street, no closure then
            ("covered", 350, 5, "2027-01-10", "2027-01-20"),  # the January closure covers it
            ("off_street", 100, 80, "2027-01-10", "2027-01-20"),  # 80 m off any road line: not a carriageway
        ),
    }
    found = found_by("works_without_closure", published)
    assert list(found.id_a) == ["on_street"]
    assert (found.layer_b.iloc[0], found.id_b.iloc[0], found.party_b.iloc[0]) == ("road_closures", "past", "КГО")


def test_an_outage_notice_is_answered_by_works_near_any_of_its_buildings():
    published = {
        **EMPTY,
        "repairs": repairs(("W", 0, 0, "2027-01-15", "2027-01-16")),
        "outages": outages(
            ("n1/1", "N1", 500, 0, "2027-01-15 09:00", "2027-01-15 17:00"),
            ("n1/2", "N1", 100, 0, "2027-01-15 09:00", "2027-01-15 17:00"),  # 100 m from W: answers N1
            ("n2/1", "N2", 900, 0, "2027-01-15 09:00", "2027-01-15 17:00"),
            ("n2/2", "N2", 950, 0, "2027-01-15 09:00", "2027-01-15 17:00"),
            ("n3/1", "N3", 50, 0, "2027-03-01 09:00", "2027-03-01 17:00"),  # near W but in March
        ),
    }
    found = found_by("outage_without_works", published)
    assert sorted(found.id_a) == ["N2", "N3"] and set(found.layer_b.isna()) == {True}
    assert found.set_index("id_a").at["N2", "detail"].startswith("notice_id N2: 2 features")


def test_a_closure_longer_than_the_limit_and_one_without_an_end():
    street = LineString([(0, 0), (200, 0)])
    published = {
        **EMPTY,
        "road_closures": closures(
            ("long", street, "2026-11-01", "2027-01-01"),
            ("short", street, "2026-11-01", "2026-12-01"),
            ("open", street, "2026-11-01", None),  # its length is unknown: not judged
        ),
    }
    found = found_by("long_closure", published)
    assert list(found.id_a) == ["long"] and found.detail.iloc[0] == "61.0 days (over 45)"


def test_works_after_resurfacing_only_with_a_resurfacing_layer(with_resurfacing):
    road = LineString([(0, 0), (500, 0)])
    resurfaced = frame(
        [{"job_id": "R1", "start_time": "2025-06-01", "end_time": "2025-07-01"}], [road], ["job_id"]
    )  # finished July 2025
    published = {
        **EMPTY,
        "resurfacing": resurfaced,
        "repairs": repairs(
            ("soon", 100, 5, "2027-01-10", "2027-01-20"),  # 1.5 years later: protected for 3
            ("late", 200, 5, "2029-01-10", "2029-01-20"),  # 3.5 years later
            ("before", 300, 5, "2025-03-01", "2025-03-20"),  # before the resurfacing
            ("aside", 100, 60, "2027-01-10", "2027-01-20"),  # 60 m from the road
        ),
    }
    found = found_by("works_after_resurfacing", published, with_resurfacing)
    assert list(zip(found.id_a, found.layer_b, found.id_b, strict=True)) == [("soon", "resurfacing", "R1")]
    skipped = find_conflicts(CATALOG["conflicts"], CATALOG, published).skipped
    assert skipped == {"works_after_resurfacing": "no layer: resurfacing"}


def copied_catalog(tmp_path):
    folder = tmp_path / "layers"
    shutil.copytree(REPO_ROOT / "layers", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return folder


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("layers: [road_closures]\n    max_days", "layers: [closures]\n    max_days", "layers ['closures'] are not"),
        ("    max_days: 45\n", "", "rule long_closure (too_long) needs ['max_days']"),
        ("    buffer_m: 30\n", "    buffer_m: 30\n    max_days: 3\n", "does not take ['max_days']"),
        ("group_by: notice_id", "group_by: notice", "'notice' is not a field of outages"),
        ("  - {name: detail, type: string, title: {ru: Описание, en: Detail}}\n", "", "missing ['detail']"),
        ("parties: {repairs: contractor,", "parties: {repairs: company,", "parties.repairs: 'company' is not a field"),
    ],
)
def test_rule_mistakes_are_one_line_naming_the_file(tmp_path, old, new, message):
    folder = copied_catalog(tmp_path)
    path = folder / "conflicts.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(folder)
    assert "conflicts.yaml" in str(caught.value) and message in str(caught.value) and "\n" not in str(caught.value)


def published_conflicts(paths) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(paths.published_path("conflicts"))


def test_every_planted_conflict_of_the_sample_city_is_found(published_city):
    found = published_conflicts(published_city)
    pairs = {
        (rule, a, b)
        for rule, a, b in zip(found.rule, found.id_a, found.id_b.fillna(""), strict=True)  # noqa: B905
    }
    for a, b in EXPECTED["overlapping_excavations"]:
        assert ("overlapping_excavations", a, b) in pairs
    for rule in ("works_without_closure", "outage_without_works", "long_closure"):
        assert set(EXPECTED[rule]) <= set(found.loc[found.rule == rule, "id_a"]), rule
    # the answered notice: ЗР-2026-0901 works beside it that day
    answered = found[found.rule == "outage_without_works"]
    assert not set(EXPECTED["answered"]["outage_without_works"]) & set(answered.id_a)
    # every rule that can apply finds something in the sample; resurfacing has no layer in this catalog
    assert set(found.rule) == {
        "overlapping_excavations",
        "works_without_closure",
        "outage_without_works",
        "long_closure",
    }
    assert found.conflict_id.is_unique and set(found.geom_type) == {"MultiPolygon"}
    long_closure = found[found.rule == "long_closure"].iloc[0]
    assert (long_closure.layer_a, long_closure.party_a) == (
        "road_closures",
        "ООО «Байкальская энергетическая компания»",
    )
    assert long_closure.start_time == pd.Timestamp("2026-11-10T00:00Z")  # 08:00 in Irkutsk


def test_the_asset_check_reports_counts_per_rule(published_city, tmp_path):
    """Recomputed from a copy of the sample's publications, as the automation sensor does after each one."""
    paths = city_paths(tmp_path)
    shutil.copytree(published_city.published_dir, paths.published_dir)
    (paths.published_dir / "conflicts.gpkg").unlink()
    result = dg.materialize(rules_definitions(CATALOG).assets, resources={"geoportal": resource_for(paths)})
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == CHECK and not check.passed  # conflicts are for people to resolve: a warning
    found = published_conflicts(paths)
    counts = found.rule.value_counts().to_dict()
    assert {
        key.removeprefix("rule_"): value.value for key, value in check.metadata.items() if key.startswith("rule_")
    } == {
        **{
            rule: 0
            for rule in ("overlapping_excavations", "works_without_closure", "outage_without_works", "long_closure")
        },
        **counts,
    }
    table = check.metadata["by_rule"].value
    assert "| works_after_resurfacing | Вскрытие нового покрытия | — | skipped: no layer: resurfacing |" in table
    assert f"| long_closure | Перекрытие дольше 45 дней | {counts['long_closure']} | applied |" in table


def test_a_resurfacing_layer_through_the_real_assets(published_city, tmp_path, with_resurfacing):
    """A city that keeps a resurfacing register: published like any layer, then read by the rule."""
    paths = city_paths(tmp_path)
    paths = paths.model_copy(update={"catalog_dir": with_resurfacing.directory})
    shutil.copytree(published_city.published_dir, paths.published_dir)
    repairs = pyogrio.read_dataframe(paths.published_path("repairs")).set_index("permit_id")
    planted = repairs.loc["ЗР-2026-0901", "geometry"]
    x, y = gpd.GeoSeries([planted], crs="EPSG:4326").to_crs(CATALOG.city.resolve_crs("msk38-3")).iloc[0].coords[0]
    (paths.live_dir / "roads").mkdir(parents=True)
    (paths.live_dir / "roads/resurfacing.csv").write_text(
        f"Код;Начало;Окончание;WKT\nРП-1;01.06.2025;30.06.2025;LINESTRING ({x - 100} {y + 3}, {x + 100} {y + 3})\n",
        encoding="utf-8",
    )
    assets = [*layer_assets(with_resurfacing), *rules_definitions(with_resurfacing).assets]
    result = dg.materialize(
        assets, selection=["resurfacing", "conflicts"], resources={"geoportal": resource_for(paths)}
    )
    assert result.success
    found = published_conflicts(paths)
    after = found[found.rule == "works_after_resurfacing"]
    assert {"ЗР-2026-0901", "ЗР-2026-0902"} <= set(after.id_a) and set(after.id_b) == {"РП-1"}
    # and exactly the works within 15 m of the new surface that start within 3 years of it
    msk = repairs.to_crs(CATALOG.city.resolve_crs("msk38-3"))
    road = LineString([(x - 100, y + 3), (x + 100, y + 3)])
    near = msk.geometry.distance(road) <= 15
    starts = pd.to_datetime(msk.start_time, utc=True)
    recent = (starts >= pd.Timestamp("2025-06-29T16:00Z")) & (starts < pd.Timestamp("2028-06-29T16:00Z"))
    assert sorted(after.id_a) == sorted(msk.index[near & recent])


def test_styles_draw_conflicts_by_rule(with_resurfacing):
    spec = CATALOG["conflicts"]
    layers = maplibre_layers(spec)
    fill = next(layer for layer in layers if layer["type"] == "fill")
    expression = json.dumps(fill["paint"]["fill-color"], ensure_ascii=False)
    for rule, color in spec.style.colors.items():
        assert rule in expression and color in expression
    qml = ET.fromstring(qgis_style(spec))
    categories = {c.get("value") for c in qml.iter("category")}
    assert set(spec.style.colors) <= categories


def test_conflicts_are_served_to_staff_only(server):  # noqa: F811
    with server.client() as anonymous:
        assert anonymous.get("/collections/conflicts/items", params={"f": "json"}).status_code == 404
    with server.client(STAFF_KEY) as staff:
        answer = staff.get("/collections/conflicts/items", params={"f": "json", "filter": "rule = 'long_closure'"})
        assert answer.status_code == 200
        features = answer.json()["features"]
        assert EXPECTED["long_closure"][0] in {f["properties"]["id_a"] for f in features}
        assert staff.get("/styles/conflicts.qml").status_code == 200


def test_conflicts_follow_every_publication_of_the_layers_they_read():
    """Under the daemon: recomputed once after each publication of an event layer, not again until the next."""
    layers = dg.Definitions(assets=layer_assets(CATALOG), resources={"geoportal": GeoportalResource()})
    defs = dg.Definitions.merge(layers, rules_definitions(CATALOG))
    instance, conflicts = dg.DagsterInstance.ephemeral(), dg.AssetKey("conflicts")
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get(conflicts).parent_keys} == {
        "repairs",
        "road_closures",
        "detours",
        "outages",
    }

    def tick(cursor):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)

    first = tick(None)
    instance.report_runless_asset_event(dg.AssetMaterialization(conflicts))
    quiet = tick(first.cursor)
    assert quiet.get_num_requested(conflicts) == 0, "nothing was published since"
    instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey("repairs")))
    published = tick(quiet.cursor)
    assert published.get_num_requested(conflicts) == 1, "repairs were published: the conflicts follow"
    instance.report_runless_asset_event(dg.AssetMaterialization(conflicts))
    assert tick(published.cursor).get_num_requested(conflicts) == 0, "once per publication"
    sensors = {s.name: s for s in defs.get_repository_def().sensor_defs}
    assert sensors["rules_automation"].default_status == dg.DefaultSensorStatus.RUNNING
