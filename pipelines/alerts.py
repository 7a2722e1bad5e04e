"""Sensors that tell operators: a failed or held publication, a layer past its freshness window, new conflicts."""

from __future__ import annotations

import json
import time

import dagster as dg

from assets.changes import BASELINE, read_changes
from layers.catalog import Catalog
from pipelines.notify import Alert, AlertSettings, deliver
from pipelines.resources import GeoportalResource

HELD = ": held, not published:"  # pipelines.factory words a hold so
MAX_LISTED_CONFLICTS = 20
WATCHED = ("appeared", BASELINE)


def _send(context, alerts: list[Alert]) -> None:
    settings = AlertSettings()
    for alert in alerts:
        for failure in deliver(alert, settings):
            context.log.error(f"alert not delivered ({alert.subject}): {failure}")
        context.log.info(f"alert: {alert.subject}: {alert.reason[:200]}")


def failure_alerts(context: dg.RunFailureSensorContext) -> list[Alert]:
    """One alert per failed step (a layer), with the one-line reason the step raised; a run that failed before
    any step (a launch error) is one alert for the run."""
    url = AlertSettings().run_url(context.dagster_run.run_id)
    alerts = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        described = event.step_failure_data.user_failure_data
        reason = (described.description if described and described.description else None) or (
            error.message.strip() if error else "the step failed"
        )
        layer = event.step_key or context.dagster_run.job_name
        alerts.append(Alert("held" if HELD in reason else "failed", layer, reason, url))
    if not alerts:
        reason = context.failure_event.message or "the run failed"
        alerts.append(Alert("failed", context.dagster_run.job_name, reason, url))
    return alerts


@dg.run_failure_sensor(
    name="publication_failure_alerts",
    description="Tells operators (webhook, e-mail) which layer failed or was held, why, with the run's link",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # also the runs of `python -m pipelines` (in-process, recorded in the same instance)
    monitor_all_code_locations=True,
)
def publication_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    _send(context, failure_alerts(context))


def stale_layers(catalog: Catalog, instance: dg.DagsterInstance, now: float) -> dict[str, str]:
    """Layers with a freshness window whose last publication is older than it (or that never published)."""
    stale = {}
    for spec in catalog.values():
        if not spec.freshness_minutes:
            continue
        event = instance.get_latest_materialization_event(dg.AssetKey(spec.id))
        if event is None:
            stale[spec.id] = f"never published; its freshness window is {spec.freshness_minutes} min"
            continue
        age = (now - event.timestamp) / 60
        if age > spec.freshness_minutes:
            stale[spec.id] = f"last published {age:.0f} min ago, more than its {spec.freshness_minutes} min window"
    return stale


def freshness_alerts_sensor(catalog: Catalog) -> dg.SensorDefinition:
    @dg.sensor(
        name="freshness_alerts",
        description="Tells operators when a layer goes past its freshness window (once, until it is fresh again)",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    def _freshness(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        alerted = set(json.loads(context.cursor)) if context.cursor else set()
        stale = stale_layers(catalog, context.instance, time.time())
        new = sorted(set(stale) - alerted)
        _send(context, [Alert("stale", layer, stale[layer]) for layer in new])
        context.update_cursor(json.dumps(sorted(stale)))
        return dg.SkipReason(f"stale: {sorted(stale) or 'none'}; alerted now: {new or 'none'}")

    return _freshness


def conflict_alerts(catalog: Catalog, paths, after_seq: int) -> tuple[list[Alert], int]:
    """One alert per rules layer listing the conflicts that appeared in the change log after `after_seq`."""
    layers = [spec.id for spec in catalog.values() if spec.rules]
    found = read_changes(paths.changes_path(), layers, "", public=False, after_seq=after_seq, kinds=WATCHED)
    settings, alerts = AlertSettings(), []
    for layer in layers:
        for first in (change for change in found if change.layer == layer and change.kind == BASELINE):
            count = first.properties.get("features", 0)
            if count:  # the first computation: its conflicts are all new to the operators
                reason = f"{count} conflicts at the first computation; see the {layer} layer"
                alerts.append(Alert("conflict", layer, reason, settings.run_url(first.run_id)))
        new = [change for change in found if change.layer == layer and change.kind == "appeared"]
        if not new:
            continue
        lines = [
            f"{p.get('rule')}: {p.get('layer_a')} {p.get('id_a')} ({p.get('party_a') or '—'}) × "
            f"{p.get('layer_b') or '—'} {p.get('id_b') or ''} ({p.get('party_b') or '—'}), "
            f"{p.get('start_time') or '…'} – {p.get('end_time') or '…'}"
            for p in (change.properties for change in new[:MAX_LISTED_CONFLICTS])
        ]
        more = f"; and {len(new) - MAX_LISTED_CONFLICTS} more" if len(new) > MAX_LISTED_CONFLICTS else ""
        reason = f"{len(new)} new: " + "; ".join(lines) + more
        alerts.append(Alert("conflict", layer, reason, settings.run_url(new[-1].run_id)))
    return alerts, max((change.seq for change in found), default=after_seq)


def conflict_alerts_sensor(catalog: Catalog) -> dg.SensorDefinition:
    @dg.sensor(
        name="conflict_alerts",
        description="Tells operators about conflicts that appeared since its last look (from the change log)",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    def _conflicts(context: dg.SensorEvaluationContext, geoportal: GeoportalResource) -> dg.SkipReason:
        alerts, seq = conflict_alerts(catalog, geoportal.paths(), int(context.cursor or 0))
        _send(context, alerts)
        context.update_cursor(str(seq))
        return dg.SkipReason(f"{len(alerts)} alerts; change log read up to {seq}")

    return _conflicts


def alert_definitions(catalog: Catalog) -> dg.Definitions:
    sensors = [publication_failure_alerts, freshness_alerts_sensor(catalog)]
    if any(spec.rules for spec in catalog.values()):
        sensors.append(conflict_alerts_sensor(catalog))
    return dg.Definitions(sensors=sensors)
