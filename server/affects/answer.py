"""The `/affects` answer: the building, events by domain with their windows, zones and their people, candidates."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from layers.catalog import Catalog
from layers.domains import DOMAINS
from server.access import Level
from server.affects.nearby import events_near, zones_at
from server.affects.params import AffectsQuery
from server.affects.register import REGISTER_LAYER, Building, Match, Register, load_register
from server.errors import NotFound
from server.published.layer import LayerFileError

LOGGER = logging.getLogger(__name__)


def catalog_text(value: Any, language: str) -> Any:
    """A catalog text {ru, en} in the language asked, else the other one."""
    if value is None or isinstance(value, str):
        return value
    data = value if isinstance(value, dict) else value.model_dump()
    return data.get(language) or next((v for v in data.values() if v), None)


def _building(building: Building, distance_m: float | None = None) -> dict:
    """Only the canonical address and the place: the register's other fields are internal."""
    properties: dict[str, Any] = {"address": building.address}
    if distance_m is not None:
        properties["distance_m"] = round(distance_m, 1)
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [building.lon, building.lat]},
            "properties": properties}  # fmt: skip


def _candidate(building: Building, base_url: str) -> dict:
    return {
        "address": building.address,
        "lon": building.lon,
        "lat": building.lat,
        "href": f"{base_url}/affects?{urlencode({'address': building.address})}",
    }


def _register(layer_path: Callable[[str], Path]) -> Register | None:
    """The register, or None when it is not published or cannot be read (logged: a point still gets events)."""
    path = layer_path(REGISTER_LAYER)
    if not path.exists():
        return None
    try:
        return load_register(path)
    except LayerFileError as error:
        LOGGER.error("/affects: the address register is left out: %s", error)
        return None


def build_answer(
    query: AffectsQuery, catalog: Catalog, layer_path: Callable[[str], Path], level: Level, base_url: str
) -> dict:
    """The answer as a JSON-able dict, in the query's language. Without a match, no events: a guess at the
    building would put someone else's works on the resident's door."""
    register = _register(layer_path)
    answer: dict[str, Any] = {
        **{"query": query.echo(), "at": query.at, "matched": False, "building": None, "reason": None},
        **{"candidates": [], "domains": [], "zones": [], "unavailable": []},
    }
    if query.address is not None:
        if register is None:
            raise NotFound("the address register cannot be read now (not published yet?): ask by lon and lat")
        match: Match = register.match(query.address)
        answer["candidates"] = [_candidate(b, base_url) for b in match.candidates]
        if match.building is None:
            answer["reason"] = match.reason
            return answer
        answer["matched"] = True
        answer["building"] = _building(match.building)
        place = (match.building.lon, match.building.lat)
    else:
        assert query.point is not None
        place = query.point
        answer["matched"] = True
        nearest, distance = register.nearest(*place) if register else (None, 0.0)
        answer["building"] = _building(nearest, distance) if nearest else None
    unreadable: list[str] = []
    events = events_near(catalog, layer_path, level, place, query.at, query.radius_m, unreadable)
    by_domain: dict[str, list] = {}
    for event in events:
        by_domain.setdefault(event.layer.domain, []).append(
            {
                "type": "Feature",
                "id": event.id,
                "layer": event.layer.id,
                "layer_title": catalog_text(event.layer.title, query.language),
                "state": event.state,
                "start": event.start,
                "end": event.end,
                "distance_m": event.distance_m,
                "covers": event.distance_m == 0,
                "properties": event.properties,
                "geometry": event.geometry,
            }
        )
    answer["domains"] = [
        {"id": domain, "title": catalog_text(DOMAINS[domain]["title"], query.language), "events": by_domain[domain]}
        for domain in DOMAINS
        if domain in by_domain
    ]
    answer["zones"] = [
        {
            "layer": zone.layer.id,
            "layer_title": catalog_text(zone.layer.title, query.language),
            "id": zone.id,
            "properties": zone.properties,
        }
        for zone in zones_at(catalog, layer_path, level, place, unreadable)
    ]
    # layers whose published file could not be read now: their events and zones are missing from this answer
    answer["unavailable"] = unreadable
    return answer
