"""`/affects` as an OGC API Process (`affects`), executed synchronously by pygeoapi's process manager."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from layers.catalog import Catalog, load_catalog
from layers.settings import PathSettings
from server.access import Level
from server.affects.answer import build_answer
from server.affects.params import DEFAULT_RADIUS_M, MAX_ADDRESS_CHARS, MAX_RADIUS_M, read_query
from server.errors import BadRequest, GeoportalError
from server.published.layer import LayerFileError

PROCESS_ID = "affects"
PROCESSOR = f"{__name__}.AffectsProcessor"
INPUTS = ("address", "lon", "lat", "at", "radius", "lang")


def _literal(title: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, "description": description, "schema": schema, "minOccurs": 0, "maxOccurs": 1}


PROCESS_METADATA: dict[str, Any] = {
    "version": "1.0.0",
    "id": PROCESS_ID,
    "title": {"ru": "Что происходит у адреса", "en": "What affects an address"},
    "description": {
        "ru": "Здание по адресу (или точке), события рядом на момент времени и зоны с ответственными лицами.",
        "en": "The building at an address (or point), the events near it at a moment and its zones with the "
        "people who answer for them.",
    },
    "jobControlOptions": ["sync-execute"],
    "keywords": ["address", "events", "responsibility"],
    "links": [],
    "inputs": {
        "address": _literal(
            "Address",
            "A street and a house, like 'ул. Ленина, 5А' (or lon and lat)",
            {"type": "string", "maxLength": MAX_ADDRESS_CHARS},
        ),
        "lon": _literal("Longitude", "WGS 84, with lat", {"type": "number"}),
        "lat": _literal("Latitude", "WGS 84, with lon", {"type": "number"}),
        "at": _literal("Moment", "RFC 3339 or a date in the city's zone; default now", {"type": "string"}),
        "radius": _literal(
            "Radius",
            "Metres around the place",
            {"type": "number", "minimum": 0, "maximum": MAX_RADIUS_M, "default": DEFAULT_RADIUS_M},
        ),
        "lang": _literal("Language", "Language of titles", {"type": "string", "enum": ["ru", "en"]}),
    },  # fmt: skip
    "outputs": {
        "affects": {
            "title": "What affects the place",
            "description": "The same document as GET /affects?f=json",
            "schema": {"type": "object", "contentMediaType": "application/json"},
        }
    },
    "example": {"inputs": {"address": "ул. Ленина, 5А"}},
}


@lru_cache(maxsize=4)
def _catalog(directory: str) -> Catalog:
    return load_catalog(directory)


def process_resource(catalog: Catalog, published_dir: Path | None, level: Level, base_url: str) -> dict[str, Any]:
    """The pygeoapi resource of the process for one access level (none for a store without files to read)."""
    if published_dir is None:
        return {}
    processor = {
        "name": PROCESSOR,
        "catalog_dir": str(catalog.directory),
        "published_dir": str(published_dir),
        "level": level,
        "base_url": base_url,
    }
    return {PROCESS_ID: {"type": "process", "processor": processor}}


def _literal_inputs(data: Any) -> dict[str, str]:
    """The inputs as the query parameters of GET /affects; a ValueError says what is wrong with them."""
    if not isinstance(data, dict):
        raise ValueError("inputs: an object of named inputs")
    unknown = sorted(set(data) - set(INPUTS))
    if unknown:
        raise ValueError(f"inputs: unknown {unknown}; known are {list(INPUTS)}")
    bad = [name for name, value in data.items() if not isinstance(value, str | int | float) or isinstance(value, bool)]
    if bad:
        raise ValueError(f"inputs: {bad} must be literal strings or numbers")
    return {name: str(value) for name, value in data.items()}


def check_execute_request(body: bytes, catalog: Catalog) -> None:
    """The execute request refused at our edge with a 400 before pygeoapi's manager sees it (it answers some
    malformed bodies with a 500 and logs a traceback for every failed job): a JSON object, `inputs` readable as
    GET /affects reads its parameters, synchronous (no `subscriber` callbacks), `response` raw or document."""
    try:
        request = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("the execute request is not JSON") from None
    if not isinstance(request, dict):
        raise BadRequest("the execute request must be a JSON object with `inputs`")
    if request.get("subscriber") is not None:
        raise BadRequest("subscriber: the process runs synchronously and sends no callbacks")
    if request.get("response", "raw") not in ("raw", "document"):
        raise BadRequest("response: raw or document")
    if not isinstance(request.get("outputs", {}), dict):
        raise BadRequest("outputs: an object of output names")
    try:
        read_query(_literal_inputs(request.get("inputs", {})), catalog)
    except ValueError as error:
        raise BadRequest(str(error)) from None


class AffectsProcessor(BaseProcessor):
    """Runs the `/affects` answer for the access level its configuration was rendered for."""

    def __init__(self, processor_def: dict):
        super().__init__(processor_def, PROCESS_METADATA)
        self.definition = processor_def

    def execute(self, data: dict, outputs: Any = None) -> tuple[str, dict]:
        catalog = _catalog(self.definition["catalog_dir"])
        published = Path(self.definition["published_dir"])
        try:
            query = read_query(_literal_inputs(data), catalog)
            answer = build_answer(
                query,
                catalog,
                PathSettings(published_dir=published).published_path,
                self.definition["level"],
                self.definition["base_url"],
            )
        except (ValueError, GeoportalError, LayerFileError) as error:
            raise ProcessorExecuteError(str(error)) from None
        return "application/json", answer
