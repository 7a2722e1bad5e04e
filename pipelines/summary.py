"""The daily summary: an asset after the event layers and conflicts, its job and a 07:00 schedule (city time)."""

import base64
import datetime as dt

import dagster as dg
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from assets.publish import PublicationError
from assets.summary import daily_summary, event_layers
from layers.catalog import Catalog
from pipelines.resources import GeoportalResource

SUMMARY = "daily_summary"
SUMMARY_JOB = f"{SUMMARY}_job"
SUMMARY_CRON = "0 7 * * *"  # before the working day, in the city's time zone
PREVIEW_DPI = 60  # the UI preview inline: small enough for the event log


class SummaryConfig(dg.Config):
    at: str | None = None  # ISO moment the summary is for; default: now (a test or a replay injects it)


def summary_asset(catalog: Catalog) -> dg.AssetsDefinition:
    inputs = sorted({spec.id for spec in event_layers(catalog)} | {spec.id for spec in catalog.values() if spec.rules})

    @dg.asset(
        name=SUMMARY,
        group_name="reports",
        description="Сводка за сутки — Daily summary: events new, active and ended by domain and district, "
        "conflicts and a map, as HTML and PDF under data/reports/<date>/ (staff: /reports/)",
        deps=[dg.AssetKey(layer) for layer in inputs],
        kinds={"pdf", "html"},
    )
    def _summary(context: dg.AssetExecutionContext, config: SummaryConfig, geoportal: GeoportalResource):
        paths, current = geoportal.paths(), geoportal.catalog()
        moment = dt.datetime.fromisoformat(config.at) if config.at else dt.datetime.now(dt.UTC)
        rules = next((spec for spec in current.values() if spec.rules), None)
        conflicts = None
        if rules is not None and paths.published_path(rules.id).exists():
            try:
                conflicts = pyogrio.read_dataframe(paths.published_path(rules.id), columns=["rule"])
            except (DataSourceError, DataLayerError) as error:
                context.log.warning(f"{rules.id}: cannot read: {error}")
        summary = daily_summary(current, paths.published_path, moment, conflicts)
        for note in summary.notes:
            context.log.warning(f"daily summary: {note}")
        folder = paths.reports_dir / summary.day.isoformat()
        # matplotlib only here: importing it cost every run's process and the code server ~0.6-0.9 s at start
        from assets.summary_report import map_png, write_report

        try:
            files = write_report(summary, current, folder)
        except PublicationError as error:
            raise dg.Failure(description=f"{SUMMARY}: {error}", allow_retries=False) from None
        preview = base64.b64encode(map_png(summary, current, dpi=PREVIEW_DPI)).decode()
        lines = [
            f"| {domain} | {counts['new']} | {counts['active']} | {counts['ended']} |"
            for domain, counts in summary.by_domain.items()
        ]
        table = "| domain | new | active | ended |\n|---|---|---|---|\n" + "\n".join(lines)
        conflicts_line = ", ".join(f"{rule}: {count}" for rule, count in summary.conflicts.items()) or "—"
        yield dg.MaterializeResult(
            metadata={
                "day": summary.day.isoformat(),
                "moment": moment.isoformat(),
                "preview": dg.MetadataValue.md(
                    f"{table}\n\nConflicts: {conflicts_line}\n\n![map](data:image/png;base64,{preview})"
                ),
                "pdf": dg.MetadataValue.path(str(files["summary.pdf"])),
                "html": dg.MetadataValue.path(str(files["summary.html"])),
                "map": dg.MetadataValue.path(str(files["summary.png"])),
                "by_domain": dg.MetadataValue.json(summary.as_json()["by_domain"]),
                "conflicts": dg.MetadataValue.json(summary.conflicts),
                "not_published": dg.MetadataValue.json(summary.notes),
            }
        )

    return _summary


def summary_definitions(catalog: Catalog) -> dg.Definitions:
    """The summary asset, its job and its schedule at 07:00 city time, on from the start."""
    if not event_layers(catalog):
        return dg.Definitions()
    job = dg.define_asset_job(SUMMARY_JOB, selection=dg.AssetSelection.assets(SUMMARY), description="Daily summary")
    return dg.Definitions(
        assets=[summary_asset(catalog)],
        jobs=[job],
        schedules=[
            dg.ScheduleDefinition(
                name=f"{SUMMARY}_schedule",
                job=job,
                cron_schedule=SUMMARY_CRON,
                execution_timezone=catalog.city.timezone,
                default_status=dg.DefaultScheduleStatus.RUNNING,
            )
        ],
    )
