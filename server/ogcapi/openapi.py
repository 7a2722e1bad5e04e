"""The OpenAPI document pygeoapi generates from a rendered configuration, with what QGIS and our routes need."""

from __future__ import annotations

from typing import Any

from pygeoapi.openapi import get_oas

from server.affects.openapi import affects_path, self_contained_processes
from server.affects.process import PROCESS_ID
from server.ogcapi.config import GPKG_MEDIA_TYPE

LIMIT_REF = {"$ref": "#/components/parameters/limit"}
FILTER_PARAMETERS = {
    "filter": {
        "name": "filter",
        "in": "query",
        "required": False,
        "description": "CQL2 filter expression (text, or JSON with filter-lang=cql2-json)",
        "schema": {"type": "string"},
        "style": "form",
        "explode": False,
    },
    "filter-lang": {
        "name": "filter-lang",
        "in": "query",
        "required": False,
        "description": "Language of the filter expression (cql-text and cql-json are accepted as older names)",
        # GDAL's OAPIF driver sends CQL filters only when this enum lists "cql-text"
        "schema": {
            "type": "string",
            "enum": ["cql2-text", "cql2-json", "cql-text", "cql-json"],
            "default": "cql2-text",
        },
        "style": "form",
        "explode": False,
    },
    "filter-crs": {
        "name": "filter-crs",
        "in": "query",
        "required": False,
        "description": "CRS of the coordinates in the filter expression",
        "schema": {"type": "string", "format": "uri"},
        "style": "form",
        "explode": False,
    },
}


def limit_parameter(limits: dict[str, int]) -> dict[str, Any]:
    """Declared once under components: QGIS and GDAL read default and maximum there to size their pages."""
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "The maximum number of items in the response; follow the `next` link for more.",
        "schema": {"type": "integer", "minimum": 1, "maximum": limits["max_items"], "default": limits["default_items"]},
        "style": "form",
        "explode": False,
    }


def download_path(layer_id: str, title: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": f"Download {title} as GeoPackage",
            "tags": [layer_id],
            "operationId": f"download{layer_id.capitalize()}",
            "responses": {
                "200": {
                    "description": "The published GeoPackage of the layer",
                    "content": {GPKG_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                },
                "404": {"description": "No such layer"},
            },
        }
    }


def _without_schema_dialects(node: Any) -> Any:
    """OpenAPI 3.0 Schema Objects do not allow `$schema`, which the provider's item schema (a full JSON
    Schema) carries; pygeoapi pastes that schema in unchanged."""
    if isinstance(node, dict):
        return {k: _without_schema_dialects(v) for k, v in node.items() if k != "$schema"}
    if isinstance(node, list):
        return [_without_schema_dialects(v) for v in node]
    return node


def openapi_document(config: dict[str, Any], filters: bool) -> dict[str, Any]:
    """pygeoapi's document for `config` (it only ever mentions what `config` holds, so a public document
    knows nothing internal), plus: `limit` in components, the CQL2 parameters when filters work, the
    download paths, and the optional API key."""
    document = get_oas(config)
    document["paths"] = _without_schema_dialects(document["paths"])
    for operations in document["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                if "$ref" not in response:
                    response.setdefault("description", "Successful response")  # required; pygeoapi omits it
    components = document.setdefault("components", {})
    components.setdefault("parameters", {})["limit"] = limit_parameter(config["server"]["limits"])
    if filters:
        components["parameters"].update(FILTER_PARAMETERS)
    for layer_id, resource in config["resources"].items():
        operation = document["paths"].get(f"/collections/{layer_id}/items", {}).get("get")
        if operation is None:
            continue
        parameters = [LIMIT_REF if p.get("name") == "limit" else p for p in operation["parameters"]]
        if filters:
            parameters += [{"$ref": f"#/components/parameters/{name}"} for name in FILTER_PARAMETERS]
        operation["parameters"] = parameters
        title = resource["title"]["en"] if isinstance(resource["title"], dict) else resource["title"]
        document["paths"][f"/downloads/{layer_id}.gpkg"] = download_path(layer_id, title)
    document["paths"]["/affects"] = affects_path()
    self_contained_processes(document["paths"], PROCESS_ID)
    components["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer"},
    }
    # Anonymous access is allowed; a key only widens what is visible.
    document["security"] = [{}, {"apiKey": []}, {"bearer": []}]
    return document
