"""Publication stores beside the GeoPackage files: PostGIS when GEOPORTAL_STORE_URL names one."""

from __future__ import annotations

import geopandas as gpd

from layers.catalog import LayerSpec
from layers.store import store_url


def publish_to_store(frame: gpd.GeoDataFrame, spec: LayerSpec, by_source: dict[str, int] | None) -> int | None:
    """Publish the layer to the configured store (the version it got), or nothing without one. Raises a
    PublicationError subclass with one line when the store refuses."""
    url = store_url()
    if not url:
        return None
    from assets.stores.postgis import publish_postgis  # psycopg only where a store is configured

    return publish_postgis(frame, spec, url, by_source)
