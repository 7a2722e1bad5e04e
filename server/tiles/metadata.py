"""Documents describing a vector tileset: TileJSON 3.0.0 and OGC API - Tiles tileset metadata and lists."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from layers.catalog import LayerSpec
from server.features.output import JSON_SCHEMA
from server.tiles.grid import WORLD
from server.tiles.render import TMS, visible_fields

Bbox = tuple[float, float, float, float]  # west, south, east, north (lon/lat)
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
MERCATOR_CRS = "http://www.opengis.net/def/crs/EPSG/0/3857"
WEB_MERCATOR_QUAD_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
TILING_SCHEME_REL = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
# The descriptions tippecanoe writes, which TileJSON consumers (and QGIS) know.
_TILEJSON_TYPES = {
    "string": "String",
    "integer": "Number",
    "number": "Number",
    "boolean": "Boolean",
    "date": "String",
    "datetime": "String",
}
_DIMENSION = {"Point": 0, "LineString": 1, "MultiLineString": 1, "MultiPolygon": 2}


def center_of(bounds: Bbox, minzoom: int, maxzoom: int) -> tuple[float, float, int]:
    """Centre of the box and the zoom at which it fills about one 512-px view."""
    west, south, east, north = bounds
    span = max(east - west, (north - south) * 1.5, 1e-9)
    zoom = min(maxzoom, max(minzoom, int(math.floor(math.log2(360.0 / span)))))
    return (round((west + east) / 2, 6), round((south + north) / 2, 6), zoom)


def tilejson(
    layers: Sequence[LayerSpec],
    tiles_url: str,
    *,
    bounds: Bbox | None = None,
    name: str | None = None,
    description: str | None = None,
    attribution: str | None = None,
    minzoom: int = 0,
    maxzoom: int = 16,
    staff: bool = False,
    fields: Sequence[str] | None = None,
    language: str = "ru",
) -> dict[str, Any]:
    """TileJSON 3.0.0 for an XYZ template such as `https://host/tiles/{z}/{x}/{y}.pbf`; one vector layer per
    catalog layer with the attributes the tiles carry (`fid` is the MVT feature id, not an attribute)."""
    bounds = bounds or WORLD
    vector_layers = []
    for spec in layers:
        described = {f.name: _TILEJSON_TYPES[f.type] for f in visible_fields(spec, staff, fields)}
        if spec.geometry_type == "Point":
            described["point_count"] = "Number"  # only in thinned tiles (below full detail)
        vector_layers.append(
            {
                "id": spec.id,
                "description": getattr(spec.title, language),
                "fields": described,
                "minzoom": max(minzoom, spec.style.min_zoom),
                "maxzoom": maxzoom,
            }
        )
    document: dict[str, Any] = {
        "tilejson": "3.0.0",
        "tiles": [tiles_url],
        "vector_layers": vector_layers,
        "scheme": "xyz",
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": [round(v, 6) for v in bounds],
        "center": list(center_of(bounds, minzoom, maxzoom)),
    }
    if name:
        document["name"] = name
    if description:
        document["description"] = description
    if attribution:
        document["attribution"] = attribution
    return document


def tile_matrix_limits(bounds: Bbox, minzoom: int, maxzoom: int) -> list[dict[str, Any]]:
    """The rows and columns of WebMercatorQuad that hold data, per zoom (OGC tileMatrixSetLimits)."""
    west, south, east, north = bounds
    limits = []
    for z in range(minzoom, maxzoom + 1):
        upper_left, lower_right = TMS.tile(west, north, z), TMS.tile(east, south, z)
        limits.append(
            {
                "tileMatrix": str(z),
                "minTileRow": upper_left.y,
                "maxTileRow": lower_right.y,
                "minTileCol": upper_left.x,
                "maxTileCol": lower_right.x,
            }
        )
    return limits


def _properties_schema(spec: LayerSpec, staff: bool, fields: Sequence[str] | None, language: str) -> dict[str, Any]:
    properties = {
        f.name: {**JSON_SCHEMA[f.type], "title": getattr(f.title, language)}
        for f in visible_fields(spec, staff, fields)
    }
    if spec.geometry_type == "Point":
        properties["point_count"] = {"type": "integer", "title": "features the point stands for below full detail"}
    return {"type": "object", "properties": properties}


def ogc_tileset(
    layers: Sequence[LayerSpec],
    *,
    title: str,
    tiles_href: str,
    tiling_scheme_href: str,
    self_href: str | None = None,
    description: str | None = None,
    bounds: Bbox | None = None,
    minzoom: int = 0,
    maxzoom: int = 16,
    staff: bool = False,
    fields: Sequence[str] | None = None,
    language: str = "en",
) -> dict[str, Any]:
    """OGC API - Tiles tileset metadata (`/collections/{id}/tiles/WebMercatorQuad`). `tiles_href` is the
    templated tile URL, e.g. `.../tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}?f=mvt`."""
    bounds = bounds or WORLD
    links = [
        {
            "rel": TILING_SCHEME_REL,
            "type": "application/json",
            "href": tiling_scheme_href,
            "title": "WebMercatorQuad tile matrix set definition",
        },
        {
            "rel": "item",
            "type": MVT_MEDIA_TYPE,
            "href": tiles_href,
            "templated": True,
            "title": f"{title}: Mapbox vector tiles",
        },
    ]
    if self_href:
        links.insert(0, {"rel": "self", "type": "application/json", "href": self_href, "title": "This tileset"})
    lon, lat, zoom = center_of(bounds, minzoom, maxzoom)
    document: dict[str, Any] = {
        "title": title,
        "dataType": "vector",
        "crs": MERCATOR_CRS,
        "tileMatrixSetURI": WEB_MERCATOR_QUAD_URI,
        "links": links,
        "tileMatrixSetLimits": tile_matrix_limits(bounds, minzoom, maxzoom),
        "boundingBox": {"lowerLeft": list(bounds[:2]), "upperRight": list(bounds[2:]), "crs": CRS84},
        "centerPoint": {"coordinates": [lon, lat], "crs": CRS84, "tileMatrix": str(zoom)},
        "layers": [
            {
                "id": spec.id,
                "title": getattr(spec.title, language),
                "description": getattr(spec.description, language),
                "dataType": "vector",
                "geometryDimension": _DIMENSION[spec.geometry_type],
                "minTileMatrix": str(max(minzoom, spec.style.min_zoom)),
                "maxTileMatrix": str(maxzoom),
                "propertiesSchema": _properties_schema(spec, staff, fields, language),
            }
            for spec in layers
        ],
    }
    if description:
        document["description"] = description
    return document


def ogc_tilesets(
    *, title: str, tileset_href: str, tiling_scheme_href: str, self_href: str | None = None
) -> dict[str, Any]:
    """The tileset list of a collection (`/collections/{id}/tiles`): one WebMercatorQuad vector tileset."""
    links = [{"rel": "self", "type": "application/json", "href": self_href, "title": "Tilesets"}] if self_href else []
    return {
        "links": links,
        "tilesets": [
            {
                "title": title,
                "dataType": "vector",
                "crs": MERCATOR_CRS,
                "tileMatrixSetURI": WEB_MERCATOR_QUAD_URI,
                "links": [
                    {"rel": "self", "type": "application/json", "href": tileset_href, "title": f"{title}: tileset"},
                    {
                        "rel": TILING_SCHEME_REL,
                        "type": "application/json",
                        "href": tiling_scheme_href,
                        "title": "WebMercatorQuad tile matrix set definition",
                    },
                ],
            }
        ],
    }
