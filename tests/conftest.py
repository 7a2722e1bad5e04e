"""Shared fixtures: the sample city published once per test session into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pyproj
import pytest

from layers.settings import REPO_ROOT, PathSettings

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The sample city's "today" (data/sample/irkutsk/expected.json: anchor_today), noon in Irkutsk
SAMPLE_MOMENT = "2026-11-24T04:00:00+00:00"


def pytest_report_header(config) -> list[str]:
    return [f"GDAL {pyogrio.__gdal_version_string__} (pyogrio), PROJ {pyproj.proj_version_str}"]


def city_paths(base: Path) -> PathSettings:
    """Repository catalog and sample city; everything the pipeline writes goes under `base`."""
    return PathSettings(
        published_dir=base / "published",
        rejects_dir=base / "rejects",
        live_dir=base / "live",
        inbox_dir=base / "inbox",
        archive_dir=base / "archive",
        quarantine_dir=base / "quarantine",
        reports_dir=base / "reports",
    )


def path_environment(paths: PathSettings) -> dict[str, str]:
    """The GEOPORTAL_* variables that make a subprocess (the server) see the same folders."""
    names = ["published_dir", "rejects_dir", "live_dir", "inbox_dir", "archive_dir", "quarantine_dir", "reports_dir"]
    return {f"GEOPORTAL_{name.upper()}": str(getattr(paths, name)) for name in names}


@pytest.fixture(scope="session")
def published_city(tmp_path_factory) -> PathSettings:
    """Run the all_layers job (and the raster and conflicts after it) once on the bundled sample city; tests
    read, never write, its output."""
    import dagster as dg

    from layers.catalog import load_catalog
    from pipelines.conflicts import rules_definitions
    from pipelines.factory import layer_assets
    from pipelines.raster import PRODUCT, disruption_load_asset

    paths = city_paths(tmp_path_factory.mktemp("city"))
    catalog = load_catalog()
    result = dg.materialize(
        [*layer_assets(catalog), disruption_load_asset(catalog), *rules_definitions(catalog).assets],
        resources={"geoportal": resource_for(paths)},
        raise_on_error=False,
        run_config={"ops": {PRODUCT: {"config": {"at": SAMPLE_MOMENT}}}},
    )
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return paths


def resource_for(paths: PathSettings):
    from pipelines.resources import GeoportalResource

    return GeoportalResource.of(paths)
