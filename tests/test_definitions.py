"""The Dagster code location: what an operator sees in the UI, and the inbox sensor's behaviour."""

from __future__ import annotations

import dagster as dg

from layers.catalog import load_catalog
from pipelines import defs
from pipelines.sensors import inbox_sensor
from tests.test_bad_input import GOOD_POINT, HEADER, works_city

CATALOG = load_catalog()


def test_every_catalog_layer_is_an_asset_in_its_domain_group():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert (
        keys - {"disruption_load"}
        == set(CATALOG)
        == {
            "addresses",
            "repairs",
            "road_closures",
            "detours",
            "outages",
            "election_districts",
            "police_precincts",
            "management_companies",
        }
    )
    for spec in CATALOG.values():
        node = graph.get(dg.AssetKey(spec.id))
        assert node.group_name == spec.domain
        assert node.freshness_policy is not None


def test_geocoded_layers_depend_on_the_address_register():
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("addresses") in graph.get(dg.AssetKey("outages")).parent_keys
    assert dg.AssetKey("addresses") in graph.get(dg.AssetKey("repairs")).parent_keys


def test_publication_checks_are_declared_and_guarding_ones_block():
    graph = defs.resolve_asset_graph()
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    for layer in CATALOG:
        for name in ("schema", "geometry_valid", "within_city_extent", "unique_ids", "end_after_start"):
            assert (layer, name) in checks
    assert ("election_districts", "zone_topology") in checks
    assert ("repairs", "zone_topology") not in checks
    spec = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("repairs"), "unique_ids"))
    assert spec.blocking


def test_jobs_schedules_and_sensor():
    assert {job.name for job in defs.jobs} == {
        "all_layers",
        "closures_job",
        "outages_job",
        "repairs_job",
        "zones_job",
        "reference_job",
    }
    cron = {s.name: s.cron_schedule for s in defs.schedules}
    assert cron["closures_schedule"] == cron["outages_schedule"] == "*/10 * * * *"
    assert cron["zones_schedule"] == "0 3 * * *"
    assert [s.name for s in defs.sensors] == ["inbox_sensor"]
    assert defs.resolve_job_def("zones_job") is not None


def _sensor_context(paths, cursor=None):
    from pipelines.resources import GeoportalResource

    resource = GeoportalResource.of(paths)
    return dg.build_sensor_context(cursor=cursor, resources={"geoportal": resource})


def _deliver(paths, name: str, content: bytes) -> None:
    folder = paths.inbox_dir / "repairs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.part").write_bytes(content)
    (folder / f"{name}.part").rename(folder / name)  # deliveries arrive by rename


def test_inbox_delivery_runs_its_layer_once_and_is_archived(tmp_path):
    paths = works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}"])
    delivered = "\n".join([HEADER, f"W-9;Водопровод;05.11.2026;;{GOOD_POINT}"]).encode("cp1251")
    _deliver(paths, "works.csv", delivered)

    context = _sensor_context(paths)
    requests = list(inbox_sensor(context))
    assert [r.asset_selection for r in requests] == [[dg.AssetKey("works")]]
    assert (paths.live_dir / "works.csv").read_bytes() == delivered
    assert not any((paths.inbox_dir / "repairs").iterdir())
    assert len(list((paths.archive_dir / "repairs").glob("*works.csv"))) == 1

    _deliver(paths, "works.csv", delivered)  # the same file again
    again = list(inbox_sensor(_sensor_context(paths, cursor=context.cursor)))
    assert again == []
    assert len(list((paths.archive_dir / "repairs").glob("*works.csv"))) == 2


def test_inbox_quarantines_what_it_cannot_use(tmp_path):
    paths = works_city(tmp_path, [])
    _deliver(paths, "works.csv", b"")
    _deliver(paths, "unknown.csv", b"a;b\n1;2\n")
    (paths.inbox_dir / "repairs" / "still-writing.csv.part").write_bytes(b"...")
    assert list(inbox_sensor(_sensor_context(paths))) == []
    reasons = sorted(p.read_text(encoding="utf-8") for p in (paths.quarantine_dir / "repairs").glob("*.reason.txt"))
    assert any("works.csv: the file is empty" in r for r in reasons)
    assert any("no source of domain 'repairs' is called 'unknown.csv'" in r for r in reasons)
    assert [p.name for p in (paths.inbox_dir / "repairs").iterdir()] == ["still-writing.csv.part"]
