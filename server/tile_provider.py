"""pygeoapi tile provider serving one collection's vector tiles from its published GeoPackage."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pygeoapi.models.provider.base import TileMatrixSetEnum
from pygeoapi.provider.base_mvt import BaseMVTProvider
from pygeoapi.provider.tile import ProviderTileNotFoundError, ProviderTilesetIdNotFoundError

from layers.catalog import cached_catalog
from server.tiles import TileError, VectorTiles

WEB_MERCATOR_QUAD = TileMatrixSetEnum.WEBMERCATORQUAD.value
_FIELD_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
                "date": "string", "datetime": "string"}


@lru_cache(maxsize=8)
def shared_tiles(catalog_dir: str, published_dir: str) -> VectorTiles:
    """One VectorTiles (and so one cache) per process and folder: pygeoapi builds a provider per request."""
    published = Path(published_dir)
    return VectorTiles(cached_catalog(catalog_dir), lambda layer_id: published / f"{layer_id}.gpkg")


class GeoPackageTileProvider(BaseMVTProvider):
    """`type: tile` provider; `data` is the layer's published GeoPackage, `options.catalog_dir` the catalog.

    pygeoapi hands tile providers no request, so tiles here are the public view of a public layer; an
    internal layer (reachable only through the access dispatcher's gate) is rendered with all its fields."""

    def __init__(self, provider_def: dict[str, Any]):
        super().__init__(provider_def)
        options = dict(self.options or {})
        options.setdefault("zoom", {"min": 0, "max": 16})
        options.setdefault("schemes", [WEB_MERCATOR_QUAD.tileMatrixSet])
        self.options = options
        self.layer_id = options.get("layer") or Path(self.data).stem
        self.catalog_dir = str(options.get("catalog_dir") or Path(__file__).resolve().parent.parent / "layers")
        self._service_url = ""
        self._service_metadata_url = ""

    def __repr__(self) -> str:
        return f"<GeoPackageTileProvider> {self.data}"

    @property
    def service(self) -> VectorTiles:
        return shared_tiles(self.catalog_dir, str(Path(self.data).parent))

    @property
    def staff(self) -> bool:
        return self.service.catalog[self.layer_id].access != "public"

    def get_layer(self) -> str:
        return self.layer_id

    def get_fields(self) -> dict[str, dict[str, str]]:
        spec = self.service.catalog[self.layer_id]
        return {f.name: {"type": _FIELD_TYPES[f.type]} for f in (spec.fields if self.staff else spec.public_fields)}

    def get_tiling_schemes(self) -> list:
        return [WEB_MERCATOR_QUAD]

    def get_tiles_service(self, baseurl=None, servicepath=None, dirpath=None, tile_type=None) -> dict:
        self._service_url = servicepath or ""
        return self.get_tms_links()

    def get_tiles(self, layer=None, tileset=None, z=None, y=None, x=None, format_=None) -> bytes:
        if tileset != WEB_MERCATOR_QUAD.tileMatrixSet:
            raise ProviderTilesetIdNotFoundError(f"tile matrix set {tileset!r} is not offered; use WebMercatorQuad")
        try:
            tile = self.service.tile(int(z), int(x), int(y), [self.layer_id], staff=self.staff)
        except (TileError, TypeError, ValueError) as exc:
            raise ProviderTileNotFoundError(str(exc)) from None
        return tile.body

    def _urls(self, server_url: str, dataset: str, tileset: str) -> tuple[str, str]:
        base = f"{server_url.rstrip('/')}/collections/{dataset}/tiles/{tileset}"
        return base, f"{server_url.rstrip('/')}/TileMatrixSets/{tileset}"

    def get_default_metadata(self, dataset, server_url, layer, tileset, title, description, keywords,
                             **kwargs) -> dict:
        base, scheme = self._urls(server_url, dataset, tileset)
        return self.service.ogc_tileset(
            self.layer_id, title=title, description=description, staff=self.staff,
            tiles_href=f"{base}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}?f=mvt", tiling_scheme_href=scheme,
            self_href=f"{base}?f=json")

    def get_vendor_metadata(self, dataset, server_url, layer, tileset, title, description, keywords,
                            **kwargs) -> dict:
        base, _ = self._urls(server_url, dataset, tileset)
        # TileJSON names the placeholders z/x/y; the OGC path orders them matrix/row/col = z/y/x.
        return self.service.tilejson(f"{base}/{{z}}/{{y}}/{{x}}?f=mvt", [self.layer_id], staff=self.staff,
                                     name=title, description=description)

    def get_html_metadata(self, dataset, server_url, layer, tileset, title, description, keywords,
                          **kwargs) -> dict:
        base, _ = self._urls(server_url, dataset, tileset)
        return {
            "id": dataset, "title": title, "tileset": tileset,
            "collections_path": f"{base}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}?f=mvt",
            "json_url": f"{base}?f=json", "tilejson_url": f"{base}?f=tilejson",
            "metadata": self.get_vendor_metadata(dataset, server_url, layer, tileset, title, description, keywords),
        }
