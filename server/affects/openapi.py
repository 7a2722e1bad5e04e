"""The `/affects` operation as the server's OpenAPI document declares it (and the fuzzing tests exercise it)."""

from __future__ import annotations

from typing import Any

from server.affects.params import DEFAULT_RADIUS_M, FORMATS, LANGUAGES, MAX_ADDRESS_CHARS, MAX_RADIUS_M


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def affects_path() -> dict[str, Any]:
    return {
        "get": {
            "summary": "What affects an address or a point: events nearby, zones and the people answering for it",
            "tags": ["affects"],
            "operationId": "getAffects",
            "parameters": [
                _query(
                    "address",
                    "A street and a house, like 'ул. Ленина, 5А' (or lon and lat)",
                    {"type": "string", "maxLength": MAX_ADDRESS_CHARS},
                ),
                _query("lon", "Longitude (WGS 84), with lat", {"type": "number"}),
                _query("lat", "Latitude (WGS 84), with lon", {"type": "number"}),
                _query("at", "The moment (RFC 3339 or a date in the city's zone); default now", {"type": "string"}),
                _query(
                    "radius",
                    "Metres around the place",
                    {"type": "number", "minimum": 0, "maximum": MAX_RADIUS_M, "default": DEFAULT_RADIUS_M},
                ),
                _query("f", "Output format", {"type": "string", "enum": list(FORMATS)}),
                _query("lang", "Language of titles", {"type": "string", "enum": list(LANGUAGES)}),
            ],  # fmt: skip
            "responses": {
                "200": {
                    "description": "The building, events by domain and zones; candidates for an unmatched address",
                    "content": {"application/json": {"schema": {"type": "object"}}, "text/html": {}},
                },
                "400": {"description": "A parameter that cannot be read"},
            },
        }
    }


def execution_body() -> dict[str, Any]:
    """The execute request of the `affects` process, inputs by name (what pygeoapi's document only references)."""
    from server.affects.process import PROCESS_METADATA

    inputs = {name: spec["schema"] for name, spec in PROCESS_METADATA["inputs"].items()}
    schema = {
        "type": "object",
        "required": ["inputs"],
        "properties": {"inputs": {"type": "object", "properties": inputs, "additionalProperties": False}},
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def self_contained_processes(paths: dict[str, Any], process_id: str) -> None:
    """pygeoapi's process operations reference the OGC API Processes schemas online; ours are answered
    synchronously (no 201), refuse bad inputs with a 400, and are described here in full, in place."""
    listing = paths.get("/processes", {}).get("get")
    if listing is not None:
        listing["responses"]["200"] = {
            "description": "The processes offered",
            "content": {"application/json": {"schema": {"type": "object", "required": ["processes"]}}},
        }
    execution = paths.get(f"/processes/{process_id}/execution", {}).get("post")
    if execution is not None:
        execution["requestBody"] = execution_body()
        execution["responses"] = {
            "200": {"description": "The answer, as GET /affects?f=json gives it"},
            "400": {"description": "Inputs that cannot be read"},
            "404": {"description": "No such process"},
        }
