"""The inbox sensor: a file delivered to data/inbox/<domain>/ republishes the layers it feeds."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from assets.inbox import Delivery, InboxSettings, archive, find_deliveries, judge, quarantine, stage
from layers.catalog import Catalog
from layers.settings import PathSettings
from pipelines.jobs import INBOX_JOB
from pipelines.resources import GeoportalResource

# The daemon's sensor loop wakes every 5 s at best (dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME): asking
# for less gains nothing, asking for more delays every delivery.
INTERVAL_SECONDS = 5


def downstream_layers(layers: set[str], catalog: Catalog) -> set[str]:
    """Layers geocoded against a changed register change too."""
    result = set(layers)
    while True:
        more = {spec.id for spec in catalog.values() if spec.geocode_layers & result} - result
        if not more:
            return result
        result |= more


def _loaded_layers(context: dg.SensorEvaluationContext) -> set[str] | None:
    """Asset keys of the running code location (None when the sensor runs outside one, e.g. in a unit test):
    a layer added to the catalog after it loaded cannot be materialized until it is reloaded."""
    repository = context.repository_def
    if repository is None:
        return None
    return {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}


def _run_for(context: dg.SensorEvaluationContext, run_key: str) -> dg.DagsterRun | None:
    runs = context.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return runs[0] if runs else None


class _Tick:
    """One evaluation: what the cursor says is live, and the decision for each delivery."""

    def __init__(self, context: dg.SensorEvaluationContext, paths: PathSettings, catalog: Catalog):
        self.context, self.paths, self.catalog = context, paths, catalog
        self.now = dt.datetime.now()
        # The cursor holds the digest of each live file: an identical re-delivery is archived without a
        # run, while going back to an older version (A, B, A) still republishes.
        self.live: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        self.loaded = _loaded_layers(context)

    def decide(self, delivery: Delivery) -> dg.RunRequest | None:
        log, label = self.context.log, f"{delivery.domain}/{delivery.name}"
        digest = delivery.digest()
        run_key = delivery.run_key(digest)
        # The file leaves the inbox only once the run that publishes it exists (requested on an earlier
        # tick): a request that failed leaves it here, to be requested again with the same key.
        run = _run_for(self.context, run_key)
        if run is not None:
            archive(delivery, self.paths.archive_dir / delivery.domain, digest, self.now)
            self.live[delivery.live_name] = digest
            log.info(f"{label}: archived, published by run {run.run_id}")
            return None
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
                "(reload the code location in the Dagster UI, or restart the daemon)"
            )
            return None
        stage(delivery, self.paths)
        return dg.RunRequest(
            run_key=run_key,
            asset_selection=[dg.AssetKey(layer) for layer in sorted(layers)],
            tags={"geoportal/delivery": label, "geoportal/sha256": digest},
        )


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
    grace = InboxSettings().shapefile_grace_seconds
    for delivery in find_deliveries(paths.inbox_dir, catalog, grace):
        try:
            request = tick.decide(delivery)
        except Exception as error:  # noqa: BLE001 - one delivery's trouble (a vanished file, a full disk) never ends the tick
            context.log.error(f"{delivery.domain}/{delivery.name} left in the inbox: {type(error).__name__}: {error}")
            continue
        if request is not None:
            yield request
    context.update_cursor(json.dumps(tick.live, sort_keys=True))
