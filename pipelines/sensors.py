"""The inbox sensor: a file delivered to data/inbox/<domain>/ republishes the layers it feeds."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass

import dagster as dg

from assets.inbox import Delivery, InboxSettings, archive, find_deliveries, judge, quarantine, stage
from layers.catalog import Catalog
from layers.coordination import downstream_ingested
from layers.settings import PathSettings
from pipelines.jobs import INBOX_JOB
from pipelines.resources import GeoportalResource

# The daemon's sensor loop wakes every 5 s (dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME) and skips a sensor
# whose interval has not fully elapsed: an interval of 5 s would tick every 10 s, 1 s ticks on every loop.
INTERVAL_SECONDS = 1
DELIVERY_TAG_PREFIX = "geoportal/inbox-"
MAX_LISTED_CHARS = 2000
CANCELED = dg.DagsterRunStatus.CANCELED  # an operator's decision: the delivery is not requested again


def downstream_layers(layers: set[str], catalog: Catalog) -> set[str]:
    """Layers geocoded against a changed register, or tagged with changed zones, change too."""
    return downstream_ingested(layers, catalog)


def delivery_tag(key: str) -> str:
    """The run tag that says a run publishes the delivery with this key (one run may publish several)."""
    return DELIVERY_TAG_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Accepted:
    label: str
    key: str
    layers: frozenset[str]
    attempt: int = 0  # earlier runs for this delivery that failed before they started


def run_request(accepted: list[Accepted]) -> dg.RunRequest:
    """One run for every delivery a tick accepted: the run worker's start-up (seconds of imports) is paid once.
    Its key derives from the deliveries' keys, so a request that is retried for the same files is one run."""
    keys = sorted(f"{a.key}#{a.attempt}" for a in accepted)
    layers = sorted(set().union(*(a.layers for a in accepted)))
    return dg.RunRequest(
        run_key="inbox:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32],
        asset_selection=[dg.AssetKey(layer) for layer in layers],
        tags={
            "geoportal/deliveries": ", ".join(sorted(a.label for a in accepted))[:MAX_LISTED_CHARS],
            **{delivery_tag(a.key): "1" for a in accepted},
        },
    )


def _loaded_layers(context: dg.SensorEvaluationContext) -> set[str] | None:
    """Asset keys of the running code location (None when the sensor runs outside one, e.g. in a unit test):
    a layer added to the catalog is known to the daemon only once it reloads the code location (every minute)."""
    repository = context.repository_def
    if repository is None:
        return None
    return {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}


class _Tick:
    """One evaluation: what the cursor says is live, and the decision for each delivery."""

    def __init__(self, context: dg.SensorEvaluationContext, paths: PathSettings, catalog: Catalog):
        self.context, self.paths, self.catalog = context, paths, catalog
        self.now = dt.datetime.now()
        # The cursor holds the digest of each live file: an identical re-delivery is archived without a
        # run, while going back to an older version (A, B, A) still republishes.
        self.live: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        self.loaded = _loaded_layers(context)
        self.settings = InboxSettings()

    def _runs_for(self, key: str) -> list[dg.RunRecord]:
        return list(self.context.instance.get_run_records(filters=dg.RunsFilter(tags={delivery_tag(key): "1"})))

    def decide(self, delivery: Delivery) -> Accepted | None:
        log, label = self.context.log, f"{delivery.domain}/{delivery.name}"
        digest = delivery.digest()
        key = delivery.run_key(digest)
        # The file leaves the inbox only once a run that publishes it has started (requested on an earlier
        # tick): a request that failed leaves it here, to be requested again under the same key; a run that
        # failed before it started (its process could not load the code) is requested again a minute later.
        records = self._runs_for(key)
        started = [r for r in records if r.start_time is not None or r.dagster_run.status == CANCELED]
        if started:
            archive(delivery, self.paths.archive_dir / delivery.domain, digest, self.now)
            self.live[delivery.live_name] = digest
            log.info(f"{label}: archived, published by run {started[0].dagster_run.run_id}")
            return None
        if any(not r.dagster_run.is_finished for r in records):
            return None  # queued or starting
        if records and time.time() - max(r.end_time or 0 for r in records) < self.settings.retry_seconds:
            return None
        if records:
            log.warning(f"{label}: run {records[0].dagster_run.run_id} failed before it started; requested again")
        if self.live.get(delivery.live_name) == digest:
            archive(
                delivery,
                self.paths.archive_dir / delivery.domain,
                digest,
                self.now,
                "already delivered: identical content",
            )
            log.info(f"{label}: identical to the live file, archived without a run")
            return None
        why = judge(delivery)
        if why:
            quarantine(delivery, self.paths, digest, self.now, why)
            log.warning(f"quarantined {label}: {why}")
            return None
        layers = downstream_layers(set(delivery.layers), self.catalog)
        unknown = layers - self.loaded if self.loaded is not None else set()
        if unknown:
            log.warning(
                f"{label} waits in the inbox: layers {sorted(unknown)} are not loaded yet "
                "(the daemon reloads the code location every minute)"
            )
            return None
        stage(delivery, self.paths)
        return Accepted(label, key, frozenset(layers), attempt=len(records))


@dg.sensor(
    name="inbox_sensor",
    job_name=INBOX_JOB,
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Accepts files dropped into data/inbox/<domain>/ and materializes the layers they feed; a "
    "file is archived once its run exists, or quarantined with its reason. An identical re-delivery starts no run.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, geoportal: GeoportalResource):
    paths, catalog = geoportal.paths(), geoportal.catalog()
    tick = _Tick(context, paths, catalog)
    accepted = []
    for delivery in find_deliveries(paths.inbox_dir, catalog, tick.settings.shapefile_grace_seconds):
        try:
            decision = tick.decide(delivery)
        except Exception as error:  # noqa: BLE001 - one delivery's trouble (a vanished file, a full disk) never ends the tick
            context.log.error(f"{delivery.domain}/{delivery.name} left in the inbox: {type(error).__name__}: {error}")
            continue
        if decision is not None:
            accepted.append(decision)
    context.update_cursor(json.dumps(tick.live, sort_keys=True))
    if accepted:
        yield run_request(accepted)
