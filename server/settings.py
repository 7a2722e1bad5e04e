"""How the server listens, where its keys come from and what it links to; from GEOPORTAL_SERVER_* variables."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# QGIS pages by min(max(1000, default), maximum) when the OpenAPI document declares both.
QGIS_PAGE = 1000


class ServerSettings(BaseSettings):
    """Listening address, public URL, API keys and item limits of the OGC API server."""

    model_config = SettingsConfigDict(env_prefix="GEOPORTAL_SERVER_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)  # processes serving the same files (`--workers`)
    access_log: bool = True  # one line per request on stdout; off behind a proxy that logs, or when measuring
    # The URL clients reach the server at (behind a proxy it differs from host:port).
    public_url: str | None = None
    # Hashed keys: a YAML/JSON file of {name, level, hash} and/or "name:level:hash" entries, comma-separated.
    api_keys_file: Path | None = None
    api_keys: SecretStr | None = None
    # Raster basemap of the HTML pages and the web map; none on a closed network unless one is given.
    basemap_url: str | None = None
    basemap_attribution: str = "© OpenStreetMap contributors"
    # Derived files (public copies of GeoPackages for download); the temporary folder by default.
    cache_dir: Path | None = None
    # Encoded tiles requests asked for, kept per worker process (each worker has its own; pre-rendered tiles stay in
    # the shared store on disk): with the imports (~105 MB resident) a worker stays within 300 MB; raise it on a
    # machine with memory to spare and layers of many tiles.
    tile_cache_mb: int = Field(32, ge=0)
    # The points of large point layers held per worker, 32 bytes a point, to answer a lone bbox without the store's
    # index (server/features/point_index.py): 64 MB holds ~2.1M points; 1M points add 32 MB to each worker. 0: every
    # bbox in SQL.
    point_index_mb: int = Field(64, ge=0)
    # The rows of those bboxes' pages kept per worker (server/features/row_cache.py): the features a map asks for
    # again are not read from the store again. 24 MB holds ~23,000 rows of 17 text fields (~1,060 bytes each); a
    # 1-worker server over 1M points measured 210 against 191 MB resident with 0 after 30 s of small bboxes (which
    # it answered 4,474-5,069 against 3,539-3,760 req/s). 0: every row read.
    row_cache_mb: int = Field(24, ge=0)
    # After each publication one worker renders the combined tileset z0..this into the cache folder's shared tile
    # store (`tiles/`), which every worker reads: the first request of such a tile renders nothing.
    tile_prerender_zoom: int = Field(14, ge=0, le=16)
    # After a republication tiles keep being answered from the version before while one worker carries over the
    # tiles it cannot have changed and renders the changed ones of z0..tile_prerender_zoom; at most this long, then
    # they switch to the new version anyway (the rest rendered on demand). 0: switch at once.
    tile_switch_seconds: float = Field(30.0, ge=0)
    # Tiles rendered on demand at once per worker; the other misses wait their turn (server/tiles/turns.py). None:
    # the store's choice, 2 for GeoPackage files (rendered under the worker's GIL: more at once only take longer
    # each), up to 4 for PostGIS (rendered in the database's processes).
    tile_renders: int | None = Field(None, ge=1)
    # Request bodies (CQL2 JSON filters) above this are refused unread: a filter is a few kilobytes.
    max_body_bytes: int = Field(2**20, ge=1024)
    # A plain public item page (bbox, limit, offset) answered without pygeoapi's items handler, as it answers it
    # (server/ogcapi/plain_items.py); off: every page through pygeoapi (what tests compare it with).
    plain_pages: bool = True
    default_items: int = Field(1000, ge=1)
    max_items: int = Field(10000, ge=QGIS_PAGE)

    @model_validator(mode="after")
    def _consistent(self) -> ServerSettings:
        if self.default_items > self.max_items:
            raise ValueError(f"default_items {self.default_items} exceeds max_items {self.max_items}")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"public_url must be an http(s) URL, got {self.public_url!r}")
        return self

    @property
    def cache_path(self) -> Path:
        return self.cache_dir or Path(tempfile.gettempdir()) / "geoportal-server"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@lru_cache(maxsize=1)
def get_server_settings() -> ServerSettings:
    """Built on first use, never at import, so tests and `python -m server` can set the environment first."""
    return ServerSettings()
