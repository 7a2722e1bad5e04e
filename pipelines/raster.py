"""The disruption-load raster: an asset after the layers that declare a severity, its job and the sensor
that refreshes it under the daemon. Absent altogether when no layer declares a severity."""

import datetime as dt

import dagster as dg

from assets.raster import PRODUCT, RasterSettings, disruption_grid, is_valid_cog, read_active, write_cog
from layers.catalog import Catalog
from pipelines.resources import GeoportalResource

RASTER_JOB = f"{PRODUCT}_job"
# The load is "as of now": it changes when a layer is published and when time passes an event's start or
# end, so it is also redone at the cadence of the fastest domains even when nothing was published.
REFRESH_CRON = "*/10 * * * *"


class DisruptionLoadConfig(dg.Config):
    at: str | None = None  # ISO moment to rasterize; default: now (inject a clock for tests/replays)


def refresh_condition(timezone: str) -> dg.AutomationCondition:
    """Like `eager()` but without its "no dependency missing": a layer that failed (or was never published)
    must not keep the others out of the raster; it is rasterized from what is published."""
    trigger = (
        dg.AutomationCondition.newly_missing()
        | dg.AutomationCondition.any_deps_updated()
        | dg.AutomationCondition.cron_tick_passed(REFRESH_CRON, timezone)
    ).since_last_handled()
    return (
        trigger & ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress()
    ).with_label("after publications, and every 10 minutes")


def disruption_load_asset(catalog: Catalog) -> dg.AssetsDefinition:
    inputs = sorted(spec.id for spec in catalog.values() if spec.severity)

    @dg.asset(
        name=PRODUCT,
        group_name="raster",
        description="Нагрузка от ремонтов, перекрытий и отключений — Disruption load: active repairs, "
        "closures and outages weighted by severity on a 50 m grid over what is active (COG, EPSG:3857)",
        deps=[dg.AssetKey(layer) for layer in inputs],
        kinds={"geotiff"},
        check_specs=[dg.AssetCheckSpec("valid_cog", asset=PRODUCT, blocking=True)],
        automation_condition=refresh_condition(catalog.city.timezone),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=30)),
    )
    def _raster(context: dg.AssetExecutionContext, config: DisruptionLoadConfig, geoportal: GeoportalResource):
        paths, current, settings = geoportal.paths(), geoportal.catalog(), RasterSettings()
        moment = dt.datetime.fromisoformat(config.at) if config.at else dt.datetime.now(dt.UTC)
        active = read_active(current, paths.published_path, moment)
        missing = sorted(set(inputs) - set(active))
        if missing:
            context.log.warning(f"not published, left out of the raster: {', '.join(missing)}")
        grid = disruption_grid(active, current.city.extent, settings.cell_metres, settings.max_cells)
        path = write_cog(grid, paths.raster_path(PRODUCT), moment)
        valid, errors, warnings = is_valid_cog(path)
        yield dg.AssetCheckResult(
            check_name="valid_cog",
            passed=valid,
            metadata={"errors": "; ".join(errors) or "none", "warnings": "; ".join(warnings) or "none"},
        )
        yield dg.MaterializeResult(
            metadata={
                "moment": moment.isoformat(),
                "path": dg.MetadataValue.path(str(path)),
                "grid": grid.note(settings.max_cells),
                "width": grid.values.shape[1],
                "height": grid.values.shape[0],
                "cell_m": grid.cell,
                "coarsened": grid.coarsened,
                "crs": grid.crs,
                "max_load": float(grid.values.max()),
                "active_features": dg.MetadataValue.json(grid.counted),
                "not_published": dg.MetadataValue.json(missing),
            }
        )

    return _raster


def raster_definitions(catalog: Catalog) -> dg.Definitions:
    """The raster asset, a job of its own (`python -m pipelines` runs it after `all_layers`) and a sensor
    that is on by default: Dagster's implicit automation sensor starts stopped. Empty without severities."""
    if not any(spec.severity for spec in catalog.values()):
        return dg.Definitions()
    selection = dg.AssetSelection.assets(PRODUCT)
    return dg.Definitions(
        assets=[disruption_load_asset(catalog)],
        jobs=[dg.define_asset_job(RASTER_JOB, selection=selection, description="Rasterize the disruption load")],
        sensors=[
            dg.AutomationConditionSensorDefinition(
                f"{PRODUCT}_automation",
                target=selection,
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            )
        ],
    )
