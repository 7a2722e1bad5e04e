"""Cadences: each domain's from layers/domains.py, a layer's own `schedule:` from its YAML."""

from __future__ import annotations

import dagster as dg
import pytest

from layers.catalog import CatalogError, load_catalog
from layers.domains import DOMAINS
from pipelines.jobs import domain_jobs, domain_schedules
from tests.test_bad_input import WORKS_YAML, make_city


def _definitions(catalog) -> dg.Definitions:
    from pipelines.factory import layer_assets
    from pipelines.resources import GeoportalResource

    jobs = domain_jobs(catalog)
    return dg.Definitions(
        assets=layer_assets(catalog),
        jobs=jobs,
        schedules=domain_schedules(jobs, catalog),
        resources={"geoportal": GeoportalResource()},
    )


def test_every_domain_with_layers_runs_at_its_declared_cadence():
    catalog = load_catalog()
    schedules = {s.name: s for s in domain_schedules(domain_jobs(catalog), catalog)}
    for domain in {spec.domain for spec in catalog.values() if spec.sources}:
        assert schedules[f"{domain}_schedule"].cron_schedule == DOMAINS[domain]["cron"]
        assert schedules[f"{domain}_schedule"].execution_timezone == catalog.city.timezone


def test_a_layer_with_its_own_schedule_leaves_its_domain_job_for_a_job_of_its_own(tmp_path):
    own = WORKS_YAML.replace("{crs}", "msk38-3") + 'schedule: "*/5 * * * *"\n'
    paths = make_city(tmp_path, {"works": own, "other": WORKS_YAML.replace("{crs}", "msk38-3")})
    catalog = load_catalog(paths.catalog_dir)
    defs = _definitions(catalog)
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["works_schedule"].cron_schedule == "*/5 * * * *"
    assert schedules["repairs_schedule"].cron_schedule == DOMAINS["repairs"]["cron"]
    own_job = defs.resolve_job_def(schedules["works_schedule"].job_name)
    domain_job = defs.resolve_job_def(schedules["repairs_schedule"].job_name)
    assert {k.to_user_string() for k in own_job.asset_layer.executable_asset_keys} == {"works"}
    assert {k.to_user_string() for k in domain_job.asset_layer.executable_asset_keys} == {"other"}


def test_a_bad_cron_fails_when_the_catalog_loads(tmp_path):
    paths = make_city(tmp_path, {"works": WORKS_YAML.replace("{crs}", "msk38-3") + "schedule: every five minutes\n"})
    with pytest.raises(CatalogError, match=r"works.yaml: schedule: .*not a cron expression"):
        load_catalog(paths.catalog_dir)


def test_an_unknown_domain_is_named_when_the_catalog_loads(tmp_path):
    paths = make_city(
        tmp_path, {"works": WORKS_YAML.replace("{crs}", "msk38-3").replace("domain: repairs", "domain: parks")}
    )
    with pytest.raises(CatalogError, match=r"works.yaml: domain"):
        load_catalog(paths.catalog_dir)
