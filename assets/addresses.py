"""Address lists from Russian utility outage notices, parsed into normalised building addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass

from assets.address_words import (
    _FILLER_WORDS,
    _MAX_RANGE_HOUSES,
    _NOT_BEFORE_NUMBER,
    _REGION_WORDS,
    _SETTLEMENT_WORDS,
    _SIDE_PREPOSITIONS,
    _STREET_TYPES,
    _Cursor,
    _House,
    _is,
    _is_plain_word,
    _marker_at,
    _NotUnderstood,
    _parity,
    _read_house,
    _read_markers,
    _starts_range,
    normalize_street,
)
from assets.address_words import normalize_house as normalize_house
from assets.address_words import split_street_key as split_street_key


@dataclass(frozen=True)
class BuildingAddress:
    """One building; `street` and `house` are keys shared with the address register."""

    street: str  # "ленина", "почтовый пер": the type word is kept unless it is the default "улица"
    house: str  # "5а", "7к2", "12/1", "3с1"


@dataclass(frozen=True)
class ParsedAddress:
    """A building together with the notice's own words, so a miss can be reported as written."""

    address: BuildingAddress
    street_label: str  # "ул. Ленина"
    fragment: str  # the comma/semicolon separated piece the building came from


# --- streets -------------------------------------------------------------------------------------


def _is_name_part(cur: _Cursor, ahead: int = 0) -> bool:
    token, after = cur.peek(ahead), cur.peek(ahead + 1)
    if _is(token, "ord"):
        return True
    if _is(token, "num"):  # "50 лет Октября", but not the house in "Ленина 5 корп 2"
        return _is_plain_word(after) and len(after.low) > 1
    return _is_plain_word(token) or (_is(token, "word", _NOT_BEFORE_NUMBER) and _is_plain_word(after))


def _read_name(cur: _Cursor, type_may_be_name: bool = False) -> int:
    count = 0
    while _is_name_part(cur) or (count == 0 and type_may_be_name and _is(cur.peek(), "word", _STREET_TYPES)):
        cur.take()
        count += 1
    return count


def _read_street(cur: _Cursor) -> bool:
    """Consumes "ул. Ленина", "Ленина ул." or a bare "Ленина"; False when the fragment starts otherwise."""
    if _is(cur.peek(), "word", _STREET_TYPES):
        cur.take()
        if not _read_name(cur, type_may_be_name=True):
            raise _NotUnderstood
    elif not _read_name(cur):
        return False
    elif _is(cur.peek(), "word", _STREET_TYPES):
        cur.take()
    # "ул. Верхняя Набережная, 2", "Верхняя Набережная ул.": a type word after the name, with no name after it
    if _is(cur.peek(), "word", _STREET_TYPES) and not _is_name_part(cur, 1):
        cur.take()
    return True


def _skip_settlement(cur: _Cursor) -> bool:
    """Consumes "г. Иркутск" and the like in front of a street."""
    if not (_is(cur.peek(), "word", _SETTLEMENT_WORDS) and _is_plain_word(cur.peek(1))):
        return False
    cur.take()
    while _is_plain_word(cur.peek()):
        cur.take()
    return True


# --- houses --------------------------------------------------------------------------------------


def _range_end(house: _House) -> int:
    if house != _House(house.base) or not house.base.isdigit():
        raise _NotUnderstood  # "7к2-7к5" names no clear set of buildings
    return int(house.base)


def _read_items(cur: _Cursor, parity: int | None) -> tuple[list[_House | tuple[int, int]], int | None]:
    """Houses and (first, last) ranges of one fragment, and the side of the street in force after it."""
    items: list[_House | tuple[int, int]] = []
    while not cur.done():
        token = cur.peek()
        side = _parity(token)
        if side is not None:
            parity = side
            cur.take()
        elif _is(token, "paren") or _is(token, "word", _FILLER_WORDS) or _is_side_preposition(cur):
            cur.take()  # "(", "д.", "и", "с нечётной стороны": nothing to keep
        elif _starts_range(cur):
            cur.take()
            first = _range_end(_read_house(cur))
            cur.take()
            items.append((first, _range_end(_read_house(cur))))
        elif _is(token, "num"):
            house = _read_house(cur)
            if _is(cur.peek(), "dash"):
                cur.take()
                items.append((_range_end(house), _range_end(_read_house(cur))))
            else:
                items.append(house)
        else:
            raise _NotUnderstood
    return items, parity


def _is_side_preposition(cur: _Cursor) -> bool:
    return _is(cur.peek(), "word", _SIDE_PREPOSITIONS) and _parity(cur.peek(1)) is not None


def _expand(first: int, last: int, parity: int | None) -> list[_House]:
    """Houses of a range: one side of the street when the ends agree or a side is named, else all."""
    step = 2 if parity is not None or first % 2 == last % 2 else 1
    if parity is not None:
        first += (first - parity) % 2
    if last < first or (last - first) // step + 1 > _MAX_RANGE_HOUSES:
        raise _NotUnderstood
    return [_House(str(n)) for n in range(first, last + 1, step)]


# --- notices -------------------------------------------------------------------------------------


@dataclass
class _Street:
    key: str
    label: str
    fragment: str  # where it was named, reported if nothing follows it
    followed: bool = False


class _NoticeParser:
    """Walks a notice fragment by fragment; the street and side of the street carry over commas."""

    def __init__(self) -> None:
        self.addresses: list[ParsedAddress] = []
        self.not_understood: list[str] = []
        self.street: _Street | None = None
        self.parity: int | None = None
        self.last_house: tuple[_House, int] | None = None  # for "д.7, корп.2": the house and its index

    def feed(self, fragment: str) -> None:
        cur = _Cursor(fragment)
        if any(_is(token, "word", _REGION_WORDS) for token in cur.tokens):
            self._close_street()
            return
        try:
            if _skip_settlement(cur):
                self._close_street()
            start = cur.pos
            if _read_street(cur):
                self._close_street()
                label = cur.span(start)
                self.street = _Street(normalize_street(label), label, fragment)
            elif self._attach_markers(cur, fragment):
                return
            if cur.done():
                return
            if self.street is None:
                raise _NotUnderstood
            items, parity = _read_items(cur, self.parity)
            houses = [
                house for item in items for house in (_expand(*item, parity) if isinstance(item, tuple) else [item])
            ]
        except _NotUnderstood:
            self._reject(fragment)
            self.last_house = None
            if self.street is not None:
                self.street.followed = True  # its trouble is reported with this fragment
            return
        self.parity = parity
        self._emit(houses, fragment)
        if not houses or isinstance(items[-1], tuple):
            self.last_house = None

    def finish(self) -> tuple[list[ParsedAddress], list[str]]:
        self._close_street()
        unique: dict[BuildingAddress, ParsedAddress] = {}
        for item in self.addresses:
            unique.setdefault(item.address, item)
        return list(unique.values()), self.not_understood

    def _close_street(self) -> None:
        if self.street is not None and not self.street.followed:
            self._reject(self.street.fragment)  # a street without houses names no building
        self.street, self.parity, self.last_house = None, None, None

    def _attach_markers(self, cur: _Cursor, fragment: str) -> bool:
        """A fragment that is only "корп. 2" belongs to the house before it."""
        if self.last_house is None or _marker_at(cur) is None:
            return False
        house, index = self.last_house
        extended = _read_markers(cur, _House(house.base))
        if not cur.done():
            raise _NotUnderstood
        if house != _House(house.base):  # "д. 7 корп. 1, корп. 2": another building of house 7
            self._emit([extended], fragment)
            return True
        previous = self.addresses[index]  # "д.7, корп.2" is one building, 7к2, not 7 and 7к2
        self.addresses[index] = ParsedAddress(
            BuildingAddress(previous.address.street, extended.key),
            previous.street_label,
            f"{previous.fragment}, {fragment}",
        )
        self.last_house = (extended, index)
        return True

    def _emit(self, houses: list[_House], fragment: str) -> None:
        assert self.street is not None
        for house in houses:
            address = BuildingAddress(self.street.key, house.key)
            self.addresses.append(ParsedAddress(address, self.street.label, fragment))
            self.last_house = (house, len(self.addresses) - 1)
        self.street.followed = self.street.followed or bool(houses)

    def _reject(self, fragment: str) -> None:
        if fragment not in self.not_understood:
            self.not_understood.append(fragment)


def parse_notice(text: str) -> tuple[list[ParsedAddress], list[str]]:
    """Buildings a notice names, each with the words it came from, and the fragments not understood."""
    parser = _NoticeParser()
    for fragment in re.split(r"[,;\n]+", "" if text is None else str(text)):
        if fragment.strip():
            parser.feed(fragment.strip())
    return parser.finish()


def parse_address_list(text: str) -> tuple[list[BuildingAddress], list[str]]:
    """(buildings in notice order without repeats, fragments not understood); never raises."""
    parsed, not_understood = parse_notice(text)
    return [item.address for item in parsed], not_understood
