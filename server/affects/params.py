"""The `/affects` query parameters read into one checked request; every mistake is a 400 naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from layers.catalog import Catalog
from layers.timewindow import TimeQueryError, bound, stored_text, zone
from server.errors import BadRequest

DEFAULT_RADIUS_M = 150.0
MAX_RADIUS_M = 1000.0  # a resident asks about a block, not a district; also bounds the work per request
MAX_ADDRESS_CHARS = 200
FORMATS = ("json", "html")
LANGUAGES = ("ru", "en")


@dataclass(frozen=True)
class AffectsQuery:
    address: str | None
    point: tuple[float, float] | None
    at: str  # stored UTC text (layers/timewindow.py)
    radius_m: float
    format: str
    language: str

    def echo(self) -> dict:
        """The request as understood, for the answer."""
        place = {"address": self.address} if self.address is not None else {"lon": self.point[0], "lat": self.point[1]}
        return {**place, "at": self.at, "radius": self.radius_m}


def _number(params: Mapping[str, str], name: str) -> float:
    try:
        value = float(params[name])
    except ValueError:
        raise BadRequest(f"{name}: {params[name]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name}: NaN and infinite values are not accepted")
    return value


def _place(params: Mapping[str, str], catalog: Catalog) -> tuple[str | None, tuple[float, float] | None]:
    address, lon, lat = params.get("address"), params.get("lon"), params.get("lat")
    if address is not None and (lon is not None or lat is not None):
        raise BadRequest("address: give either an address or lon and lat, not both")
    if address is not None:
        address = address.strip()
        if not address:
            raise BadRequest("address: empty; give a street and a house, like 'ул. Ленина, 5А'")
        if len(address) > MAX_ADDRESS_CHARS:
            raise BadRequest(f"address: longer than {MAX_ADDRESS_CHARS} characters")
        return address, None
    if lon is None or lat is None:
        raise BadRequest("address or lon and lat are needed: /affects?address=... or /affects?lon=...&lat=...")
    point = (_number(params, "lon"), _number(params, "lat"))
    west, south, east, north = catalog.city.extent
    if not (west <= point[0] <= east and south <= point[1] <= north):
        raise BadRequest(f"lon, lat: ({point[0]}, {point[1]}) is outside the city extent {list(catalog.city.extent)}")
    return None, point


def _moment(params: Mapping[str, str], catalog: Catalog) -> str:
    text = params.get("at")
    if text is None or not text.strip():
        return stored_text(datetime.now(UTC))
    try:
        return bound(text, end=False, local=zone(catalog.city.timezone))
    except TimeQueryError as exc:
        raise BadRequest(f"at: {exc}") from None


def _radius(params: Mapping[str, str]) -> float:
    if params.get("radius") is None:
        return DEFAULT_RADIUS_M
    radius = _number(params, "radius")
    if not 0 <= radius <= MAX_RADIUS_M:
        raise BadRequest(f"radius: metres from 0 to {MAX_RADIUS_M:g}, not {radius:g}")
    return radius


def _format(params: Mapping[str, str], accept: str) -> str:
    chosen = params.get("f")
    if chosen is not None:
        if chosen not in FORMATS:
            raise BadRequest(f"f: one of {', '.join(FORMATS)}, not {chosen!r}")
        return chosen
    # a browser asks for text/html first; API clients and curl's */* get JSON
    first = accept.split(",")[0].split(";")[0].strip().lower()
    return "html" if first in ("text/html", "application/xhtml+xml") else "json"


def _language(params: Mapping[str, str], accept_language: str) -> str:
    chosen = params.get("lang")
    if chosen is not None:
        if chosen not in LANGUAGES:
            raise BadRequest(f"lang: one of {', '.join(LANGUAGES)}, not {chosen!r}")
        return chosen
    for tag in accept_language.split(","):
        language = tag.split(";")[0].strip().lower().split("-")[0]
        if language in LANGUAGES:
            return language
    return "ru"


def read_query(
    params: Mapping[str, str], catalog: Catalog, accept: str = "", accept_language: str = ""
) -> AffectsQuery:
    address, point = _place(params, catalog)
    return AffectsQuery(
        address=address,
        point=point,
        at=_moment(params, catalog),
        radius_m=_radius(params),
        format=_format(params, accept),
        language=_language(params, accept_language),
    )
