"""The inbox sensor: a file delivered to data/inbox/<domain>/ republishes the layers it feeds."""

import datetime as dt
import json

import dagster as dg

from assets.inbox import accept, archive, find_deliveries, problem, quarantine
from layers.catalog import Catalog
from pipelines.resources import GeoportalResource


def downstream_layers(layers: set[str], catalog: Catalog) -> set[str]:
    """Layers geocoded against a changed register change too."""
    result = set(layers)
    while True:
        more = {spec.id for spec in catalog.values() if spec.geocode_layers & result} - result
        if not more:
            return result
        result |= more


@dg.sensor(
    name="inbox_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Accepts files dropped into data/inbox/<domain>/, archives or quarantines them, "
    "and materializes the layers they feed. A re-delivered identical file starts no run.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, geoportal: GeoportalResource):
    paths, catalog = geoportal.paths(), geoportal.catalog()
    now = dt.datetime.now()
    # The cursor holds the digest of each source's live delivery: an identical re-delivery is
    # archived without a run, while going back to an older version (A, B, A) still republishes.
    live: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    for delivery in find_deliveries(paths.inbox_dir, catalog):
        digest = delivery.digest()
        why = problem(delivery)
        if why:
            quarantine(delivery, paths, digest, now, why)
            context.log.warning(f"quarantined {delivery.domain}/{delivery.name}: {why}")
            continue
        run_key = f"{delivery.domain}/{delivery.source.path}@{digest[:16]}@{now:%Y%m%dT%H%M%S}"
        if live.get(delivery.source.path) == digest:
            archive(delivery, paths.archive_dir / delivery.domain, digest, now, "already delivered: identical content")
            context.log.info(f"{delivery.name}: identical to an earlier delivery, archived without a run")
            continue
        accept(delivery, paths, digest, now)
        live[delivery.source.path] = digest
        context.update_cursor(json.dumps(live, sort_keys=True))
        layers = downstream_layers(set(delivery.layers), catalog)
        yield dg.RunRequest(
            run_key=run_key,
            asset_selection=[dg.AssetKey(layer) for layer in sorted(layers)],
            tags={"geoportal/delivery": f"{delivery.domain}/{delivery.name}", "geoportal/sha256": digest},
        )
