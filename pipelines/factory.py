"""Dagster assets built from the layer catalog: one asset per YAML, with its checks and freshness."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from assets.changes import recording_changes
from assets.checks import (
    CheckOutcome,
    MetadataTable,
    all_rejected,
    check_names,
    publication_checks,
    volume,
    zone_topology,
)
from assets.ingest import LayerBuild, build_layer, publish_layer
from assets.publish import PublicationError, published_state, write_findings, write_rejects
from assets.records import SourceError
from assets.topology import findings_frame
from layers.catalog import Catalog, LayerSpec
from layers.coordination import upstream_layers
from layers.settings import PathSettings
from pipelines.resources import GeoportalResource

MAX_LISTED_REJECTS = 20


def _metadata(build, path) -> dict[str, object]:
    counts = build.counts
    meta: dict[str, object] = {
        "read": counts.read,
        "published": counts.published,
        "repaired": counts.repaired,
        "rejected": counts.rejected,
        "skipped_other_layers": counts.skipped,
        "bbox": dg.MetadataValue.json(build.bbox),
        "crs": "EPSG:4326",
        "source_crs": ", ".join(build.source_crs),
        "path": dg.MetadataValue.path(str(path)),
        "published_by_source": dg.MetadataValue.json(counts.by_source),
    }
    if build.unjoined:
        meta["records_without_join_match"] = build.unjoined
    if build.rejects:
        listed = "\n".join(
            f"| {r.source} | {r.record} | {r.field} | {r.reason[:120]} |" for r in build.rejects[:MAX_LISTED_REJECTS]
        )
        meta["rejects"] = dg.MetadataValue.md("| file | record | field | reason |\n|---|---|---|---|\n" + listed)
    if build.warnings:
        meta["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in build.warnings))
    return meta


class LayerRunConfig(dg.Config):
    """Run config of a layer asset; in the UI's launchpad: `ops: {repairs: {config: {release_hold: true}}}`."""

    release_hold: bool = False  # publish although the volume check holds it (the operator checked the loss)


def _check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    metadata = {
        key: dg.MetadataValue.md(value) if isinstance(value, MetadataTable) else value
        for key, value in outcome.metadata.items()
    }
    return dg.AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        description=outcome.description,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def _failure(description: str) -> dg.Failure:
    # one line: `python -m pipelines` prints it as is, the UI shows it on the step
    return dg.Failure(description=description, allow_retries=False)


def _outcomes(build: LayerBuild, catalog: Catalog, paths: PathSettings, release_hold: bool) -> Iterator:
    """Every check of the build as Dagster results; the zone set's findings also go to their GeoPackage."""
    spec = build.spec
    yield from publication_checks(build.frame, spec, catalog.city)
    previous = published_state(paths.published_path(spec.id), spec.id)
    yield volume(spec, build.counts.published, build.counts.by_source, previous, release_hold)
    if spec.zone_topology:
        outcome, found = zone_topology(build.frame, spec)
        target = paths.topology_path(spec.id)
        write_findings(findings_frame(found), target, f"{spec.id}_topology", f"{spec.title.ru}: разрывы и наложения")
        yield CheckOutcome(
            outcome.name,
            outcome.passed,
            outcome.blocking,
            outcome.description,
            {**outcome.metadata, "findings_file": dg.MetadataValue.path(str(target))},
        )


def layer_asset(spec: LayerSpec, upstream: set[str] | None = None) -> dg.AssetsDefinition:
    """`upstream`: the layers it is built on besides its files (default: its address register)."""
    freshness = (
        dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=spec.freshness_minutes))
        if spec.freshness_minutes
        else None
    )

    @dg.asset(
        name=spec.id,
        group_name=spec.domain,
        description=f"{spec.title.ru} — {spec.title.en}\n\n{spec.description.en}",
        deps=[dg.AssetKey(layer) for layer in sorted(spec.geocode_layers if upstream is None else upstream)],
        kinds={"geopackage"},
        tags={"domain": spec.domain, "access": spec.access},
        metadata={
            "geometry_type": spec.geometry_type,
            "access": spec.access,
            "sources": dg.MetadataValue.json([s.path for s in spec.sources]),
        },
        check_specs=[dg.AssetCheckSpec(name, asset=spec.id, blocking=blocking) for name, blocking in check_names(spec)],
        freshness_policy=freshness,
    )
    def _layer(context: dg.AssetExecutionContext, config: LayerRunConfig, geoportal: GeoportalResource) -> Iterator:
        catalog, paths = geoportal.catalog(), geoportal.paths()
        try:
            build = build_layer(catalog[spec.id], catalog, paths)
        except SourceError as error:
            # the last good GeoPackage stays published; the message names file and problem
            raise _failure(f"{spec.id}: {error}") from None
        for warning in build.warnings:
            context.log.warning(warning)
        nothing_left = all_rejected(spec.id, build.counts.read, build.counts.published, build.rejects)
        if nothing_left:
            # a file-wide mistake (wrong date format, wrong CRS): staff get the list, the map keeps its layer
            try:
                write_rejects(build.rejects, paths.rejects_path(spec.id))
            except PublicationError as error:
                raise _failure(f"{nothing_left}; {error}") from None
            raise _failure(f"{nothing_left}; rejects in {paths.rejects_path(spec.id)}")
        blocked = []
        try:
            for outcome in _outcomes(build, catalog, paths, config.release_hold):
                if outcome.blocking and not outcome.passed:
                    blocked.append(outcome)
                yield _check_result(outcome)
        except PublicationError as error:
            raise _failure(f"{spec.id}: {error}") from None
        held = next((o for o in blocked if o.name == "volume"), None)
        if held:
            raise _failure(
                f"{spec.id}: held, not published: {held.description}; the previous GeoPackage stays in place "
                f"(to publish anyway, run with config ops: {{{spec.id}: {{config: {{release_hold: true}}}}}})"
            )
        if blocked:
            raise _failure(
                f"{spec.id}: not published, blocking checks failed: {[o.name for o in blocked]}; "
                "the previous GeoPackage stays in place"
            )
        try:
            # the change log commits with the publication, and reads the file it replaces for what ended
            target = paths.published_path(spec.id)
            with recording_changes(paths.changes_path(), build.spec, build.frame, target, context.run_id) as changes:
                path = publish_layer(build, paths)
        except PublicationError as error:
            raise _failure(f"{spec.id}: {error}") from None
        context.log.info(f"{spec.id}: published {build.counts.published}, rejected {build.counts.rejected} → {path}")
        yield dg.MaterializeResult(metadata={**_metadata(build, path), **changes})

    return _layer


def layer_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    """The layers read from files; a layer derived by rules is pipelines.conflicts'."""
    return [layer_asset(spec, upstream_layers(spec, catalog)) for spec in catalog.values() if spec.sources]
