"""The layer catalog: one YAML per published layer, loaded into typed, validated specs."""

from layers.catalog import CatalogError, LayerSpec, load_catalog, load_city

__all__ = ["CatalogError", "LayerSpec", "load_catalog", "load_city"]
