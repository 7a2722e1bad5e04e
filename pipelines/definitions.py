"""The Dagster entry point: every catalog layer as an asset, with jobs, schedules and the inbox sensor."""

from __future__ import annotations

import dagster as dg

from layers.catalog import CatalogError, load_catalog
from layers.settings import get_paths
from pipelines.factory import layer_assets
from pipelines.jobs import domain_jobs, domain_schedules
from pipelines.raster import raster_definitions
from pipelines.resources import GeoportalResource
from pipelines.sensors import inbox_sensor


def build_definitions() -> dg.Definitions:
    catalog = load_catalog(get_paths().catalog_dir)
    jobs = domain_jobs(catalog)
    layers = dg.Definitions(
        assets=layer_assets(catalog),
        jobs=jobs,
        schedules=domain_schedules(jobs, catalog.city.timezone),
        sensors=[inbox_sensor],
        resources={"geoportal": GeoportalResource()},
    )
    return dg.Definitions.merge(layers, raster_definitions(catalog))


try:
    defs = build_definitions()
except CatalogError as error:
    # A catalog mistake is the operator's to fix, and the message names file and key (or line and
    # column): `python -m pipelines`, `dagster definitions validate`, `dagster dev` print that one
    # line and stop, instead of 20 lines of import traceback around it.
    raise SystemExit(f"catalog error: {error}") from None
