"""The publication store seam: everything the server reads from where the pipeline publishes goes through here.

`GeoPackageStore` is the embedded default: one GeoPackage per layer and one COG per raster product in the
published folder (docs/contracts.md). A second store (PostGIS, the "Scale out" issue) implements
`PublishedStore`; the routes, the access rule, the configuration per level and the caches stay as they are,
because they only ever ask the store (see docs/contracts.md, "The store seam").
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from layers.catalog import Catalog
from layers.rasters import RASTER_PRODUCTS
from layers.settings import PathSettings
from server.published.extents import LayerExtent, read_extent
from server.published.files import Signature
from server.published.watch import WatchedFiles

if TYPE_CHECKING:
    from server.tiles.backend import TileBackend

LOGGER = logging.getLogger(__name__)
GEOPACKAGE_PROVIDER = "server.features.provider.GeoPackageProvider"


class PublishedStore(Protocol):
    def signature(self) -> Signature:
        """Changes whenever a layer or raster product is published; cheap enough for every request."""
        ...

    def extents(self) -> dict[str, LayerExtent]:
        """The layers that can be served now, with their extents; an unreadable one is left out (logged)."""
        ...

    def feature_provider(self, layer_id: str) -> dict[str, Any]:
        """The store-specific part of the layer's pygeoapi feature provider: `name`, `data`, `table`."""
        ...

    def download_source(self, layer_id: str) -> Path:
        """A GeoPackage of the layer as published (the server cuts internal fields out of a copy)."""
        ...

    def layer_path(self, layer_id: str) -> Path:
        """A GeoPackage of the layer for the readers that take files (affects, changes feeds)."""
        ...

    def tile_backend(self) -> TileBackend:
        """How this store's tiles are rendered (server/tiles/backend.py): versions, boxes, the tile itself."""
        ...

    def raster_path(self, product: str) -> Path: ...


class GeoPackageStore:
    """Layers and rasters as files in the published folder, replaced atomically by the pipeline."""

    # threads per worker for pygeoapi's handlers (server.ogcapi.routes): SQLite runs in the worker, on its cores.
    # Small bbox, 1M, 1 worker, 8 conns: 40 threads (anyio's default) p95 26-28 ms, 2-4 threads 17-22 ms.
    query_threads = 3

    def __init__(self, catalog: Catalog, paths: PathSettings):
        self.catalog = catalog
        self.paths = paths
        self._watched: WatchedFiles | None = None

    def watched_files(self) -> dict[str, Path]:
        """Every published file the served configuration depends on: the layers' GeoPackages and the rasters."""
        files = {layer_id: self.layer_path(layer_id) for layer_id in self.catalog}
        files.update({product: self.raster_path(product) for product in RASTER_PRODUCTS})
        return files

    def signature(self) -> Signature:
        if self._watched is None:  # asked on every request: stat'ed again only after the kernel saw a change
            self._watched = WatchedFiles(self.watched_files())
        return self._watched.signature()

    def extents(self) -> dict[str, LayerExtent]:
        """A layer without its GeoPackage is not served yet; one whose file cannot be read is not served until
        it is published again, and does not hold the others back."""
        extents = {}
        for layer_id, spec in self.catalog.items():
            path = self.layer_path(layer_id)
            if not path.exists():
                continue
            try:
                extents[layer_id] = read_extent(path, spec)
            except (sqlite3.DatabaseError, OSError, ValueError) as exc:
                LOGGER.error("%s: %s cannot be read, the layer is not served: %s", layer_id, path, exc)
        return extents

    def feature_provider(self, layer_id: str) -> dict[str, Any]:
        return {"name": GEOPACKAGE_PROVIDER, "data": str(self.layer_path(layer_id)), "table": layer_id}

    def download_source(self, layer_id: str) -> Path:
        return self.layer_path(layer_id)

    def layer_path(self, layer_id: str) -> Path:
        return self.paths.published_path(layer_id)

    def raster_path(self, product: str) -> Path:
        return self.paths.raster_path(product)

    def tile_backend(self) -> TileBackend:
        from server.tiles.backend import GeoPackageTiles

        return GeoPackageTiles(self.layer_path)


def open_store(catalog: Catalog, paths: PathSettings, cache_dir: Path, workers: int = 1) -> PublishedStore:
    """The one choice of store: PostGIS when GEOPORTAL_STORE_URL is set, else the GeoPackage files. `workers`: the
    server's processes on this machine (the PostGIS store sizes each one's statements at once by them)."""
    from layers.store import store_url

    url = store_url()
    if not url:
        return GeoPackageStore(catalog, paths)
    from server.published.postgis_store import PostGISStore  # psycopg only where a store is configured

    return PostGISStore(catalog, paths, url, cache_dir, workers)
