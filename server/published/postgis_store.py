"""The PostGIS publication store (GEOPORTAL_STORE_URL): the registry's versions are the signature; features are read
from the tables (server.features.postgis_provider), and each served version is also read once into a local GeoPackage
for downloads and /affects, served as the features while the database cannot be reached.

The copy is made when a new version is first seen, off the event loop, while the previous one keeps being served
(docs/contracts.md, "The store seam"); N API servers on N machines share nothing but the database. It is made in a
child process: a million rows read into a frame and written by GDAL peak at over 1 GB, which glibc would keep in the
worker (950 MB resident after the copy on 1M points, where the worker needs under 300), and the worker itself never
imports GeoPandas and GDAL.

Workers of one machine share the copies (the cache folder): the first worker to see a version copies it under a
per-layer file lock and stamps it; the others wait on the lock and find it done, so a publication costs one copy
per machine, not one per worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import psycopg
import shapely
from psycopg import sql

from layers.catalog import Catalog, LayerSpec
from layers.settings import PathSettings
from layers.store import where
from server.locks import machine_lock
from server.published.extents import LayerExtent, read_extent
from server.published.files import FileIdentity, Signature, file_identity
from server.published.watch import WatchedFiles
from server.tiles.postgis_render import PostGISTiles

LOGGER = logging.getLogger(__name__)
SCHEMA = "geoportal"  # assets/stores/postgis.py writes it
POSTGIS_PROVIDER = "server.features.postgis_provider.PostGISProvider"
POLL_SECONDS = 0.2  # how often a worker reads the registry; a publication is noticed within this
VERSIONS_QUERY = f"SELECT layer_id, version FROM {SCHEMA}.publications WHERE slot = 'current' ORDER BY layer_id"


class PostGISStore:
    """Layers in PostGIS (published by assets/stores/postgis.py); raster products stay files in the published folder."""

    # Python's GIL switch interval in each of several workers (`--workers N`, server.__main__.worker_app): two workers
    # and PostgreSQL's backends share the cores, and a worker's event loop waits up to the interval for the GIL
    # before it reads or answers a socket. Small bbox, 1M, 2 workers, 8 connections, fresh servers alternating, 12
    # runs each: p95 11.9-30.1 ms (mean 18.7) vs 16.0-49.6 ms (mean 25.8) at Python's 5 ms; in the last 6, p99 26-57
    # vs 52-203 ms, req/s ~8 % lower. Inside the app the p95 was alike (8-19 ms): the gain is outside it. Not with
    # 1 worker (6 runs each: req/s 718-1,050 vs 667-1,132, p95 16-23 ms both), nor for GeoPackage (2 workers: p95
    # 7.9-12.5 vs 7.4-13.9 ms, req/s 1,471-1,726 vs 1,208-1,885).
    worker_switch_seconds = 0.001

    def __init__(self, catalog: Catalog, paths: PathSettings, url: str, cache_dir: Path, workers: int = 1):
        from server.features import pg_pool  # the requests' connections (server.features.postgis_provider)

        self.catalog = catalog
        self.paths = paths
        self.url = url
        self.copies = cache_dir / "postgis"
        self._local = threading.local()  # one connection per thread: psycopg connections are not shared
        self._sync = threading.Lock()
        self._copied: dict[str, int] = {}  # layer -> version of its local copy
        self._last: tuple[tuple[str, int], ...] = ()
        self._away = False
        self._poller_lock = threading.Lock()
        self._poller_pid: int | None = None  # the process whose poller runs (a forked worker starts its own)
        self._polled: tuple[tuple[str, int], ...] = ()
        self._rasters: WatchedFiles | None = None  # the raster products stay files in the published folder
        self._signature: tuple[tuple, Signature, Signature] | None = None  # (polled, rasters', composed)
        cores = len(os.sched_getaffinity(0))
        running = pg_pool.running_at_once(url, workers, cores)
        pg_pool.pool(url).run_at_once(running)
        # what the server's banner says of it (server.__main__): an operator sees why, and where it is decided
        self.note = f"PostGIS {where(url)}" + (
            f" on this machine: each of {workers} worker(s) on {cores} core(s) runs {running} statement(s) at once"
            " (server/features/pg_pool.py, running_at_once)"
            if running
            else ""
        )

    def _connection(self) -> psycopg.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._local.connection = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        return connection

    def versions(self) -> tuple[tuple[str, int], ...]:
        """(layer, version) of every served layer of the catalog; the last known ones while the database is away."""
        try:
            rows = self._connection().execute(VERSIONS_QUERY).fetchall()
        except psycopg.errors.UndefinedTable:
            rows = []  # nothing published yet
        except psycopg.Error as error:
            if not self._away:  # once per outage, not once per request
                LOGGER.error(
                    "PostGIS store %s unreachable, serving the last known versions: %s", where(self.url), error
                )
            self._away = True
            self._local.connection = None
            return self._last
        if self._away:
            LOGGER.warning("PostGIS store %s reachable again", where(self.url))
        self._away = False
        self._last = tuple((layer, version) for layer, version in rows if layer in self.catalog)
        from server.features.postgis_provider import note_versions  # the provider then reads no registry row

        note_versions(self.url, self._last)
        return self._last

    def signature(self) -> Signature:
        """The versions a background thread read last (every POLL_SECONDS): asked on every request, on the event
        loop, where a registry query would hold every other request up while it runs, or for good when it waits
        on a lock."""
        if self._poller_pid != os.getpid():
            self._start_poller()
        if self._rasters is None:
            self._rasters = WatchedFiles({p: self.raster_path(p) for p in _raster_products()})
        polled, rasters = self._polled, self._rasters.signature()
        kept = self._signature
        if kept is None or kept[0] is not polled or kept[1] is not rasters:
            # the same object until a poll or a raster changes it, as a GeoPackage store's: what a request's check
            # found is then known by identity (server.ogcapi.site.LiveSite.file_versions), not rebuilt per request
            kept = self._signature = (polled, rasters, (("postgis", *polled), *rasters))
        return kept[2]  # type: ignore[return-value]

    def _start_poller(self) -> None:
        with self._poller_lock:
            if self._poller_pid == os.getpid():
                return
            self._polled = self.versions()  # the first answer is current
            self._poller_pid = os.getpid()
            threading.Thread(target=self._poll, name="postgis-versions", daemon=True).start()

    def _poll(self) -> None:
        from server.features import pg_pool  # the requests' connections (server.features.postgis_provider)

        primed = False
        while True:
            try:
                if not primed and not self._away:  # at start, and again once the database is back after an outage
                    pg_pool.pool(self.url).prime()
                    primed = True
                time.sleep(POLL_SECONDS)
                polled = self.versions()
                if polled != self._polled:  # kept as the same object while equal: the signature's identity stays
                    self._polled = polled
                primed = primed and not self._away
            except Exception:  # noqa: BLE001 - the poller must outlive any surprise; requests keep the last versions
                LOGGER.exception("reading the PostGIS store's versions failed")

    def extents(self) -> dict[str, LayerExtent]:
        """Brings the local copies up to the registry's versions first (runs in the rebuild, off the event loop)."""
        extents = {}
        for layer_id in self.sync():
            try:
                extents[layer_id] = read_extent(self.layer_path(layer_id), self.catalog[layer_id])
            except (OSError, ValueError) as exc:
                LOGGER.error("%s: local copy cannot be read, the layer is not served: %s", layer_id, exc)
        return extents

    def sync(self) -> list[str]:
        """Copy every layer whose version changed; the layers that have a current local copy."""
        # the child process starts with the first copy: none while every copy is current
        with self._sync, ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as copier:
            served = []
            for layer_id, version in self.versions():
                if self._copied.get(layer_id) != version or not self.layer_path(layer_id).exists():
                    try:
                        self._copy(copier, self.catalog[layer_id], version)
                    except (psycopg.Error, OSError) as error:
                        LOGGER.error(
                            "%s: version %s cannot be read from PostGIS %s: %s",
                            layer_id,
                            version,
                            where(self.url),
                            error,
                        )
                        if not self.layer_path(layer_id).exists():
                            continue
                served.append(layer_id)
            return served

    def _copy(self, copier: ProcessPoolExecutor, spec: LayerSpec, version: int) -> None:
        """Make the local copy of `version`, unless another worker of this machine made it (then its stamp says so)."""
        from server.features.postgis_provider import note_copy  # its lone bboxes are then answered from the copy

        self.copies.mkdir(parents=True, exist_ok=True)
        path = self.layer_path(spec.id)
        with machine_lock(self.copies / f".{spec.id}.lock"):  # the other workers wait here, then find the copy made
            stamped = self._stamped(spec.id)
            if stamped is None or stamped[0] != version:
                try:
                    copied = copier.submit(copy_layer, self.url, spec, path).result()
                except BrokenProcessPool as error:  # the child died (killed, out of memory): tried at the next sync
                    raise OSError(f"the copying process died: {error}") from None
                stamped = self._stamp(spec.id, copied)
            self._copied[spec.id] = stamped[0]
            note_copy(self.url, spec.id, *stamped)

    def _stamp_path(self, layer_id: str) -> Path:
        return self.copies / f"{layer_id}.version"

    def _stamped(self, layer_id: str) -> tuple[int, FileIdentity] | None:
        """The version the local copy holds and the copy's file, as its maker wrote them after the copy; None when
        unknown, or when the file there now is not the one stamped (gone, or replaced by a copy that died unstamped).
        """
        try:
            version, *file = self._stamp_path(layer_id).read_text().split()
            stamped = (int(version), (str(self.layer_path(layer_id)), *map(int, file)))
        except (OSError, ValueError):
            return None
        return stamped if stamped[1] == file_identity(self.layer_path(layer_id)) else None

    def _stamp(self, layer_id: str, version: int) -> tuple[int, FileIdentity]:
        # after the copy's own rename, with its file's identity: a stamp never names a copy that is not there (a crash
        # in between only costs one more copy)
        file = file_identity(self.layer_path(layer_id))
        if file is None:
            raise OSError(f"{self.layer_path(layer_id)} is missing right after its copy")
        part = self._stamp_path(layer_id).with_suffix(f".version.{os.getpid()}")
        part.write_text(" ".join(map(str, (version, *file[1:]))))
        os.replace(part, self._stamp_path(layer_id))
        return version, file

    def feature_provider(self, layer_id: str) -> dict[str, Any]:
        """Features straight from the table (server.features.postgis_provider); `data` names the database without
        its password, so the URL stays out of pygeoapi's configuration."""
        from server.features.postgis_provider import register_database

        return {
            "name": POSTGIS_PROVIDER,
            "data": register_database(self.url),
            "table": layer_id,
            "fallback": str(self.layer_path(layer_id)),  # served while the database cannot be reached
        }

    def download_source(self, layer_id: str) -> Path:
        return self.layer_path(layer_id)

    def layer_path(self, layer_id: str) -> Path:
        # `<folder>/<layer>.gpkg` like the published folder: readers that take a folder (affects) work unchanged
        return self.copies / f"{layer_id}.gpkg"

    def raster_path(self, product: str) -> Path:
        return self.paths.raster_path(product)

    def tile_backend(self) -> PostGISTiles:
        """Tiles by ST_AsMVT from the served tables, keyed by the versions every request's signature reads."""
        from server.tiles.backend import GeoPackageTiles

        local = GeoPackageTiles(self.layer_path)  # the copies of the last versions, while the database is away
        return PostGISTiles(self.url, self.versions, lambda: self._last, local)


def _raster_products() -> list[str]:
    from layers.rasters import RASTER_PRODUCTS

    return list(RASTER_PRODUCTS)


def copy_layer(url: str, spec: LayerSpec, path: Path) -> int:
    """The current version of a layer from PostGIS into a GeoPackage at `path`; the version copied (run in the
    store's child process)."""
    import geopandas as gpd
    import pandas as pd

    from assets.publish import publish_geopackage  # the one writer of the GeoPackage contract

    names = [f.name for f in spec.fields]
    query = sql.SQL("SELECT fid, {} ST_AsBinary(geom) FROM {}.{}").format(
        sql.SQL("").join(sql.SQL("{}, ").format(sql.Identifier(n)) for n in names),
        sql.Identifier(SCHEMA),
        sql.Identifier(spec.id),
    )
    with psycopg.connect(url) as connection:
        # one snapshot: the registry row and the rows of the same version
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        current = connection.execute(
            f"SELECT version, by_source FROM {SCHEMA}.publications WHERE layer_id = %s AND slot = 'current'",
            (spec.id,),
        ).fetchone()
        if current is None:
            raise psycopg.DataError(f"{spec.id} is no longer published")
        version, by_source = current  # a newer one than asked for is as good
        rows = connection.execute(query).fetchall()
    geometry = shapely.from_wkb([None if row[-1] is None else bytes(row[-1]) for row in rows])
    frame = pd.DataFrame([row[:-1] for row in rows], columns=["fid", *names])
    del rows
    layer = gpd.GeoDataFrame(frame, geometry=list(geometry), crs="EPSG:4326")
    publish_geopackage(layer, spec, path, by_source, to_store=False)
    return version
