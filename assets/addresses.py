"""Address lists from Russian utility outage notices, parsed into normalised building addresses."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


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


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Canonical abbreviation per street type word. "пр." is read as проспект: that is how notices use it.
_STREET_TYPES = {
    word: canonical
    for canonical, words in (
        ("ул", "улица"),
        ("пр-т", "пр пр-кт просп проспект"),
        ("пер", "переулок"),
        ("б-р", "бул бульвар"),
        ("пл", "площадь"),
        ("ш", "шоссе"),
        ("наб", "набережная"),
        ("проезд", "пр-д"),
        ("туп", "тупик"),
        ("мкр", "мкрн мкр-н микрорайон"),
        ("тракт", ""),
        ("аллея", ""),
        ("кв-л", "квартал"),
    )
    for word in (canonical, *words.split())
}
_DEFAULT_TYPE = "ул"
_STREET_TYPE_KEYS = frozenset(_STREET_TYPES.values())
_SETTLEMENT_WORDS = _words("г гор город п пос поселок пгт рп с село д дер деревня снт")
_REGION_WORDS = _words("обл область р-н район край респ республика россия рф")
_CORPUS_WORDS = _words("к корп корпус")
_STRUCTURE_WORDS = _words("с стр строение")
_LITER_WORDS = _words("лит литер литера")
_RANGE_FROM = _words("с от")
_RANGE_TO = _words("по до")
_FILLER_WORDS = _words("д дом дома и сторона стороны стороне номера")
# Never part of a street name; apartment-level words make the fragment fail rather than become a street.
_NEVER_NAME = _words(
    "дом дома корпус строение литер литера сторона стороны стороне кв квартира подъезд эт этаж офис пом помещение"
)
# Short words that start a house or range before a number, but may be initials ("ул. Д. Бедного").
_NOT_BEFORE_NUMBER = _words("д к корп с стр лит от по до и")
_SIDE_PREPOSITIONS = _words("с по")
_PARITY_RE = re.compile(r"(не)?четн?(?:ые|ая|ый|ой|ых|ом|ое|ую)?")
_ORDINAL_RE = re.compile(r"(\d+)-?(?:(ая|ья|я)|ый|ий|ой|й)")
_MAX_RANGE_HOUSES = 200
_MAX_NUMBER_DIGITS = 6

_TOKEN_RE = re.compile(
    r"(?P<ord>[0-9]+-(?:ая|ья|ый|ий|ой|я|й)(?![^\W\d_]))"
    r"|(?P<num>[0-9]+)"
    r"|(?P<word>[^\W\d_]+(?:-[^\W\d_]+)*)"
    r"|(?P<dash>[-‐‑‒–—−])"
    r"|(?P<slash>/)"
    r"|(?P<paren>[()])"
    r"|(?P<skip>[\s.:\"'`«»„“”№]+)"
    r"|(?P<other>.)",
    re.IGNORECASE,
)
_CYRILLIC_RE = re.compile(r"[а-яё]", re.IGNORECASE)
# Latin letters typed for their Cyrillic twins ("5a", "yл.").
_LOOKALIKES = str.maketrans("ABCEHKMOPTXYaceopxyk", "АВСЕНКМОРТХУасеорхук")


class _NotUnderstood(Exception):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str  # as written
    low: str  # what the grammar compares: lower case, е for ё, look-alikes fixed
    start: int
    end: int
    glued: bool  # nothing between it and the previous token: tells "5а" from "5 а"


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    if len(text) == 1 or _CYRILLIC_RE.search(text):
        text = text.translate(_LOOKALIKES)
    return text.lower().replace("ё", "е")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    previous_end = -1
    for match in _TOKEN_RE.finditer(text):
        if match.lastgroup == "skip":
            continue
        tokens.append(
            _Token(
                match.lastgroup or "other",
                match.group(),
                _fold(match.group()),
                match.start(),
                match.end(),
                match.start() == previous_end,
            )
        )
        previous_end = match.end()
    return tokens


def _is(token: _Token | None, kind: str, words: frozenset[str] | dict[str, str] | None = None) -> bool:
    return token is not None and token.kind == kind and (words is None or token.low in words)


def _parity(token: _Token | None) -> int | None:
    """0 for "чётные", 1 for "нечётные", None for any other token."""
    if not _is(token, "word") or not (match := _PARITY_RE.fullmatch(token.low)):
        return None
    return 1 if match.group(1) else 0


def _is_letter(token: _Token | None) -> bool:
    return _is(token, "word") and len(token.low) == 1 and "а" <= token.low <= "я"


def _is_plain_word(token: _Token | None) -> bool:
    return (
        _is(token, "word")
        and token.low not in _STREET_TYPES
        and token.low not in _NEVER_NAME
        and token.low not in _NOT_BEFORE_NUMBER
        and _parity(token) is None
    )


class _Cursor:
    """A read position over the tokens of one fragment."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, ahead: int = 0) -> _Token | None:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _NotUnderstood
        self.pos += 1
        return token

    def done(self) -> bool:
        return self.pos >= len(self.tokens)

    def span(self, start: int) -> str:
        return self.text[self.tokens[start].start : self.tokens[self.pos - 1].end]


# --- streets -------------------------------------------------------------------------------------


def normalize_street(name: str) -> str:
    """Street key: lower case, е for ё, no quotes; the type word canonical and last, "улица" dropped."""
    words = [
        _ORDINAL_RE.sub(lambda m: f"{m[1]}-{'я' if m[2] else 'й'}", t.low) if t.kind == "ord" else t.low
        for t in _tokenize(str(name))
        if t.kind in ("word", "ord", "num")
    ]
    words = [w for w in words if w not in ("им", "имени")]
    street_type = _DEFAULT_TYPE
    # "ул. Верхняя Набережная" == "Верхняя наб.": once "улица" is dropped, another type word at an end is the type
    while street_type == _DEFAULT_TYPE and len(words) > 1:
        typed = [i for i in sorted({0, len(words) - 1}) if words[i] in _STREET_TYPES]
        if not typed:
            break
        # "ул. Набережная": when both ends are type words the plain "улица" is the type, not the name
        index = min(typed, key=lambda i: (_STREET_TYPES[words[i]] != _DEFAULT_TYPE, i))
        street_type = _STREET_TYPES[words.pop(index)]
    words.sort(key=lambda w: not _ORDINAL_RE.fullmatch(w))  # "2-я Железнодорожная" == "Железнодорожная 2-я"
    return " ".join(words if street_type == _DEFAULT_TYPE else [*words, street_type])


def split_street_key(key: str) -> tuple[str, str]:
    """(name, canonical type) of a street key: "почтовый пер" -> ("почтовый", "пер")."""
    name, _, last = key.rpartition(" ")
    return (name, last) if name and last in _STREET_TYPE_KEYS else (key, _DEFAULT_TYPE)


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


@dataclass(frozen=True)
class _House:
    base: str  # "12", "5а", "12/1"
    corpus: str = ""
    structure: str = ""

    @property
    def key(self) -> str:
        return self.base + (f"к{self.corpus}" if self.corpus else "") + (f"с{self.structure}" if self.structure else "")


def _starts_range(cur: _Cursor, ahead: int = 0) -> bool:
    # "с 2 по 8": this "с" means "from", not "строение"
    return (
        _is(cur.peek(ahead), "word", _RANGE_FROM)
        and _is(cur.peek(ahead + 1), "num")
        and (_is(cur.peek(ahead + 2), "word", _RANGE_TO) or _is(cur.peek(ahead + 2), "dash"))
    )


def _marker_at(cur: _Cursor) -> str | None:
    token, after = cur.peek(), cur.peek(1)
    if _is(token, "word", _LITER_WORDS) and _is_letter(after):
        return "liter"
    if not _is(after, "num") or _starts_range(cur):
        return None
    if _is(token, "word", _CORPUS_WORDS):
        return "corpus"
    return "structure" if _is(token, "word", _STRUCTURE_WORDS) else None


def _number(token: _Token) -> str:
    if token.kind != "num" or len(token.text) > _MAX_NUMBER_DIGITS:
        raise _NotUnderstood
    return token.text.lstrip("0") or "0"


def _read_number(cur: _Cursor) -> str:
    number = _number(cur.take())
    letter = cur.peek()
    if letter is not None and letter.glued and _is_letter(letter) and _marker_at(cur) is None:
        number += cur.take().low
    return number


def _read_markers(cur: _Cursor, house: _House) -> _House:
    """Adds "корп. 2", "стр. 3", "литер А" (in any order, each at most once) to a house."""
    while (marker := _marker_at(cur)) is not None:
        cur.take()
        if marker == "liter" and house.base[-1].isdigit():
            house = _House(house.base + cur.take().low, house.corpus, house.structure)
        elif marker == "corpus" and not house.corpus:
            house = _House(house.base, _number(cur.take()), house.structure)
        elif marker == "structure" and not house.structure:
            house = _House(house.base, house.corpus, _number(cur.take()))
        else:
            raise _NotUnderstood
    return house


def _read_house(cur: _Cursor) -> _House:
    base = _read_number(cur)
    if _is(cur.peek(), "slash") and _is(cur.peek(1), "num"):
        cur.take()
        base += "/" + _read_number(cur)
    return _read_markers(cur, _House(base))


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


def normalize_house(house: str) -> str:
    """House key: "д. 7 корп. 2" -> "7к2", "дом 5А" -> "5а", "12 стр 3" -> "12с3", "7/1" -> "7/1"."""
    # a register field holds one house, so "5 А" can only mean 5а: retry with the spaces removed
    for text in (str(house), re.sub(r"\s+", "", str(house))):
        cur = _Cursor(text)
        while _is(cur.peek(), "word", _FILLER_WORDS):
            cur.take()
        try:
            key = _read_house(cur).key
            if cur.done():
                return key
        except _NotUnderstood:
            pass
    return re.sub(r"[\s.]+", "", _fold(str(house)))  # unusual spellings still meet themselves


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
