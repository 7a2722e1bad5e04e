"""Jobs and schedules: one job per domain, one for everything; cadence by how fast a domain changes."""

from __future__ import annotations

import dagster as dg

from layers.catalog import Catalog
from layers.coordination import downstream_ingested
from layers.domains import DOMAINS

# How often each domain's sources change (layers/domains.py); derived domains have no cadence.
DOMAIN_CRON = {name: domain["cron"] for name, domain in DOMAINS.items() if domain["cron"]}
ALL_LAYERS_JOB = "all_layers"
INBOX_JOB = "inbox_job"
LAYER_JOB_SUFFIX = "_layer_job"  # a layer whose YAML sets its own `schedule:` runs in a job of its own


def layers_of(catalog: Catalog, domain: str) -> set[str]:
    """The domain's ingested layers that follow the domain's cadence (not those with a schedule of their own)."""
    return {spec.id for spec in catalog.values() if spec.domain == domain and spec.sources and not spec.schedule}


def own_schedule_jobs(catalog: Catalog) -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            f"{spec.id}{LAYER_JOB_SUFFIX}",
            selection=dg.AssetSelection.assets(*sorted(downstream_ingested({spec.id}, catalog))),
            description=f"Ingest and publish {spec.id} (and the layers built on it) on its own schedule",
        )
        for spec in catalog.values()
        if spec.sources and spec.schedule
    ]


def domain_jobs(catalog: Catalog) -> list[dg.UnresolvedAssetJobDefinition]:
    domains = sorted({spec.domain for spec in catalog.values() if spec.sources})  # derived layers: own jobs
    jobs = own_schedule_jobs(catalog) + [
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


def domain_schedules(jobs: list[dg.UnresolvedAssetJobDefinition], catalog: Catalog) -> list[dg.ScheduleDefinition]:
    """Each domain job at its domain's cadence, each layer job at its layer's `schedule:`, in city time."""
    cron = dict(DOMAIN_CRON)
    cron.update({spec.id + LAYER_JOB_SUFFIX: spec.schedule for spec in catalog.values() if spec.schedule})
    schedules = []
    for job in jobs:
        key = job.name if job.name.endswith(LAYER_JOB_SUFFIX) else job.name.removesuffix("_job")
        if key in cron and (job.name.endswith(LAYER_JOB_SUFFIX) or layers_of(catalog, key)):
            schedules.append(
                dg.ScheduleDefinition(
                    name=f"{key.removesuffix(LAYER_JOB_SUFFIX)}_schedule",
                    job=job,
                    cron_schedule=cron[key],
                    execution_timezone=catalog.city.timezone,
                    default_status=dg.DefaultScheduleStatus.RUNNING,
                )
            )
    return schedules
