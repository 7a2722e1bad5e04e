"""Dagster assets built from the layer catalog: one asset per YAML, with its checks and freshness."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from assets.checks import check_names, publication_checks
from assets.ingest import build_layer, publish_layer
from assets.records import SourceError
from layers.catalog import Catalog, LayerSpec
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


def layer_asset(spec: LayerSpec) -> dg.AssetsDefinition:
    freshness = (
        dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=spec.freshness_minutes))
        if spec.freshness_minutes
        else None
    )

    @dg.asset(
        name=spec.id,
        group_name=spec.domain,
        description=f"{spec.title.ru} — {spec.title.en}\n\n{spec.description.en}",
        deps=[dg.AssetKey(layer) for layer in sorted(spec.geocode_layers)],
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
    def _layer(context: dg.AssetExecutionContext, geoportal: GeoportalResource) -> Iterator:
        catalog, paths = geoportal.catalog(), geoportal.paths()
        try:
            build = build_layer(catalog[spec.id], catalog, paths)
        except SourceError as error:
            # the last good GeoPackage stays published; the message names file and problem
            raise dg.Failure(description=f"{spec.id}: {error}", allow_retries=False) from None
        for warning in build.warnings:
            context.log.warning(warning)
        blocked = []
        for outcome in publication_checks(build.frame, catalog[spec.id], catalog.city):
            if outcome.blocking and not outcome.passed:
                blocked.append(outcome.name)
            yield dg.AssetCheckResult(
                check_name=outcome.name,
                passed=outcome.passed,
                description=outcome.description,
                severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
                metadata=outcome.metadata,
            )
        if blocked:
            raise dg.Failure(
                description=f"{spec.id}: not published, blocking checks failed: {blocked}; "
                "the previous GeoPackage stays in place",
                allow_retries=False,
            )
        path = publish_layer(build, paths)
        context.log.info(f"{spec.id}: published {build.counts.published}, rejected {build.counts.rejected} → {path}")
        yield dg.MaterializeResult(metadata=_metadata(build, path))

    return _layer


def layer_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    return [layer_asset(spec) for spec in catalog.values()]
