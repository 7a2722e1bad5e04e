"""The Dagster entry point: every catalog layer as an asset, with jobs, schedules and the inbox sensor."""

from __future__ import annotations

import dagster as dg

from layers.catalog import load_catalog
from layers.settings import get_paths
from pipelines.factory import layer_assets
from pipelines.jobs import domain_jobs, domain_schedules
from pipelines.raster import disruption_load_asset
from pipelines.resources import GeoportalResource
from pipelines.sensors import inbox_sensor


def build_definitions() -> dg.Definitions:
    catalog = load_catalog(get_paths().catalog_dir)
    jobs = domain_jobs(catalog)
    return dg.Definitions(
        assets=[*layer_assets(catalog), disruption_load_asset(catalog)],
        jobs=jobs,
        schedules=domain_schedules(jobs, catalog.city.timezone),
        sensors=[inbox_sensor],
        resources={"geoportal": GeoportalResource()},
    )


defs = build_definitions()
