"""Outage-notice addresses matched to buildings of the city address register."""

from __future__ import annotations

import math
import numbers
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

from assets.addresses import (
    BuildingAddress,
    normalize_house,
    normalize_street,
    parse_notice,
    split_street_key,
)

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

P = TypeVar("P")

NOT_IN_REGISTER = "не найден в адресном реестре"
STREET_NOT_IN_REGISTER = "улица не найдена в адресном реестре"
AMBIGUOUS = "неоднозначно: в адресном реестре несколько разных объектов"
NOT_UNDERSTOOD = "не распознано"
_SIBLINGS_SHOWN = 5


class AddressIndex(Generic[P]):
    """Register buildings by normalised (street, house) key.

    Matching never guesses a building: a house must be in the register exactly as the notice
    names it, corpus and letter included, since a wrong geometry on the map is worse than an
    unmatched address that is reported. The one tolerance is the street's type word, and only
    when the register has no street under the notice's key and exactly one of that name
    ("ул. Почтовый" finds "пер. Почтовый" if no other Почтовый exists)."""

    def __init__(self, entries: Iterable[tuple[str, str, P]]) -> None:
        self._houses: dict[str, dict[str, P]] = defaultdict(dict)
        self._ambiguous: set[BuildingAddress] = set()
        self.skipped = 0  # register rows without a usable street or house
        for raw_street, raw_house, payload in entries:
            street, house = _register_text(raw_street), _register_text(raw_house)
            if street is None or house is None:
                self.skipped += 1
                continue
            self._add(BuildingAddress(normalize_street(street), normalize_house(house)), payload)
        self._streets_by_name: dict[str, list[str]] = defaultdict(list)
        self._matched: dict[str, tuple[list[tuple[BuildingAddress, P]], list[str]]] = {}
        for street in self._houses:
            self._streets_by_name[_loose_name(street)].append(street)

    @classmethod
    def from_frame(cls, frame: gpd.GeoDataFrame, street_col: str, house_col: str) -> AddressIndex[BaseGeometry]:
        """An index over a GeoDataFrame whose payload is each row's geometry."""
        return cls(zip(frame[street_col], frame[house_col], frame.geometry, strict=True))

    def __len__(self) -> int:
        return sum(len(houses) for houses in self._houses.values())

    def lookup(self, address: BuildingAddress) -> P | None:
        """The register's payload for this building, or None when it is absent or ambiguous."""
        return self._resolve(address)[0]

    def match_text(self, text: str) -> tuple[list[tuple[BuildingAddress, P]], list[str]]:
        """(matched buildings with their payloads, a human-readable reason for each miss).

        Matched addresses are the register's keys. Reasons name the address as the notice wrote
        it and quote the fragment it came from; fragments not understood are reasons too."""
        parsed, not_understood = parse_notice(text)
        matched: list[tuple[BuildingAddress, P]] = []
        reasons: list[str] = []
        for item in parsed:
            payload, resolved, reason = self._resolve(item.address)
            if reason is None:
                matched.append((resolved, payload))
                continue
            reasons.append(f"{reason}: {item.street_label}, {item.address.house} («{item.fragment}»)")
            if siblings := self._siblings(resolved, reason):
                reasons[-1] += f"; в реестре есть {', '.join(siblings)}"
        reasons += [f"{NOT_UNDERSTOOD}: «{fragment}»" for fragment in not_understood]
        return matched, reasons

    def match_text_once(self, text: str) -> tuple[list[tuple[BuildingAddress, P]], list[str]]:
        """`match_text`, each distinct text parsed and matched once for the life of this index: a register
        repeats its addresses, also from one chunk of a source to the next. The lists are shared: read them."""
        found = self._matched.get(text)
        if found is None:
            found = self._matched[text] = self.match_text(text)
        return found

    def _add(self, key: BuildingAddress, payload: P) -> None:
        houses = self._houses[key.street]
        if key.house in houses and not _same(houses[key.house], payload):
            self._ambiguous.add(key)
        houses.setdefault(key.house, payload)

    def _resolve(self, address: BuildingAddress) -> tuple[P | None, BuildingAddress, str | None]:
        """(payload, register key, None) on a match, else (None, the key looked for, why not)."""
        street = self._street_key(address.street)
        if street is None:
            return None, address, STREET_NOT_IN_REGISTER
        key = BuildingAddress(street, address.house)
        houses = self._houses[street]
        if key in self._ambiguous:
            return None, address, AMBIGUOUS
        if address.house in houses:
            return houses[address.house], key, None
        return None, key, NOT_IN_REGISTER

    def _street_key(self, street: str) -> str | None:
        if street in self._houses:
            return street
        candidates = self._streets_by_name.get(_loose_name(street), [])
        return candidates[0] if len(candidates) == 1 else None

    def _siblings(self, key: BuildingAddress, reason: str) -> list[str]:
        """Register houses sharing the missing one's number, so a reader sees why 7к2 did not become 7."""
        number = re.match(r"\d+", key.house)
        if reason != NOT_IN_REGISTER or number is None:
            return []
        same_number = re.compile(rf"{number.group()}(?!\d)")
        return sorted(h for h in self._houses[key.street] if same_number.match(h))[:_SIBLINGS_SHOWN]


def _loose_name(street_key: str) -> str:
    # "Сергеева-Ценского" and "Сергеева Ценского" are one name
    return split_street_key(street_key)[0].replace("-", " ")


def _register_text(value: object) -> str | None:
    """Register cells as text: None/NaN/blank are missing, 5.0 is "5"."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else str(value)
    return None


def _same(a: object, b: object) -> bool:
    # register duplicates of one building are harmless; comparing arrays or geometries may not give a bool
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b
