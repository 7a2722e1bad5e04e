"""The pygeoapi configuration rendered from the layer catalog and the published files, one per access level."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pygeoapi
import pyproj

from layers.catalog import Catalog, LayerSpec
from layers.domains import DOMAINS
from layers.rasters import RASTER_PRODUCTS
from server.access import LEVELS, Level, exposed_fields, visible_layers
from server.affects.process import process_resource
from server.affects.register import REGISTER_LAYER
from server.features.crs import CRS84, EPSG_URI, city_crs_uri
from server.published.extents import LayerExtent
from server.published.store import PublishedStore
from server.settings import ServerSettings

LOGGER = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PYGEOAPI_STATIC = Path(pygeoapi.__file__).parent / "static"
GPKG_MEDIA_TYPE = "application/geopackage+sqlite3"
TRS = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
LANGUAGES = ["ru", "en"]  # the first is the default of HTML pages and untranslated requests
DOMAIN_KEYWORDS = {domain: declared["keyword"] for domain, declared in DOMAINS.items()}


def offered_crs(catalog: Catalog) -> list[str]:
    """Storage CRS first (lon/lat), then EPSG:4326 (lat/lon), Web Mercator and the city's local systems
    (resolvable once `server.features.crs.install_city_crs` has registered them with PROJ)."""
    return [CRS84, EPSG_URI.format(code=4326), EPSG_URI.format(code=3857), *map(city_crs_uri, catalog.city.crs)]


def download_url(settings: ServerSettings, layer_id: str) -> str:
    return f"{settings.base_url}/downloads/{layer_id}.gpkg"


def tile_and_style_links(base_url: str, spec: LayerSpec) -> list[dict[str, Any]]:
    """Links a client follows from a collection to its vector tiles and its styles (issue 4's routes)."""
    return [
        {
            "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
            "type": "application/json",
            "title": "Vector tiles (OGC API Tiles)",
            "href": f"{base_url}/collections/{spec.id}/tiles",
        },
        {
            "rel": "describedby",
            "type": "application/json",
            "title": "TileJSON (XYZ template for QGIS, MapLibre)",
            "href": f"{base_url}/tiles/{spec.id}/tilejson.json",
        },
        {
            "rel": "stylesheet",
            "type": "application/vnd.mapbox.style+json",
            "title": "MapLibre style",
            "href": f"{base_url}/styles/geoportal.json",
        },
        {
            "rel": "stylesheet",
            "type": "application/vnd.qgis.qml",
            "title": "QGIS style (QML)",
            "href": f"{base_url}/styles/{spec.id}.qml",
        },
    ]


def feature_provider(spec: LayerSpec, catalog: Catalog, store: PublishedStore, level: Level) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "type": "feature",
        **store.feature_provider(spec.id),  # name, data, table: where the layer is published
        # the feature id is the stable integer fid (GDAL and QGIS use integer ids as feature ids);
        # the layer's own id (permit_id…) stays a property
        "id_field": "fid",
        "timezone": catalog.city.timezone,  # `datetime=2026-11-24` means that local day
        "properties": exposed_fields(spec, level),
        "storage_crs": CRS84,
        "crs": offered_crs(catalog),
    }
    if spec.temporal:
        provider["time_field"] = spec.temporal.start
        provider["time_end_field"] = spec.temporal.end
    if spec.style.label and spec.style.label in provider["properties"]:
        provider["title_field"] = spec.style.label  # what HTML pages show instead of the bare id
    return provider


def collection(
    spec: LayerSpec,
    extent: LayerExtent,
    download: Path,
    catalog: Catalog,
    store: PublishedStore,
    settings: ServerSettings,
    level: Level,
) -> dict[str, Any]:
    """One collection; issue 4's tile provider is appended to `providers` beside the feature one."""
    domain = DOMAIN_KEYWORDS[spec.domain]
    resource: dict[str, Any] = {
        "type": "collection",
        "title": {"ru": spec.title.ru, "en": spec.title.en},
        "description": {"ru": spec.description.ru, "en": spec.description.en},
        "keywords": {lang: list(dict.fromkeys([domain[lang], spec.id])) for lang in LANGUAGES},
        "links": [
            {
                "type": GPKG_MEDIA_TYPE,
                "rel": "enclosure",
                "title": f"GeoPackage: {spec.title.ru} / {spec.title.en}",
                "href": download_url(settings, spec.id),
                # a known length keeps pygeoapi from probing the link with a HEAD request per description
                "length": download.stat().st_size,
            },
            *tile_and_style_links(settings.base_url, spec),
        ],
        "extents": {"spatial": {"bbox": list(extent.bbox or catalog.city.extent), "crs": CRS84}},
        "providers": [feature_provider(spec, catalog, store, level)],
    }
    if spec.temporal and extent.begin is not None:
        resource["extents"]["temporal"] = {"begin": extent.begin, "end": extent.end, "trs": TRS}
    return resource


def render_config(
    catalog: Catalog,
    store: PublishedStore,
    settings: ServerSettings,
    level: Level,
    extents: dict[str, LayerExtent],
    downloads: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """The whole pygeoapi configuration as seen by `level`: only its layers, only its fields. `downloads`:
    the file each layer's download link serves at this level (default: the published one)."""
    downloads = (
        downloads if downloads is not None else {layer_id: store.download_source(layer_id) for layer_id in extents}
    )
    city = catalog.city.name
    base_url = settings.base_url
    return {
        "server": {
            "bind": {"host": settings.host, "port": settings.port},
            "url": base_url,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "languages": LANGUAGES,
            "cors": True,
            "pretty_print": False,
            "limits": {
                "default_items": settings.default_items,
                "max_items": settings.max_items,
                "on_exceed": "throttle",
            },
            # our templates: pygeoapi's pages with Bootstrap and MapLibre from this server instead of CDNs
            "templates": {"path": str(TEMPLATES), "static": str(PYGEOAPI_STATIC)},
            # the pages' basemap: none unless configured (a closed network reaches no tile server)
            "map": {"url": settings.basemap_url or "", "attribution": settings.basemap_attribution},
        },
        "logging": {"level": "ERROR"},  # pygeoapi warns per HTML page about its own config keys
        "metadata": {
            "identification": {
                "title": {"ru": f"Геопортал: {city.ru}", "en": f"{city.en} geoportal"},
                "description": {
                    "ru": f"Ремонты, перекрытия, отключения и зоны города {city.ru} по стандартам OGC API.",
                    "en": f"Repairs, road closures, outages and zones of {city.en} as OGC API collections.",
                },
                "keywords": {
                    "ru": [city.ru, *(k["ru"] for k in DOMAIN_KEYWORDS.values())],
                    "en": [city.en, *(k["en"] for k in DOMAIN_KEYWORDS.values())],
                },
                "keywords_type": "theme",
                "terms_of_service": base_url,
                "url": base_url,
            },
            "license": {"name": "Открытые данные города / City open data", "url": base_url},
            "provider": {
                "name": f"Администрация города {city.ru} / {city.en} city administration",
                "url": base_url,
            },
            "contact": {"name": "Geoportal", "url": base_url},
        },
        "resources": {
            **{
                spec.id: collection(spec, extents[spec.id], downloads[spec.id], catalog, store, settings, level)
                for spec in visible_layers(catalog, level)
                if spec.id in extents
            },
            **raster_collections(store),
            # what affects an address, as an OGC API Process (the GeoPackages it reads are where tiles are read)
            **process_resource(catalog, store.layer_path(REGISTER_LAYER).parent, level, base_url),
        },
    }


def raster_collections(store: PublishedStore) -> dict[str, dict[str, Any]]:
    """The published raster products as OGC API Coverages collections (pygeoapi's rasterio provider)."""
    resources = {}
    for product, declared in RASTER_PRODUCTS.items():
        path = store.raster_path(product)
        if not path.exists():
            continue
        import rasterio  # GDAL: only where a raster is published

        with rasterio.open(path) as dataset:
            bounds = dataset.bounds
        to_lonlat = pyproj.Transformer.from_crs(declared["grid_crs"], "EPSG:4326", always_xy=True)
        resources[product] = {
            "type": "collection",
            "title": declared["title"],
            "description": declared["description"],
            "keywords": {"ru": ["нагрузка", "растр"], "en": ["disruption", "raster"]},
            "links": [],
            "extents": {"spatial": {"bbox": list(to_lonlat.transform_bounds(*bounds)), "crs": CRS84}},
            "providers": [
                {
                    "type": "coverage",
                    "name": "rasterio",
                    "data": str(path),
                    "options": {"DATA_ENCODING": "COG"},
                    "format": {"name": "GTiff", "mimetype": "image/tiff"},
                }
            ],
        }
    return resources


def render_configs(
    catalog: Catalog,
    store: PublishedStore,
    settings: ServerSettings,
    extents: dict[str, LayerExtent] | None = None,
    downloads: dict[Level, dict[str, Path]] | None = None,
) -> dict[Level, dict[str, Any]]:
    """One configuration per access level, from one reading of the published files: what the server serves
    (server.ogcapi.site.build_site). `downloads`: per level, the file each layer's download link serves."""
    extents = store.extents() if extents is None else extents
    return {
        level: render_config(catalog, store, settings, level, extents, (downloads or {}).get(level)) for level in LEVELS
    }
