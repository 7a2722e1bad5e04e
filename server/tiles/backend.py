"""Where tiles are rendered from: the store seam's side of VectorTiles.

VectorTiles (caching, ETags, gzip, metadata) asks a `TileBackend` three things: which version of a layer is served
now (the cache key), the layer's box (metadata), and the tile itself. `GeoPackageTiles` renders from the published
files with the Python renderer (server/tiles/render.py); the PostGIS store brings `PostGISTiles`
(server/tiles/postgis_render.py), one SQL statement per tile with the same generalisation.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Hashable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import shapely

from layers.catalog import FieldSpec, LayerSpec
from layers.timewindow import Interval
from server.loop_pass import PerPass
from server.published import files
from server.published.files import FileIdentity, file_identity
from server.published.gpkg import GeometryBlobError, to_shapely_many
from server.published.sql import quote_identifier
from server.tiles.carry import changed_limit
from server.tiles.index import (
    IndexCache,
    LayerIndex,
    index_of,
    index_rows,
    load_index,
    mercator_bounds,
    read_stored,
    replaced,
    stored_index,
    temporal_columns,
)
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

    def source(self, spec: LayerSpec, fields: tuple[FieldSpec, ...], version: Hashable = None) -> LayerSource | None:
        """What a tile of the layer at `version` (None: the served one) is rendered from; None when that version
        can no longer be read (an older one than the store keeps)."""
        ...

    def render(
        self, sources: Sequence[LayerSource], z: int, x: int, y: int, *, when: Interval | None, policy: TilePolicy
    ) -> tuple[bytes, bool]:
        """The uncompressed MVT, and whether it may be cached under the identities asked before rendering (False
        when a publication came in between: the tile is right for now but not for that key)."""
        ...

    def changed_boxes(self, spec: LayerSpec, old: object, new: Hashable) -> np.ndarray | None:
        """Web Mercator boxes (n x 4) of the features that appeared, changed or ended from version `old` (as the
        shared store's layers.json holds it: JSON) to `new` of the layer, a changed feature's old and new box; None
        when the store cannot tell (see server/tiles/carry.py): the new version is then rendered anew."""
        ...


def shapely_bounds(geometries: np.ndarray) -> np.ndarray:
    """Lon/lat bounds of the geometries that are there (a missing one has no box)."""
    return shapely.bounds(geometries[~shapely.is_missing(geometries)]).reshape(-1, 4)


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
    """Tiles from the published GeoPackages: a stat per layer is the identity (a rename is seen by the next pass of
    the event loop, at once off it)."""

    # rendered in this process, mostly under its GIL: more at once only make each take longer. Two rather than one
    # (the same on bench_tiles' first tiles after a start: 39.0-42.1 against 41.1 req/s, p99 2.5-2.9 s), so that one
    # slow tile (a low zoom's thinning of 1M points, a box index being built) does not hold every other miss
    renders_at_once = 2

    def __init__(self, published_path: Callable[[str], Path]):
        self.published_path = published_path
        self.indexes = IndexCache()  # per published file: what low-zoom thinning reads instead of the R-tree
        self._paths: dict[str, str] = {}  # layer -> its file's path
        # a stat per layer and pass of the event loop (server/loop_pass.py): what a cached tile costs besides its bytes
        self._identity = PerPass(self._stat)
        self.index_dir: Path | None = None  # where the box indexes are kept for every worker (`share`)
        self.version_dir: Path | None = None  # hard links of the served files, to compare the next version with
        self._retained: set[Hashable] = set()

    def share(self, folder: Path) -> None:
        """Keep what is built once per publication (the box indexes) in `folder`, for the other workers, and a hard
        link of each served file (`retain`), which the next version is compared with (`changed_boxes`)."""
        self.index_dir = folder / "indexes"
        self.version_dir = folder / "versions"

    def _kept_file(self, identity: tuple) -> Path:
        assert self.version_dir is not None
        path, _, inode, mtime, size = identity
        return self.version_dir / f"{digest(path)}-{inode}-{mtime}-{size}.gpkg"

    def retain(self, layer_id: str) -> None:
        """Keep the layer's served file reachable after the pipeline replaces it: a hard link (no bytes copied;
        the old file's blocks are freed once `forget` removes it). Not possible across file systems: the next
        version is then rendered anew."""
        identity = self.identity(layer_id)
        if self.version_dir is None or identity is None or identity in self._retained:
            return
        kept = self._kept_file(identity)  # type: ignore[arg-type]
        try:
            self.version_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.link(identity[0], kept)  # type: ignore[index]
            stat = kept.stat()
            if (stat.st_dev, stat.st_ino) != identity[1:3]:  # type: ignore[index]
                kept.unlink()  # the file was replaced between the stat and the link: that one is not this version
                return
        except OSError:
            return
        self._retained.add(identity)

    def forget(self, served: set[Hashable]) -> None:
        """Remove the kept files of versions not served now (`served`: identities)."""
        if self.version_dir is None:
            return
        keep = {self._kept_file(identity).name for identity in served if identity}  # type: ignore[arg-type]
        with contextlib.suppress(OSError):
            for kept in self.version_dir.iterdir():
                if kept.name not in keep:
                    with contextlib.suppress(OSError):
                        kept.unlink()
        self._retained &= set(served)

    def changed_boxes(self, spec: LayerSpec, old: object, new: Hashable) -> np.ndarray | None:
        """The new file compared with the kept link of the old one, ATTACHed: a join by fid (the primary key) in
        SQLite. While it has the rows at hand it also stores the new version's box index, derived from the old
        one's (`index.replaced`), so no worker scans the new file for it."""
        if self.version_dir is None or not isinstance(old, list) or len(old) != 5 or not isinstance(new, tuple):
            return None
        old_identity = tuple(old)
        kept = self._kept_file(old_identity)
        try:
            if kept.stat().st_ino != old_identity[2]:
                return None
            db = files.connect(new[0], immutable=True)
        except (OSError, sqlite3.Error):
            return None
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the file is open (pinned) from here on
            if file_identity(new[0]) != new:  # replaced again meanwhile: the connection may hold another version
                return None
            uri = "file:" + urllib.parse.quote(os.path.abspath(kept)) + "?mode=ro&immutable=1"
            db.execute("ATTACH DATABASE ? AS previous", (uri,))
            statement, limit = self._difference(db, spec)
            rows = db.execute(statement, [limit + 1]).fetchall()
        except sqlite3.Error:
            return None  # another schema (a column added or gone): render anew
        finally:
            db.close()
        if len(rows) > limit:
            return None
        boxes = []
        try:
            for column in (1, 2):  # the new geometries, then the old ones
                bounds = shapely_bounds(to_shapely_many([row[column] for row in rows]))
                boxes.append(np.column_stack(mercator_bounds(*bounds.T)) if len(bounds) else np.empty((0, 4)))
            self._store_index(spec, old_identity, new, rows)
        except GeometryBlobError:
            return None  # an unreadable geometry: whatever the tiles make of it, not worth guessing
        return np.concatenate(boxes)

    @staticmethod
    def _difference(db: sqlite3.Connection, spec: LayerSpec) -> tuple[str, int]:
        """The statement listing (fid, new geometry, old geometry, new temporal columns...) of every feature that
        appeared, changed (geometry or any catalog field) or ended, and how many the layer may change."""
        (features,) = db.execute(f"SELECT count(*) FROM {quote_identifier(spec.id)}").fetchone()
        table = quote_identifier(spec.id)
        compared = ["geom", *(f.name for f in spec.fields)]
        differs = " OR ".join(f"n.{quote_identifier(c)} IS NOT o.{quote_identifier(c)}" for c in compared)
        times = temporal_columns(spec)
        new_times = "".join(f", n.{quote_identifier(c)}" for c in times)
        no_times = ", NULL" * len(times)
        statement = (
            f"SELECT n.fid, n.geom, o.geom{new_times} FROM main.{table} n LEFT JOIN previous.{table} o"
            f" ON o.fid = n.fid WHERE o.fid IS NULL OR {differs}"
            f" UNION ALL SELECT o.fid, NULL, o.geom{no_times} FROM previous.{table} o"
            f" WHERE NOT EXISTS (SELECT 1 FROM main.{table} n WHERE n.fid = o.fid) LIMIT ?"
        )
        return statement, changed_limit(features)

    def _store_index(self, spec: LayerSpec, old: tuple, new: tuple, rows: list[tuple]) -> None:
        """The new version's box index from the old one's, if stored (else the first thinned tile scans the file)."""
        if self.index_dir is None:
            return
        name, layer = digest(str(new[0])), spec.model_dump_json()
        previous = read_stored(self.index_dir, name, digest((old, layer)))
        if previous is None:
            return
        present = [(row[0], row[1], *row[3:]) for row in rows if row[1] is not None]
        ids, bounds, times = index_rows(present) if present else (np.empty(0, np.int64), np.empty((0, 4)), [])
        added = index_of(spec, ids, bounds, times)
        removed = np.fromiter((row[0] for row in rows), np.int64, len(rows))
        stored_index(self.index_dir, name, digest((new, layer)), lambda: replaced(previous, removed, added))

    def identity(self, layer_id: str) -> Hashable | None:
        return self._identity(layer_id)

    def _stat(self, layer_id: str) -> Hashable | None:
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

    def source(self, spec: LayerSpec, fields: tuple[FieldSpec, ...], version: Hashable = None) -> LayerSource | None:
        """The published file, or for a version it no longer is, the hard link kept of it (`retain`)."""
        if version is None or version == self.identity(spec.id):
            return LayerSource(spec, self.published_path(spec.id), fields, version)
        if self.version_dir is None or not isinstance(version, tuple) or len(version) != 5:
            return None
        kept = self._kept_file(version)
        try:
            if kept.stat().st_ino != version[2]:
                return None
        except OSError:
            return None  # forgotten: a version no tile is answered from any more
        return LayerSource(spec, kept, fields, version, previous=True)

    def render(
        self, sources: Sequence[LayerSource], z: int, x: int, y: int, *, when: Interval | None, policy: TilePolicy
    ) -> tuple[bytes, bool]:
        for source in sources:
            self.retain(source.spec.id)  # a version some tile was drawn from: the next one is compared with it
        tile = render_tile(sources, z, x, y, when=when, policy=policy, index_of=self._index)
        # A file replaced meanwhile is read whole as the new version (connections pin what they opened, and open
        # the file when made): cacheable only if every published file is still the version the key names, since
        # the version before stays asked for while the new one's tiles are prepared (server/tiles/vector.py).
        current = all(s.previous or s.version is None or self.identity(s.spec.id) == s.version for s in sources)
        return tile, current

    def _index(self, source: LayerSource) -> LayerIndex:
        assert source.path is not None
        path = source.path
        # a kept link of an older version: the index is the one of the version it is (stored under its file's name)
        identity = source.version if source.previous else file_identity(path)
        named = Path(identity[0]) if source.previous else path  # type: ignore[index]

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
                self.index_dir, digest(str(named)), digest((identity, source.spec.model_dump_json())), load
            )

        return self.indexes.get(identity or (str(path), 0, 0, 0, 0), build)
