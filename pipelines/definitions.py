"""The Dagster entry point: every catalog layer as an asset, with jobs, schedules and the inbox sensor."""

from __future__ import annotations

import sys

import dagster as dg

from layers.catalog import CatalogError, load_catalog
from layers.settings import get_paths
from pipelines.alerts import alert_definitions
from pipelines.conflicts import rules_definitions
from pipelines.factory import layer_assets
from pipelines.jobs import domain_jobs, domain_schedules
from pipelines.raster import raster_definitions
from pipelines.resources import GeoportalResource
from pipelines.sensors import inbox_sensor
from pipelines.summary import summary_definitions


def build_definitions() -> dg.Definitions:
    catalog = load_catalog(get_paths().catalog_dir)
    jobs = domain_jobs(catalog)
    layers = dg.Definitions(
        assets=layer_assets(catalog),
        jobs=jobs,
        schedules=domain_schedules(jobs, catalog),
        sensors=[inbox_sensor],
        resources={"geoportal": GeoportalResource()},
        # Every run in one process: a process per step imports geopandas and dagster again for each layer,
        # seconds of two small cores that a delivery or a scheduled run would wait for.
        executor=dg.in_process_executor,
    )
    return dg.Definitions.merge(
        layers,
        raster_definitions(catalog),
        rules_definitions(catalog),
        alert_definitions(catalog),
        summary_definitions(catalog),
    )


try:
    defs = build_definitions()
except CatalogError as error:
    # A catalog mistake is the operator's to fix, and the message names file and key (or line and
    # column): `python -m pipelines` and `dagster definitions validate` print that one line and stop,
    # instead of 20 lines of import traceback around it. The UI's code server (`dagster api grpc`)
    # gets the error itself: it shows the message as the code location's load error, where an exit
    # would only say "gRPC server exited".
    if sys.argv[1:3] == ["api", "grpc"]:
        raise
    raise SystemExit(f"catalog error: {error}") from None
