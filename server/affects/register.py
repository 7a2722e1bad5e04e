"""The address register as the `/affects` answer reads it: exact matches by the project's parser, else candidates.

The parser is the ingest's (assets.addresses); importing the `assets` package imports pandas (~100 MB resident with
pyarrow), so it is imported when a register is first read, never by a worker that is not asked /affects.
"""

from __future__ import annotations

import difflib
import math
import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from server.published import gpkg
from server.published.files import FileIdentity, file_identity
from server.published.layer import LayerFileError, LruCache, open_version, read_meta
from server.published.sql import quote_identifier

if TYPE_CHECKING:
    from assets.addresses import BuildingAddress
    from assets.geocode import AddressIndex

REGISTER_LAYER = "addresses"
CANDIDATES = 5
NEAREST_BUILDING_M = 60.0  # a point further than this from every building names no building
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Building:
    """What the public answer may say of a register building: its canonical address and where it stands.
    Nothing else of the (internal) register leaves this module."""

    address: str
    lon: float
    lat: float
    street: str  # register key, for candidates only
    house: str


@dataclass(frozen=True)
class Match:
    """The building an address names, or None and the closest candidates."""

    building: Building | None
    candidates: list[Building]
    reason: str | None = None


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance on a local flat approximation: exact enough within a city block or two."""
    mean_lat = math.radians((a[1] + b[1]) / 2)
    dx = (a[0] - b[0]) * METRES_PER_DEGREE * math.cos(mean_lat)
    dy = (a[1] - b[1]) * METRES_PER_DEGREE
    return math.hypot(dx, dy)


def _house_number(house: str) -> int | None:
    number = re.match(r"\d+", house)
    return int(number.group()) if number else None


class Register:
    """The buildings of one published version of the register."""

    def __init__(self, buildings: list[Building]):
        from assets.addresses import normalize_street, split_street_key
        from assets.geocode import AddressIndex

        self.buildings = buildings
        self.index: AddressIndex[Building] = AddressIndex((b.street, b.house, b) for b in buildings)
        self.by_street: dict[str, list[Building]] = defaultdict(list)
        for building in buildings:
            self.by_street[normalize_street(building.street)].append(building)
        self.street_names = {split_street_key(key)[0]: key for key in self.by_street}

    def match(self, text: str) -> Match:
        """The first building the text names, exactly as the register holds it (the parser's rules: a house
        is never guessed); otherwise the closest candidates and why there was no match."""
        matched, reasons = self.index.match_text(text)
        if matched:
            others = [building for _, building in matched[1 : 1 + CANDIDATES]]
            return Match(matched[0][1], others)
        return Match(None, self.candidates(text), reasons[0] if reasons else "no address recognised")

    def candidates(self, text: str) -> list[Building]:
        """Houses of the named street nearest by number; for a street the register lacks, the streets whose
        names come closest; for text the parser cannot read, the addresses that read most alike."""
        from assets.addresses import BuildingAddress, normalize_street, parse_notice

        parsed, _ = parse_notice(text)
        if parsed:
            wanted = parsed[0].address
            found = self._nearest_houses(self._streets_like(wanted.street), wanted)
        else:
            words = " ".join(re.findall(r"[^\W\d_]{3,}", text.casefold()))
            streets = self._streets_like(normalize_street(words)) if words else []
            number = re.search(r"\d+", text)
            found = self._nearest_houses(streets, BuildingAddress("", number.group() if number else ""))
        return found or self._alike(text)

    def _alike(self, text: str) -> list[Building]:
        by_text = {b.address.casefold(): b for b in self.buildings}
        close = difflib.get_close_matches(text.casefold(), list(by_text), n=CANDIDATES, cutoff=0.5)
        return [by_text[t] for t in close]

    def nearest(self, lon: float, lat: float) -> tuple[Building | None, float]:
        """The register building closest to a point and its distance, if within NEAREST_BUILDING_M."""
        best, distance = None, math.inf
        for building in self.buildings:
            metres = metres_between((lon, lat), (building.lon, building.lat))
            if metres < distance:
                best, distance = building, metres
        return (best, distance) if distance <= NEAREST_BUILDING_M else (None, distance)

    def _streets_like(self, street_key: str) -> list[str]:
        from assets.addresses import split_street_key

        if street_key in self.by_street:
            return [street_key]
        name = split_street_key(street_key)[0]
        close = difflib.get_close_matches(name, list(self.street_names), n=3, cutoff=0.6)
        return [self.street_names[n] for n in close]

    def _nearest_houses(self, streets: list[str], wanted: BuildingAddress) -> list[Building]:
        from assets.addresses import normalize_house

        number = _house_number(normalize_house(wanted.house)) if wanted.house else None
        found: list[tuple[int, int, str, Building]] = []
        for rank, street in enumerate(streets):
            for building in self.by_street[street]:
                own = _house_number(normalize_house(building.house))
                gap = abs(own - number) if own is not None and number is not None else 10**6
                found.append((gap, rank, building.house, building))
        found.sort(key=lambda item: item[:3])
        return [building for *_, building in found[:CANDIDATES]]


_registers = LruCache(4)


def load_register(path: Path) -> Register:
    """The register of the file now at `path`, read once per published version."""
    identity: FileIdentity = file_identity(path)
    if identity is None:
        raise LayerFileError(f"layer file {path} does not exist (not published yet?)")
    register = _registers.get(identity)
    if register is None:
        register = Register(_read_buildings(str(path)))
        _registers.put(identity, register)
    return register


def _read_buildings(path: str) -> list[Building]:
    connection, _ = open_version(path)
    try:
        meta = read_meta(connection, REGISTER_LAYER)
        columns = ", ".join(quote_identifier(c) for c in (meta.geometry_column, "street", "house", "full_address"))
        rows = connection.execute(f"SELECT {columns} FROM {quote_identifier(meta.table)}").fetchall()
    except sqlite3.DatabaseError as exc:
        raise LayerFileError(f"the address register cannot be read: {exc}") from None
    finally:
        connection.close()
    buildings = []
    for blob, street, house, full_address in rows:
        point = gpkg.to_shapely(blob)
        if point is None or not street or not house:
            continue  # the pipeline publishes none such; a register without a place names no building
        address = full_address or f"{street}, {house}"
        buildings.append(Building(address, point.x, point.y, str(street), str(house)))
    return buildings
