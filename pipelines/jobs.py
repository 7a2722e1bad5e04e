"""Jobs and schedules: one job per domain, one for everything; cadence by how fast a domain changes."""

from __future__ import annotations

import dagster as dg

from layers.catalog import Catalog
from layers.coordination import downstream_ingested

# Closures and outages change within the hour; zones change with elections and reorganisations.
DOMAIN_CRON = {
    "closures": "*/10 * * * *",
    "outages": "*/10 * * * *",
    "repairs": "0 * * * *",
    "zones": "0 3 * * *",
    "reference": "0 2 * * *",
}
ALL_LAYERS_JOB = "all_layers"
INBOX_JOB = "inbox_job"


def layers_of(catalog: Catalog, domain: str) -> set[str]:
    return {spec.id for spec in catalog.values() if spec.domain == domain and spec.sources}


def domain_jobs(catalog: Catalog) -> list[dg.UnresolvedAssetJobDefinition]:
    domains = sorted({spec.domain for spec in catalog.values() if spec.sources})  # derived layers: own jobs
    jobs = [
        dg.define_asset_job(
            f"{domain}_job",
            # and the layers built on them: new zones re-tag the events, a new register re-geocodes
            selection=dg.AssetSelection.assets(*sorted(downstream_ingested(layers_of(catalog, domain), catalog))),
            description=f"Ingest and publish every {domain} layer and the layers built on them",
        )
        for domain in domains
    ]
    jobs.append(
        dg.define_asset_job(
            ALL_LAYERS_JOB,
            # the layers only: a failed layer would skip the raster step; it runs after them (pipelines.raster)
            selection=dg.AssetSelection.groups(*domains),
            description="Ingest and publish every layer of the catalog",
        )
    )
    jobs.append(
        dg.define_asset_job(
            INBOX_JOB,
            selection=dg.AssetSelection.groups(*domains),
            description="Republish the layers a delivered file feeds (started by the inbox sensor)",
        )
    )
    return jobs


def domain_schedules(jobs: list[dg.UnresolvedAssetJobDefinition], timezone: str) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name=f"{job.name.removesuffix('_job')}_schedule",
            job=job,
            cron_schedule=DOMAIN_CRON[job.name.removesuffix("_job")],
            execution_timezone=timezone,
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
        for job in jobs
        if job.name.removesuffix("_job") in DOMAIN_CRON
    ]
