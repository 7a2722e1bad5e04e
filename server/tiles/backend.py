"""Where tiles are rendered from: the store seam's side of VectorTiles.

VectorTiles (caching, ETags, gzip, metadata) asks a `TileBackend` three things: which version of a layer is served
now (the cache key), the layer's box (metadata), and the tile itself. `GeoPackageTiles` renders from the published
files with the Python renderer (server/tiles/render.py); the PostGIS store brings `PostGISTiles`
(server/tiles/postgis_render.py), one SQL statement per tile with the same generalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from layers.catalog import FieldSpec, LayerSpec
from layers.timewindow import Interval
from server.published import files
from server.published.files import FileIdentity, file_identity
from server.tiles.index import IndexCache, LayerIndex, load_index, stored_index
from server.tiles.metadata import Bbox
from server.tiles.render import LayerSource, TilePolicy, connect, render_tile
from server.tiles.shared import digest


class TileBackend(Protocol):
    def identity(self, layer_id: str) -> Hashable | None:
        """The served version of the layer (part of the tile cache key); None while it is not published.
        Cheap: called for every tile request, on the event loop."""
        ...

    def poll(self) -> None:
        """Look for new versions now (before rendering a miss, off the event loop)."""
        ...

    def namespace(self, ask: bool = True) -> str | None:
        """What the versions are versions of, for tiles kept beyond the process (server/tiles/shared.py); None
        while unknown. With `ask` False it answers without I/O (on the event loop)."""
        ...

    def bounds(self, layer_id: str) -> Bbox | None:
        """The published layer's lon/lat box, None when unknown."""
        ...

    def source(self, spec: LayerSpec, fields: tuple[FieldSpec, ...]) -> LayerSource: ...

    def render(
        self, sources: Sequence[LayerSource], z: int, x: int, y: int, *, when: Interval | None, policy: TilePolicy
    ) -> tuple[bytes, bool]:
        """The uncompressed MVT, and whether it may be cached under the identities asked before rendering (False
        when a publication came in between: the tile is right for now but not for that key)."""
        ...


@lru_cache(maxsize=256)
def _data_bounds(identity: FileIdentity, layer_id: str) -> Bbox | None:
    """The layer's box as the pipeline wrote it into gpkg_contents; cached per file identity."""
    if identity is None:
        return None
    db = files.connect(identity[0], immutable=True)
    try:
        return files.read_bounds(db, layer_id)
    finally:
        db.close()


class GeoPackageTiles:
    """Tiles from the published GeoPackages: a stat per layer is the identity (a rename is seen at once)."""

    def __init__(self, published_path: Callable[[str], Path]):
        self.published_path = published_path
        self.indexes = IndexCache()  # per published file: what low-zoom thinning reads instead of the R-tree
        self._paths: dict[str, str] = {}  # layer -> its file's path: a stat per layer and request is all that is left
        self.index_dir: Path | None = None  # where the box indexes are kept for every worker (`share`)

    def share(self, folder: Path) -> None:
        """Keep what is built once per publication (the box indexes) in `folder`, for the other workers."""
        self.index_dir = folder / "indexes"

    def identity(self, layer_id: str) -> Hashable | None:
        path = self._paths.get(layer_id)
        if path is None:
            path = self._paths[layer_id] = str(self.published_path(layer_id))
        return file_identity(path)

    def poll(self) -> None:
        """Every `identity` is a fresh stat already."""

    def namespace(self, ask: bool = True) -> str | None:
        return ""  # an identity names the file's path, inode, time and size: unique already

    def bounds(self, layer_id: str) -> Bbox | None:
        return _data_bounds(file_identity(self.published_path(layer_id)), layer_id)

    def source(self, spec: LayerSpec, fields: tuple[FieldSpec, ...]) -> LayerSource:
        return LayerSource(spec, self.published_path(spec.id), fields)

    def render(
        self, sources: Sequence[LayerSource], z: int, x: int, y: int, *, when: Interval | None, policy: TilePolicy
    ) -> tuple[bytes, bool]:
        # A file replaced meanwhile is read whole as the new version (connections pin what they opened): the
        # tile is cached under the identity stat'ed before, which no later request asks for.
        return render_tile(sources, z, x, y, when=when, policy=policy, index_of=self._index), True

    def _index(self, source: LayerSource) -> LayerIndex:
        assert source.path is not None
        path = source.path
        identity = file_identity(path)

        def load() -> LayerIndex:
            db = connect(path)
            try:
                return load_index(db, source.spec)
            finally:
                db.close()

        def build() -> LayerIndex:
            if self.index_dir is None or identity is None:
                return load()
            # the version names the file and the layer as the catalog defines it (which time fields, their types)
            return stored_index(
                self.index_dir, digest(str(path)), digest((identity, source.spec.model_dump_json())), load
            )

        return self.indexes.get(identity or (str(path), 0, 0, 0, 0), build)
