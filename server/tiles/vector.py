"""Vector tiles of the published layers, cached by file identity, and their TileJSON / OGC tileset documents.

Wiring (framework-free; server/tiles/routes.py maps these onto Starlette routes):

    tiles = VectorTiles(catalog, paths.published_path)   # once per process: it owns the tile cache and indexes
    tiles = VectorTiles(catalog, backend=store.tile_backend(), shared_dir=cache / "tiles", prerender_zoom=14)
                                 # what the server does: the store decides how tiles are rendered (GeoPackage
                                 # files: Python; PostGIS: ST_AsMVT), see backend.py; its workers share the
                                 # encoded tiles on disk (server/tiles/shared.py)

    # XYZ: one layer (layers=["road_closures"]) or the combined set (layers=None: every public layer, plus the
    # internal ones for staff), each catalog layer its own source-layer named by its id; fid = MVT feature id.
    args = dict(layers=..., staff=<key level is internal>,
                datetime=request.query_params.get("datetime"),  # instant or start/end, as the features API
                fields=<optional attribute names>, gzip=accepts_gzip(request.headers.get("accept-encoding")))
    tile = tiles.cached_tile(z, x, y, **args)   # hit (LRU, or a file of the shared store): fine on the event loop
                                                # (as_file=True: a stored tile as its open file, tile.file)
    if tile is None:   # miss: CPU-bound rendering, in the worker's turn (server/tiles/turns.py)
        tile = await tiles.turns.render(functools.partial(tiles.tile, z, x, y, **args))
    if etag_matches(request.headers.get("if-none-match"), tile.etag): 304, headers tile.headers, no body
    else: 200, body tile.body (MVT bytes, gzipped when asked), headers tile.headers = Content-Type
          application/vnd.mapbox-vector-tile, [Content-Encoding gzip], ETag, Cache-Control no-cache, Vary.
    Errors are server.errors classes (their status is decided at the edge): TileRequestError 400 (datetime,
    fields), TileNotFoundError 404 (unknown layer, z/x/y outside the matrix), LayerAccessError 404 (internal
    layer without a staff key, as the features API).

    tiles.tilejson(tiles_url="{base}/tiles/{z}/{x}/{y}.pbf", layers=None, staff=...)  -> dict (TileJSON 3.0.0)
    tiles.ogc_tileset(layer_id or None, title=..., tiling_scheme_href="{base}/TileMatrixSets/WebMercatorQuad",
                      tiles_href=".../tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}?f=mvt")  -> dict
    ogc_tilesets(title=..., tileset_href=".../tiles/WebMercatorQuad", tiling_scheme_href=...)  -> dict
    tiles.refresh()              # from a background thread every few seconds: after a publication one worker
                                 # carries the tiles it cannot have changed over from the version before
                                 # (server/tiles/carry.py) and renders the changed ones of z0..prerender_zoom,
                                 # while every worker keeps answering tiles of the version before; then the
                                 # tiles switch to the new version (at most `switch_seconds` later) and it
                                 # renders the rest of z0..prerender_zoom into the shared store (see `refresh`)

Routes: server/tiles/routes.py. Styles: server/styles/.
"""

from __future__ import annotations

import functools
import gzip as gzip_module
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

from layers.catalog import Catalog, LayerSpec
from layers.timewindow import Interval, TimeQueryError, parse_datetime_parameter, zone
from server.access import level_of_staff, visible_layers
from server.errors import BadRequest, GeoportalError, NotFound, status_of
from server.tiles import metadata as tile_metadata
from server.tiles.backend import GeoPackageTiles, TileBackend
from server.tiles.cache import TileCache
from server.tiles.carry import DirtyTiles, dirty_tiles
from server.tiles.grid import MAX_ZOOM
from server.tiles.metadata import Bbox, ogc_tilesets
from server.tiles.render import TMS, LayerSource, TilePolicy, visible_fields
from server.tiles.shared import SharedTiles, StoredTile, digest, key_digest
from server.tiles.turns import RenderTurns

__all__ = [
    "VectorTiles",
    "Tile",
    "TileError",
    "TileRequestError",
    "TileNotFoundError",
    "LayerAccessError",
    "accepts_gzip",
    "etag_matches",
    "parse_datetime",
    "ogc_tilesets",
]

MVT_MEDIA_TYPE = tile_metadata.MVT_MEDIA_TYPE
# Part of the shared store's namespace: raise it when the renderers draw differently, so no tile of the old
# drawing is served from a store that outlived an upgrade.
RENDERING = 1
LOGGER = logging.getLogger(__name__)
CARRIED = "carried"  # the mark of a folder whose tiles the versions before have handed on (server/tiles/carry.py)
_UNSEEN = object()  # a layer this process has not answered a tile of yet
PREPARE_THREADS = min(4, os.cpu_count() or 1)  # changed tiles rendered at once before a switch (`_prepare_switch`)


class _VersionGone(Exception):
    """The version of these layers a tile was asked at can no longer be read (the store keeps one before the served
    one): the tile is answered at the served version instead."""

    def __init__(self, layers: list[str]):
        super().__init__(layers)
        self.layers = layers


class TileError(GeoportalError):
    """A tile request that cannot be answered; `status` is the HTTP status the edge answers with."""

    @property
    def status(self) -> int:
        return status_of(self)


class TileRequestError(TileError, BadRequest):
    """A malformed parameter: datetime, field names."""


class TileNotFoundError(TileError, NotFound):
    """An unknown layer or a tile outside WebMercatorQuad."""


class LayerAccessError(TileNotFoundError):
    """An internal layer asked for without a staff key (404, like a collection that does not exist)."""


@dataclass(frozen=True)
class Tile:
    body: bytes
    etag: str
    headers: dict[str, str] = field(default_factory=dict)
    # the headers but Vary, as ASGI sends them (lower-case bytes): made once, not per request (server/early_answers.py)
    raw_headers: tuple[tuple[bytes, bytes], ...] = field(default=(), compare=False)
    # asked `as_file`: the shared store's file of the tile, open, instead of its bytes (`body` empty); the asker sends
    # it (server/zero_copy.py) and closes it. Such a tile is never kept in the LRU.
    file: StoredTile | None = field(default=None, compare=False)


def _as_json(value: object) -> object:
    """A version as layers.json holds it (tuples come back lists)."""
    return json.loads(json.dumps(value))


def accepts_gzip(accept_encoding: str | None) -> bool:
    codings = [part.split(";")[0].strip().lower() for part in (accept_encoding or "").split(",")]
    return "gzip" in codings or "*" in codings


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")]
    return etag in tags or "*" in tags


def parse_datetime(value: str | None, local: tzinfo = UTC) -> Interval | None:
    """OGC `datetime` read by the features API's own reader (layers/timewindow.py): an instant,
    `start/end` with `..` for an open end; dates, months, years and zone-less times in the city's zone."""
    if value is None or not value.strip():
        return None
    try:
        return parse_datetime_parameter(value, local)
    except TimeQueryError as exc:
        raise TileRequestError(f"datetime: {exc}") from None


class VectorTiles:
    """Tiles of the catalog's layers, rendered by the store's backend, through a byte-bounded LRU.

    Every request asks the backend for the served version of each layer it reads (GeoPackage: one stat per
    layer; PostGIS: the versions the request's signature check just read) and keys the cache by them, so a
    publication is seen by the very next request and old entries are simply never hit again."""

    def __init__(
        self,
        catalog: Catalog,
        published_path: Callable[[str], Path] | None = None,
        *,
        backend: TileBackend | None = None,
        policy: TilePolicy | None = None,
        cache_bytes: int = 256 * 2**20,
        gzip_level: int = 6,
        maxzoom: int = 16,
        shared_dir: Path | None = None,
        prerender_zoom: int = 11,
        switch_seconds: float = 0.0,
        renders_at_once: int | None = None,
    ):
        if backend is None:
            if published_path is None:
                raise TypeError("VectorTiles needs the published files' paths or a tile backend")
            backend = GeoPackageTiles(published_path)
        self.catalog = catalog
        self.backend = backend
        self.policy = policy or TilePolicy()
        self.cache = TileCache(cache_bytes)
        self._layouts: dict[tuple, list] = {}  # (layers, staff, fields) -> what `_plan` derives from the catalog
        self._warmed: dict[bool, tuple] = {}  # layer identities of the last `refresh`, per staff flag
        self.local = zone(catalog.city.timezone)  # the zone a `datetime=2026-11-24` day is read in
        self.gzip_level = gzip_level
        self.maxzoom = maxzoom  # advertised in TileJSON/OGC metadata; deeper tiles still render (overzoom)
        self.shared_dir = shared_dir  # encoded tiles on disk, shared by the workers (server/tiles/shared.py)
        if shared_dir is not None and hasattr(backend, "share"):
            backend.share(shared_dir)  # what else it builds once per publication (GeoPackage: the box indexes)
        self._shared: SharedTiles | None = None  # opened once the store's namespace is known
        self.prerender_zoom = prerender_zoom  # `refresh` renders the combined tileset z0..this once per publication
        self._carried: set[tuple] = set()  # folders (their layers) this process knows to be carried over
        self._carry_lock = threading.Lock()
        self._dirty: dict[tuple, DirtyTiles] = {}  # what this process found changed, per folder: rendered first
        self._changes: dict[tuple, Any] = {}  # (layer, old, new) -> the backend's changed boxes (None: unknown)
        # After a publication, tiles keep being answered at the version before while one worker prepares the new
        # one's (`refresh`), for at most this long after a process first sees it; 0: at the new version at once.
        self.switch_seconds = switch_seconds
        self._served: dict[str, Hashable] = {}  # layer -> the version its tiles are answered at in this process
        self._seen: dict[tuple, float] = {}  # (layer, version) -> when this process first saw it published
        self.noticed = threading.Event()  # set when a request sees a new version: the caller of `refresh` may wake
        # renderings on demand at a time in this process (the others wait their turn), and the pre-rendering gives
        # way to them; how many by default is the backend's to say (GeoPackage: 2, its rendering holds the GIL)
        self.turns = RenderTurns(renders_at_once or getattr(backend, "renders_at_once", 1))

    def layer_specs(self, layers: Sequence[str] | None, staff: bool = False) -> list[LayerSpec]:
        """The requested layers in catalog order; None is the combined set (public, and internal for staff)."""
        if layers is None:
            return visible_layers(self.catalog, level_of_staff(staff))
        specs = []
        for layer_id in dict.fromkeys(layers):  # each layer once: an MVT cannot hold two layers of one name
            spec = self.catalog.get(layer_id)
            if spec is None:
                raise TileNotFoundError(f"no layer {layer_id!r}")
            if spec not in visible_layers(self.catalog, level_of_staff(staff)):
                raise LayerAccessError(f"no layer {layer_id!r}")
            specs.append(spec)
        return specs

    def tile(
        self,
        z: int,
        x: int,
        y: int,
        layers: Sequence[str] | None = None,
        *,
        staff: bool = False,
        datetime: str | None = None,
        fields: Sequence[str] | None = None,
        gzip: bool = False,
    ) -> Tile:
        """The tile, from the cache or rendered now (CPU-bound: call it from a worker thread)."""
        planned = functools.partial(self._plan, z, x, y, layers, staff, datetime, fields)
        return self._rendered(planned, gzip, remember=True)

    def _rendered(self, plan: Callable[[], tuple[tuple, list]], gzip: bool, remember: bool) -> Tile:
        """`tile`, kept in the LRU or not (`_answer`); planned again when the version before is gone meanwhile."""
        self.backend.poll()
        tile = None
        for _ in range(len(self.catalog) + 1):
            try:
                tile = self._answer(plan(), gzip, render=True, remember=remember)
                break
            except _VersionGone as gone:  # the version before is gone (a second publication): switch this process
                for layer_id in gone.layers:
                    self._served[layer_id] = self.backend.identity(layer_id)
        assert tile is not None
        return tile

    def cached_tile(self, *tile: Any, **options: Any) -> Tile | None:
        """The tile if the cache holds it, else None (`looked_up`'s arguments); cheap enough (a stat per layer) for
        the event loop, so a server answers hits without a thread hop and sends only misses to `tile` in its
        threadpool."""
        return self.looked_up(*tile, **options)[0]

    def looked_up(
        self,
        z: int,
        x: int,
        y: int,
        layers: Sequence[str] | None = None,
        *,
        staff: bool = False,
        datetime: str | None = None,
        fields: Sequence[str] | None = None,
        gzip: bool = False,
        as_file: bool = False,
    ) -> tuple[Tile | None, Hashable]:
        """`cached_tile`, and the identity of the tile asked (its cache key: each layer's version and attributes,
        z/x/y, time window, encoding), under which identical misses share one rendering (server.flights).
        `as_file`: a tile of the shared store not in the LRU comes as its open file (Tile.file), not read."""
        plan = self._plan(z, x, y, layers, staff, datetime, fields)
        return self._answer(plan, gzip, render=False, as_file=as_file), (plan[0], gzip)

    def _plan(
        self,
        z: int,
        x: int,
        y: int,
        layers: Sequence[str] | None,
        staff: bool,
        datetime: str | None,
        fields: Sequence[str] | None,
        at: dict[str, Hashable] | None = None,
    ) -> tuple[tuple, list]:
        """The cache key (the version each layer's tiles are answered at, or `at` names, and the carried attributes,
        z/x/y, time window) and the layout (per layer: spec, fields, their names) the sources are made of when the
        tile must be rendered."""
        if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
            raise TileNotFoundError(f"tile {z}/{x}/{y} is outside WebMercatorQuad")
        layers = None if layers is None else tuple(layers)
        fields = None if fields is None else tuple(fields)
        layout = self._layouts.get((layers, staff, fields))
        if layout is None:
            specs = self.layer_specs(layers, staff)
            if fields is not None:
                unknown = set(fields) - {f.name for spec in specs for f in visible_fields(spec, staff)}
                if unknown:
                    raise TileRequestError(f"fields: no such attribute(s) {sorted(unknown)}")
            layout = []
            for spec in specs:
                carried = visible_fields(spec, staff, fields)
                layout.append((spec, carried, tuple(f.name for f in carried)))
            if len(self._layouts) > 1000:  # field lists come from requests: keep the memo bounded
                self._layouts.clear()
            self._layouts[(layers, staff, fields)] = layout
        when = parse_datetime(datetime, self.local) if datetime else None
        identities = []
        for spec, _, names in layout:
            version = self._version(spec.id) if at is None else at.get(spec.id)
            if version is not None:  # else not published yet: the layer is simply absent from the tile
                identities.append((spec.id, version, names))
        return (tuple(identities), z, x, y, when), layout

    def _version(self, layer_id: str) -> Hashable | None:
        """The version of the layer whose tiles are answered now (cheap: on the event loop). The served one; but
        once this process answered tiles of a version, a newer one only when a worker has prepared its tiles
        (`refresh`) or `switch_seconds` after this process first saw it, the one before until then."""
        current = self.backend.identity(layer_id)
        before = self._served.get(layer_id, _UNSEEN)
        if before == current:
            return current
        if before is _UNSEEN or before is None or current is None or self._switched(layer_id, current):
            self._served[layer_id] = current
            return current
        return before  # type: ignore[return-value]

    def _switched(self, layer_id: str, version: Hashable) -> bool:
        """Whether tiles of the layer are answered at its newly served `version` now: a worker has marked it
        prepared in the shared store, or this process saw it `switch_seconds` ago (the preparation failed, or a
        worker died at it)."""
        shared = self.shared(ask=False)
        if self.switch_seconds <= 0 or shared is None:
            return True
        now = time.monotonic()
        seen = self._seen.get((layer_id, version))
        if seen is None:
            if len(self._seen) > 64:  # versions come and go with publications: keep the memo bounded
                self._seen.clear()
            seen = self._seen[(layer_id, version)] = now
            self.noticed.set()
        return now - seen >= self.switch_seconds or shared.switched(layer_id, _as_json(version))

    def _pending(self) -> dict[str, Hashable]:
        """The layers whose tiles are still answered at a version before the served one: layer -> the served one."""
        pending = {}
        for spec in self.catalog.values():
            answered = self._version(spec.id)
            current = self.backend.identity(spec.id)
            if answered != current:
                pending[spec.id] = current
        return pending

    def _sources(self, key: tuple, layout: list) -> list[LayerSource]:
        """What the backend renders the tile of `key` from: each layer at the version the key names."""
        versions = {layer_id: version for layer_id, version, _ in key[0]}
        sources = []
        for spec, carried, _ in layout:
            if spec.id in versions:
                source = self.backend.source(spec, carried, versions[spec.id])
                if source is None:
                    raise _VersionGone([spec.id])
                sources.append(source)
        return sources

    def shared(self, ask: bool = True) -> SharedTiles | None:
        """The tile store shared with the other workers, None without a folder or while the backend cannot say
        what its versions are of (PostGIS not reached yet; `ask` False: do not try now, as on the event loop)."""
        if self._shared is None and self.shared_dir is not None:
            namespace = self.backend.namespace(ask)
            if namespace is None:
                return None
            layers = [spec.model_dump_json() for spec in self.catalog.values()]
            self._shared = SharedTiles(self.shared_dir / digest((RENDERING, self.policy, namespace, layers)))
        return self._shared

    def _answer(
        self, plan: tuple[tuple, list], gzip: bool, render: bool, remember: bool = True, as_file: bool = False
    ) -> Tile | None:
        """From the worker's LRU, else the shared store, else (when `render`) rendered now and put in both. Without
        `render` nothing CPU-bound is done (no rendering, no compression): None instead. Without `remember` a tile
        read or rendered is put in the shared store but not in the LRU: pre-rendering hundreds of tiles for the
        store would otherwise fill the LRU of the worker that happens to do it (32 MB on 1M points, kept resident
        for tiles nobody asked this worker for; requests fill it with the tiles they ask). `as_file`: a tile of the
        shared store comes as its open file, sent from the page cache (server/zero_copy.py), and is not put in the
        LRU: the page cache holds it for every worker, where the LRU would hold a copy per worker."""
        key, layout = plan
        tile = self.cache.get((key, gzip))
        if tile is not None:
            return tile
        shared = self.shared(ask=render)  # the database is asked in the threadpool, never on the event loop
        on_disk = shared is not None and self._kept_on_disk(key)
        if as_file and on_disk:
            stored = shared.opened(key, gzip)  # type: ignore[union-attr]
            if stored is not None:
                return self._tile(shared.folder.name, key, b"", gzip, file=stored)  # type: ignore[union-attr]
        body = shared.get(key, gzip) if on_disk else None
        if body is None and on_disk and render and self._carry(shared, key[0]):  # type: ignore[union-attr]
            body = shared.get(key, gzip)  # type: ignore[union-attr]
        if body is None:
            raw = self.cache.get((key, False))
            raw = raw.body if raw is not None else shared.get(key, False) if on_disk and gzip else None
            if raw is None:
                if not render:
                    return None
                _, z, x, y, when = key
                sources = self._sources(key, layout)
                raw, cacheable = self.backend.render(sources, z, x, y, when=when, policy=self.policy)
                if not cacheable:  # rendered from a newer version than the key names: right now, not for the key
                    gone = [s.spec.id for s in sources if s.previous]
                    if gone:  # the version before, asked for while the new one's tiles are prepared: not there now
                        raise _VersionGone(gone)
                    return self._uncached(raw, gzip)
                if on_disk and self._worth_a_file(key, raw):
                    shared.put(key, False, raw)
            body = raw
            if gzip and raw:
                if not render:
                    return None
                body = gzip_module.compress(raw, compresslevel=self.gzip_level, mtime=0)
            if on_disk and gzip and body:
                shared.put(key, True, body)
        tile = self._tile(shared.folder.name if shared else None, key, body, gzip and bool(body))
        if remember or not on_disk:  # without the shared store the LRU is where a pre-rendered tile is kept
            self.cache.put((key, gzip), tile, len(body))
        return tile

    def _carry(self, shared: SharedTiles, layers: tuple) -> bool:
        """Link into the folder of `layers` every tile of the versions before that their publication cannot have
        changed (server/tiles/carry.py), once per folder: whichever process asks first does it, the others wait for
        it instead of rendering meanwhile. True unless this process knew it carried already (tiles may be there now)."""
        if layers in self._carried:
            return False
        with self._carry_lock:  # a thread that waited here looks again too: the tiles may be there now
            if layers in self._carried:
                return True
            if not shared.done(layers, CARRIED):
                with shared.claim(layers, "carry", wait=True) as mine:
                    if mine and not shared.done(layers, CARRIED):
                        dirty = self._link_previous(shared, layers)
                        if dirty is not None:
                            if len(self._dirty) > 16:
                                self._dirty.clear()
                            self._dirty[layers] = dirty
                        shared.mark_done(layers, CARRIED)
            if len(self._carried) > 1000:  # folders come and go with publications: keep the memo bounded
                self._carried.clear()
            self._carried.add(layers)
        return True

    def _link_previous(self, shared: SharedTiles, layers: tuple) -> DirtyTiles | None:
        """From the newest folder of the same layers and attributes at other versions whose changes the backend can
        tell, link the tiles no change reaches; the changes found, or None (nothing carried: all rendered anew)."""
        wanted = [[layer_id, list(names)] for layer_id, _, names in layers]
        now = [_as_json(version) for _, version, _ in layers]
        candidates = []
        for folder, entries in shared.folders():
            if any(len(entry) != 3 for entry in entries) or [[e[0], e[2]] for e in entries] != wanted:
                continue
            if [entry[1] for entry in entries] != now:
                try:
                    candidates.append(((folder / "layers.json").stat().st_mtime_ns, folder, entries))
                except OSError:
                    continue  # pruned meanwhile
        started = time.perf_counter()
        for _, folder, entries in sorted(candidates, key=lambda c: c[0], reverse=True):
            boxes = []
            for (layer_id, old, _), (_, new, _), new_json in zip(entries, layers, now, strict=True):
                if old != new_json:
                    found = self._changed_boxes(layer_id, old, new)
                    if found is None:
                        break
                    boxes.append(found)
            else:
                dirty = dirty_tiles(boxes, self.policy)
                linked = shared.link_from(folder, layers, lambda z, x, y, dirty=dirty: not dirty(z, x, y))
                LOGGER.info(
                    "tiles: %d tile files carried over to %s (%d changed boxes) in %.2f s",
                    linked, folder.parent.name + "/" + digest(layers), len(dirty), time.perf_counter() - started,
                )  # fmt: skip
                return dirty
        if candidates:
            LOGGER.info("tiles: nothing carried over to %s: the changes are unknown", digest(layers))
        return None

    def _changed_boxes(self, layer_id: str, old: object, new: object) -> Any:
        """The backend's answer, once per process and pair of versions (a publication changes several folders)."""
        key = (layer_id, json.dumps(old), repr(new))
        if key not in self._changes:
            spec = self.catalog.get(layer_id)
            if len(self._changes) > 64:
                self._changes.clear()
            self._changes[key] = None if spec is None else self.backend.changed_boxes(spec, old, new)
        return self._changes[key]

    def _carry_all(self, shared: SharedTiles) -> None:
        """Before the folders of replaced versions are removed: carry each over into its successor's folder (the
        same layers and attributes at the versions served now), whether or not a request asked for it yet."""
        served = {spec.id: self.backend.identity(spec.id) for spec in self.catalog.values()}
        for _, entries in list(shared.folders()):
            if any(len(entry) != 3 or served.get(entry[0]) is None for entry in entries):
                continue
            layers = tuple((entry[0], served[entry[0]], tuple(entry[2])) for entry in entries)
            if [entry[1] for entry in entries] != [_as_json(version) for _, version, _ in layers]:
                self._carry(shared, layers)

    def _kept_on_disk(self, key: tuple) -> bool:
        """The tilesets' tiles up to the advertised maxzoom, as many as the data make. Tiles of a `datetime=` window
        or overzoomed are as many as requests can make up: they stay in each worker's LRU only."""
        _, z, _, _, when = key
        return when is None and z <= self.maxzoom

    def _worth_a_file(self, key: tuple, raw: bytes) -> bool:
        """A tile with features, or an empty one over the data's box: a map asks those again and again, and rendered
        each time (from the LRU's churn) each took a rendering turn behind the others (server/tiles/turns.py). Warm
        tiles with the default 32 MB LRU over 1M points, 24 of the 932 tiles empty: p95 120-172 ms against 42-84 ms
        with every rendering at once. An empty tile elsewhere (anywhere in the world) is one requests can make up
        without bound: the worker's LRU only."""
        if raw:
            return True
        _, z, x, y, _ = key
        west, south, east, north = self.bounds(staff=True)  # every layer's
        tile = TMS.bounds(x, y, z)
        return tile.left <= east and tile.right >= west and tile.bottom <= north and tile.top >= south

    @staticmethod
    def _tile(namespace: str | None, key: tuple, body: bytes, encoded: bool, file: StoredTile | None = None) -> Tile:
        """The answer for a cache key in the store's namespace (two databases may number versions alike): the ETag
        names both and the encoding, so every worker gives the same."""
        layers, z, x, y, when = key
        named = f"{namespace}/{key_digest(layers)}/{z}-{x}-{y}-{key_digest(when)}"
        etag = hashlib.blake2b(named.encode(), digest_size=16).hexdigest()
        headers = {"Content-Type": MVT_MEDIA_TYPE, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if encoded:
            headers["Content-Encoding"] = "gzip"
            etag += "-gzip"  # a different representation needs a different strong validator
        headers["ETag"] = f'"{etag}"'
        raw = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k != "Vary")
        return Tile(body=body, etag=f'"{etag}"', headers=headers, raw_headers=raw, file=file)

    def _uncached(self, raw: bytes, gzip: bool) -> Tile:
        """A tile answered without a validator that could be confused with a cached one's."""
        headers = {"Content-Type": MVT_MEDIA_TYPE, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        body = raw
        if gzip and raw:
            body = gzip_module.compress(raw, compresslevel=self.gzip_level, mtime=0)
            headers["Content-Encoding"] = "gzip"
        etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        headers["ETag"] = etag
        return Tile(body=body, etag=etag, headers=headers)

    @property
    def indexes(self):
        """The GeoPackage backend's box indexes (what low-zoom thinning reads)."""
        return getattr(self.backend, "indexes", None)

    def bounds(self, layers: Sequence[str] | None = None, staff: bool = False) -> Bbox:
        """Union of the published layers' boxes; the city extent while nothing is published."""
        boxes = [b for spec in self.layer_specs(layers, staff) if (b := self.backend.bounds(spec.id))]
        if not boxes:
            return tuple(self.catalog.city.extent)  # type: ignore[return-value]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def tilejson(
        self,
        tiles_url: str,
        layers: Sequence[str] | None = None,
        *,
        staff: bool = False,
        fields: Sequence[str] | None = None,
        language: str = "ru",
        **extra: Any,
    ) -> dict[str, Any]:
        """TileJSON 3.0.0; `tiles_url` is the XYZ template the server routes (with `{z}`, `{x}`, `{y}`)."""
        specs = self.layer_specs(layers, staff)
        name = extra.pop("name", None) or (
            getattr(specs[0].title, language) if len(specs) == 1 else getattr(self.catalog.city.name, language)
        )
        return tile_metadata.tilejson(
            specs,
            tiles_url,
            bounds=self.bounds(layers, staff),
            name=name,
            maxzoom=self.maxzoom,
            staff=staff,
            fields=fields,
            language=language,
            **extra,
        )

    def ogc_tileset(
        self,
        layer_id: str | None,
        *,
        title: str,
        tiles_href: str,
        tiling_scheme_href: str,
        self_href: str | None = None,
        description: str | None = None,
        staff: bool = False,
        language: str = "en",
    ) -> dict[str, Any]:
        layers = None if layer_id is None else [layer_id]
        return tile_metadata.ogc_tileset(
            self.layer_specs(layers, staff),
            title=title,
            tiles_href=tiles_href,
            tiling_scheme_href=tiling_scheme_href,
            self_href=self_href,
            description=description,
            bounds=self.bounds(layers, staff),
            maxzoom=self.maxzoom,
            staff=staff,
            language=language,
        )

    def refresh(self, max_zoom: int | None = None, staff: bool = False) -> bool:
        """Pre-render the combined tileset z0..`max_zoom` (default `prerender_zoom`) once a publication changed a
        layer since the last call; True if this call rendered it. Call it from a background thread every few
        seconds; requests meanwhile are answered on demand, never from stale files.

        With a shared store, one worker (whichever takes the lock) renders each publication's tiles into it once,
        gzipped and not, and removes the tiles of replaced versions; the other workers, and the server restarted
        later, read them from there. Without one, each worker renders into its own LRU. Measured on 1M points +
        200k lines over the city (935 tiles z0-z14): see benchmarks/README.md, "Tiles".

        Before that, after a republication, tiles keep being answered at the version before while one worker
        prepares the new version's (`_prepare_switch`); this renders nothing until they are switched."""
        max_zoom = self.prerender_zoom if max_zoom is None else max_zoom
        self.backend.poll()
        if hasattr(self.backend, "retain"):  # the versions served now: what the next publication is compared with
            for spec in self.catalog.values():
                self.backend.retain(spec.id)
        shared = self.shared()
        if shared is not None and self._prepare_switch(shared, max_zoom):
            return False  # another worker prepares the new version's tiles: look again next time
        identities = tuple(self._version(spec.id) for spec in self.layer_specs(None, staff))
        if identities == self._warmed.get(staff):
            return False
        if shared is None:
            self.warm(max_zoom, staff=staff)
            self._warmed[staff] = identities
            return True
        layers = self._plan(0, 0, 0, None, staff, None, None)[0][0]  # the combined set's part of the cache keys
        task, rendered = f"prerendered-z{max_zoom}", False
        with shared.claim(layers, task) as mine:
            finished = shared.done(layers, task)
            if mine and not finished:
                self._carry_all(shared)
                # the versions served, and those tiles are answered at (the same, but for a publication just now)
                kept = {s.id: (self.backend.identity(s.id), self._version(s.id)) for s in self.catalog.values()}
                shared.prune({layer_id: [_as_json(v) for v in versions] for layer_id, versions in kept.items()})
                if hasattr(self.backend, "forget"):
                    self.backend.forget({version for versions in kept.values() for version in versions})
                self.warm(max_zoom, staff=staff, gzip=True, first=self._dirty.get(layers))
                shared.mark_done(layers, task)
                finished = rendered = True
        if finished:  # else another worker is at it: look again next time (it may die half-way)
            self._warmed[staff] = identities
        return rendered

    def _prepare_switch(self, shared: SharedTiles, max_zoom: int) -> bool:
        """After a publication (tiles of some layer still answered at the version before): one worker (whichever
        takes the namespace's lock) carries every folder of the versions answered over to the served versions and
        renders the combined tileset's tiles of z0..`max_zoom` that the publication can have changed, then marks
        the layers switched for every worker. Stops rendering `switch_seconds` after it first saw the publication,
        and switches anyway when it fails; without a previous version to carry from (a first publication, over
        `CHANGED_SHARE` changed, another schema) it switches at once. True while tiles of some layer are still
        answered at a version before the served one (another worker is preparing them)."""
        if not self._pending():
            return False
        with shared.claim(None, "switch") as mine:
            pending = self._pending()  # the worker that held the lock may have switched them meanwhile
            if not mine or not pending:
                return bool(pending)
            target = {spec.id: self.backend.identity(spec.id) for spec in self.catalog.values()}
            started = time.monotonic()
            seen = min(self._seen.get((layer_id, version), started) for layer_id, version in pending.items())
            deadline, rendered, dirty = seen + self.switch_seconds, 0, None
            try:
                self._carry_all(shared)
                dirty = self._dirty.get(self._plan(0, 0, 0, None, False, None, None, at=target)[0][0])
                if dirty is not None and len(dirty):
                    zooms = list(range(max_zoom, -1, -1))  # street level first: cheap and the most asked for; an
                    # overview tile thins the whole layer (seconds at 1M in PostGIS)
                    changed = [t for z in zooms for t in TMS.tiles(*self.bounds(), zooms=[z]) if dirty(t.z, t.x, t.y)]

                    def render(tile: Any) -> bool:
                        if time.monotonic() >= deadline:
                            return False
                        plan = self._plan(tile.z, tile.x, tile.y, None, False, None, None, at=target)
                        self._answer(plan, gzip=True, render=True, remember=False)
                        return True

                    # a few at a time: PostGIS renders in the database's processes, GEOS and SQLite release the GIL
                    with ThreadPoolExecutor(PREPARE_THREADS) as pool:
                        rendered = sum(pool.map(render, changed))
                    if rendered < len(changed):
                        LOGGER.warning("tiles: switched after %.0f s, %d changed tiles left to render on demand",
                                       self.switch_seconds, len(changed) - rendered)  # fmt: skip
            finally:  # failed or not: the new version's tiles are answered from now on, by every worker
                for layer_id, version in pending.items():
                    shared.mark_switched(layer_id, _as_json(version))
                    self._served[layer_id] = version
                LOGGER.info(
                    "tiles: %s switched to the new version %.2f s after it was seen (%s, %d changed tiles rendered)",
                    ", ".join(pending), time.monotonic() - seen,
                    "carried over" if dirty is not None else "nothing carried over", rendered,
                )  # fmt: skip
        return False

    def warm(
        self,
        max_zoom: int,
        layers: Sequence[str] | None = None,
        *,
        staff: bool = False,
        gzip: bool = False,
        first: Callable[[int, int, int], bool] | None = None,
    ) -> int:
        """Render every tile over the data up to `max_zoom` (e.g. after a publication) into the shared store when
        there is one, else into the worker's LRU; the tiles `first` accepts (those a publication changed) before the
        others (carried over: read, not rendered)."""
        count = 0
        tiles = list(TMS.tiles(*self.bounds(layers, staff), zooms=list(range(0, max_zoom + 1))))
        if first is not None:
            tiles.sort(key=lambda t: not first(t.z, t.x, t.y))  # stable: zoom by zoom within each part
        for tile in tiles:
            planned = functools.partial(self._plan, tile.z, tile.x, tile.y, layers, staff, None, None)
            if self._answer(planned(), gzip, render=False, remember=False) is None:  # not there yet: to render
                # requests waiting for a tile first (they render what they ask into the store too); a tile that is
                # only read (carried over, rendered by a request) never waits for them
                self.turns.give_way()
                self._rendered(planned, gzip, remember=False)
            count += 1
        return count
