"""A city of the test's own in a temporary folder: its `_city.yaml`, layer YAMLs and source files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from layers.catalog import LayerSpec, load_catalog
from layers.settings import PathSettings

NEW_YORK = """
name: {ru: Нью-Йорк, en: New York}
timezone: America/New_York
extent: [-74.26, 40.49, -73.70, 40.92]
"""
SOFIA = """
name: {ru: София, en: Sofia}
timezone: Europe/Sofia
extent: [23.10, 42.55, 23.60, 42.80]
"""


def make_city(tmp_path: Path, city_yaml: str, layers: dict[str, str]) -> PathSettings:
    """Catalog in `layers/`, sample sources in `sources/`, deliveries in `live/`, output beside."""
    catalog = tmp_path / "layers"
    catalog.mkdir(parents=True)
    (catalog / "_city.yaml").write_text(textwrap.dedent(city_yaml), encoding="utf-8")
    for name, text in layers.items():
        (catalog / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "sources").mkdir()
    return PathSettings(
        root=tmp_path,
        catalog_dir=catalog,
        sample_dir=tmp_path / "sources",
        live_dir=tmp_path / "live",
        published_dir=tmp_path / "published",
        rejects_dir=tmp_path / "rejects",
    )


def build(paths: PathSettings, layer: str, **options):
    from assets.ingest import build_layer

    catalog = load_catalog(paths.catalog_dir)
    return build_layer(catalog[layer], catalog, paths, **options)


def spec(paths: PathSettings, layer: str) -> LayerSpec:
    return load_catalog(paths.catalog_dir)[layer]


def cells(column) -> list:
    """A published column as a list, missing values (None/NaN/NA) as None."""
    return [None if pd.isna(value) else value for value in column]


def reasons(result) -> dict[str, str]:
    """{record: "field: reason"} of a build's rejects."""
    return {r.record: f"{r.field}: {r.reason}" for r in result.rejects}
