"""The layers derived by rules (conflicts): an asset after the event layers, its check, job and automation sensor."""

import dagster as dg
import geopandas as gpd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from assets.changes import recording_changes
from assets.conflicts import find_conflicts
from assets.publish import PublicationError, publish_geopackage, stable_fid
from layers.catalog import Catalog, LayerSpec
from layers.coordination import upstream_layers
from pipelines.resources import GeoportalResource

CHECK = "conflicts_by_rule"
RULES_JOB = "rules_job"


def refresh_condition() -> dg.AutomationCondition:
    """After each publication of a layer it reads (and when it goes missing). Unlike `eager()`, a layer that
    failed or was never published does not keep it from being recomputed from what is published."""
    trigger = (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    return (
        trigger & ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress()
    ).with_label("after each publication of the layers its rules read")


def read_published(layer_ids: set[str], paths) -> tuple[dict[str, gpd.GeoDataFrame], list[str]]:
    """The published layers among `layer_ids`; a missing or unreadable one is left out with a note."""
    found, notes = {}, []
    for layer_id in sorted(layer_ids):
        path = paths.published_path(layer_id)
        if not path.exists():
            notes.append(f"{layer_id} is not published")
            continue
        try:
            found[layer_id] = pyogrio.read_dataframe(path)
        except (DataSourceError, DataLayerError) as error:
            notes.append(f"{layer_id}: cannot read {path.name}: {error}")
    return found, notes


def _table(spec: LayerSpec, counts: dict[str, int], skipped: dict[str, str]) -> str:
    rows = [
        f"| {rule.id} | {rule.title.ru} | {counts.get(rule.id, '—')} | "
        f"{'skipped: ' + skipped[rule.id] if rule.id in skipped else 'applied'} |"
        for rule in spec.rules
    ]
    return "| rule | title | conflicts | status |\n|---|---|---|---|\n" + "\n".join(rows)


def rules_asset(spec: LayerSpec, catalog: Catalog) -> dg.AssetsDefinition:
    inputs = upstream_layers(spec, catalog)

    @dg.asset(
        name=spec.id,
        group_name=spec.domain,
        description=f"{spec.title.ru} — {spec.title.en}\n\n{spec.description.en}",
        deps=[dg.AssetKey(layer) for layer in sorted(inputs)],
        kinds={"geopackage"},
        tags={"domain": spec.domain, "access": spec.access},
        metadata={"rules": dg.MetadataValue.json([rule.id for rule in spec.rules]), "access": spec.access},
        check_specs=[dg.AssetCheckSpec(CHECK, asset=spec.id, blocking=False)],
        automation_condition=refresh_condition(),
    )
    def _rules(context: dg.AssetExecutionContext, geoportal: GeoportalResource):
        paths, current = geoportal.paths(), geoportal.catalog()
        layer = current[spec.id]
        published, notes = read_published(upstream_layers(layer, current), paths)
        for note in notes:
            context.log.warning(f"{spec.id}: {note}")
        found = find_conflicts(layer, current, published)
        frame = found.frame.copy()
        frame.insert(0, "fid", [stable_fid(spec.id, value) for value in frame["conflict_id"]])
        target = paths.published_path(spec.id)
        try:
            # new conflicts: the alert sensor reads them in the change log
            with recording_changes(paths.changes_path(), layer, frame, target, context.run_id) as changes:
                publish_geopackage(frame, layer, target)
        except PublicationError as error:
            raise dg.Failure(description=f"{spec.id}: {error}", allow_retries=False) from None
        total = sum(found.counts.values())
        # a warning while any rule finds something: conflicts are for people to resolve
        yield dg.AssetCheckResult(
            check_name=CHECK,
            passed=total == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{total} conflicts" + (f", {len(found.skipped)} rules skipped" if found.skipped else ""),
            metadata={
                "by_rule": dg.MetadataValue.md(_table(layer, found.counts, found.skipped)),
                **{f"rule_{rule_id}": count for rule_id, count in found.counts.items()},
            },
        )
        context.log.info(f"{spec.id}: {total} conflicts → {target}")
        yield dg.MaterializeResult(
            metadata={
                "conflicts": total,
                "by_rule": dg.MetadataValue.json(found.counts),
                "skipped_rules": dg.MetadataValue.json(found.skipped),
                "not_published": dg.MetadataValue.json(notes),
                "path": dg.MetadataValue.path(str(target)),
                **changes,
            }
        )

    return _rules


def rules_definitions(catalog: Catalog) -> dg.Definitions:
    """One asset per rules layer, a job for them (`python -m pipelines` runs it after `all_layers`) and an
    automation sensor that is on by default (Dagster's implicit one starts stopped). Empty without rules."""
    specs = [spec for spec in catalog.values() if spec.rules]
    if not specs:
        return dg.Definitions()
    selection = dg.AssetSelection.assets(*(spec.id for spec in specs))
    return dg.Definitions(
        assets=[rules_asset(spec, catalog) for spec in specs],
        jobs=[dg.define_asset_job(RULES_JOB, selection=selection, description="Recompute the conflicts layers")],
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "rules_automation",
                target=selection,
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            )
        ],
    )
