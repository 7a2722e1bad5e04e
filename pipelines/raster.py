"""The disruption-load raster asset, downstream of every layer that declares a severity."""

import datetime as dt

import dagster as dg

from assets.raster import PRODUCT, disruption_grid, is_valid_cog, read_layers, write_cog
from layers.catalog import Catalog
from pipelines.resources import GeoportalResource


class DisruptionLoadConfig(dg.Config):
    at: str | None = None  # ISO moment to rasterize; default: now (inject a clock for tests/replays)


def disruption_load_asset(catalog: Catalog) -> dg.AssetsDefinition:
    inputs = sorted(spec.id for spec in catalog.values() if spec.severity)

    @dg.asset(
        name=PRODUCT,
        group_name="raster",
        description="Нагрузка от ремонтов, перекрытий и отключений — Disruption load: active repairs, "
        "closures and outages weighted by severity on a 50 m grid (COG, EPSG:3857)",
        deps=[dg.AssetKey(layer) for layer in inputs],
        kinds={"geotiff"},
        check_specs=[dg.AssetCheckSpec("valid_cog", asset=PRODUCT, blocking=True)],
        automation_condition=dg.AutomationCondition.eager(),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=30)),
    )
    def _raster(context: dg.AssetExecutionContext, config: DisruptionLoadConfig, geoportal: GeoportalResource):
        paths, current = geoportal.paths(), geoportal.catalog()
        moment = dt.datetime.fromisoformat(config.at) if config.at else dt.datetime.now(dt.UTC)
        grid = disruption_grid(read_layers(current, paths.published_path), current.city.extent, moment)
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
                "width": grid.values.shape[1],
                "height": grid.values.shape[0],
                "crs": grid.crs,
                "max_load": float(grid.values.max()),
                "active_features": dg.MetadataValue.json(grid.counted),
            }
        )

    return _raster
