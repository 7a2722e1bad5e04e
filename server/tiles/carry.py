"""Tiles carried over a publication: which tiles of the version before a layer's new version cannot differ.

A tile (server/tiles/render.py, postgis_render.py) is a function of the features whose exact Web Mercator box meets
the tile grown by its buffer, and of nothing else of the layer: thinning keeps, per cell of the global pixel grid,
the largest then the lowest-fid feature among those, `point_count` counts them, clipping and simplification read the
feature alone, and a tile over its byte budget is drawn again with cells (and at thinned zooms, the buffer rounded
up to cells) twice as large, at most `budget_tries` times. So a feature that appeared, changed or ended can change
exactly the tiles that its old or its new box meets, each grown by the widest buffer any attempt draws (`reach`);
every other tile keeps its bytes, at every access level (a level only narrows the attributes carried), and the
shared store links it from the previous version's folder instead of rendering it (SharedTiles.link_from).

Where the changed features come from: the store itself compares the version before with the new one, feature by
feature (fid, geometry and every catalog field), inside the engine: GeoPackage ATTACHes a hard link the server kept
of the file it served before (GeoPackageTiles.retain) and joins by fid (1.6 s at 1M points); PostGIS hash-joins the
layer's table with the `__previous` one it keeps for rollback, by fid and a 64-bit hash of each row, in one snapshot
with the registry (2.3 s at 1M). Not the pipeline's change log (assets/changes.py): it lists ids but not the old
geometry, is keyed by time rather than by the versions the server saw (two publications between two looks, a
rollback, a file replaced by hand would all be misread), and lives beside the pipeline, not beside a database
several server machines share. Not a content hash per fid kept by the server: every feature of each new version
read into Python (several seconds at 1M) where the engines compare them in C, and one more copy per version on disk.

When in doubt the whole version is rendered anew: no previous folder of the same layers and attributes (a first
publication, a layer added or removed, a catalog change: a new namespace), a previous version no longer at hand (the
hard link gone, the database's `__previous` already another version), a layer whose columns changed (the comparison
fails), or more changed features than `CHANGED_SHARE` of the layer (nearly every tile is dirty anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from server.tiles.grid import WORLD_HALF
from server.tiles.render import TilePolicy

CHANGED_SHARE = 0.05  # more changed features than this share of the layer: render everything again
CHANGED_MIN = 1_000  # ... but a small layer may always change this many
_SLACK = 1e-6  # of a tile: rounding between this arithmetic and the renderers' frames (morecantile's) never loses one


def changed_limit(features: int) -> int:
    """How many changed features a layer of `features` may have for its tiles to be carried over."""
    return max(CHANGED_MIN, int(features * CHANGED_SHARE))


def reach(policy: TilePolicy, z: int) -> float:
    """Tile units beyond a tile's edge from which a feature can change it at zoom `z`: the buffer, or at thinned
    zooms the buffer rounded up to whole cells of the coarsest attempt."""
    if z >= policy.full_detail_zoom:
        return float(policy.buffer)
    widest = 0.0
    for attempt in range(policy.budget_tries + 1):
        cell = policy.thin_cell_px * (policy.extent / 256) * 2**attempt
        widest = max(widest, math.ceil(policy.buffer / cell) * cell)
    return widest


class DirtyTiles:
    """The tiles that the features of `boxes` (Web Mercator left, bottom, right, top; old and new boxes of every
    feature that appeared, changed or ended) can have changed; `dirty(z, x, y)` answers for one tile."""

    def __init__(self, boxes: np.ndarray, policy: TilePolicy):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.policy = policy
        self._ranges: dict[int, tuple[np.ndarray, ...]] = {}

    def __len__(self) -> int:
        return len(self.boxes)

    def ranges(self, z: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per box, the first and last column and row of the tiles it reaches at `z`."""
        if z not in self._ranges:
            size = 2 * WORLD_HALF / 2**z
            pad = reach(self.policy, z) / self.policy.extent  # in tiles
            left, bottom, right, top = (self.boxes[:, i] for i in range(4))
            last = 2**z - 1
            column = lambda v, grow: np.clip(np.floor((v + WORLD_HALF) / size + grow), 0, last)  # noqa: E731
            row = lambda v, grow: np.clip(np.floor((WORLD_HALF - v) / size + grow), 0, last)  # noqa: E731
            self._ranges[z] = (
                column(left, -pad - _SLACK),
                column(right, pad + _SLACK),
                row(top, -pad - _SLACK),
                row(bottom, pad + _SLACK),
            )
        return self._ranges[z]  # type: ignore[return-value]

    def __call__(self, z: int, x: int, y: int) -> bool:
        if not len(self.boxes):
            return False
        x0, x1, y0, y1 = self.ranges(z)
        return bool(np.any((x0 <= x) & (x <= x1) & (y0 <= y) & (y <= y1)))


def dirty_tiles(boxes: Sequence[np.ndarray], policy: TilePolicy) -> DirtyTiles:
    """One DirtyTiles over the changed boxes of several layers."""
    parts = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]
    return DirtyTiles(np.concatenate(parts) if parts else np.empty((0, 4)), policy)
