"""The Dagster code location: what an operator sees in the UI, and the inbox sensor's behaviour."""

from __future__ import annotations

import dagster as dg

from layers.catalog import load_catalog
from pipelines import defs

CATALOG = load_catalog()


def test_every_catalog_layer_is_an_asset_in_its_domain_group():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert (
        keys - {"disruption_load", "daily_summary"}
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
            "conflicts",
        }
    )
    for spec in CATALOG.values():
        node = graph.get(dg.AssetKey(spec.id))
        assert node.group_name == spec.domain
        assert node.freshness_policy is not None or spec.rules  # conflicts follow publications, not a clock


def test_geocoded_layers_depend_on_the_address_register():
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("addresses") in graph.get(dg.AssetKey("outages")).parent_keys
    assert dg.AssetKey("addresses") in graph.get(dg.AssetKey("repairs")).parent_keys


def test_publication_checks_are_declared_and_guarding_ones_block():
    graph = defs.resolve_asset_graph()
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    for layer in (spec.id for spec in CATALOG.values() if spec.sources):
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
        "disruption_load_job",
        "inbox_job",
        "rules_job",
        "daily_summary_job",
    }
    cron = {s.name: s.cron_schedule for s in defs.schedules}
    assert cron["closures_schedule"] == cron["outages_schedule"] == "*/10 * * * *"
    assert cron["zones_schedule"] == "0 3 * * *"
    assert cron["daily_summary_schedule"] == "0 7 * * *"
    assert sorted(s.name for s in defs.sensors) == [
        "conflict_alerts",
        "disruption_load_automation",
        "freshness_alerts",
        "inbox_sensor",
        "publication_failure_alerts",
        "rules_automation",
    ]
    alerts = [s for s in defs.sensors if s.name.endswith("_alerts")]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in alerts)
    assert defs.resolve_job_def("zones_job") is not None


def test_schedules_run_by_default_and_the_sensor_targets_the_in_process_inbox_job():
    """The daemon refused every tick of a sensor without a target; a process per step cost every delivery."""
    domains = {spec.domain for spec in CATALOG.values()}
    layer_schedules = [s for s in defs.schedules if s.name.removesuffix("_schedule") in domains]
    assert layer_schedules and all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in layer_schedules)
    [sensor] = [s for s in defs.sensors if s.name == "inbox_sensor"]
    assert sensor.job_name == "inbox_job"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds <= 5
    assert {job.name: defs.resolve_job_def(job.name).executor_def.name for job in defs.jobs} == {
        job.name: "in_process" for job in defs.jobs
    }
    job = defs.resolve_job_def("inbox_job")
    read_from_files = {spec.id for spec in CATALOG.values() if spec.sources}  # conflicts: their own sensor
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == read_from_files
