"""Address words: tokenizer, street-type and marker vocabularies, street and house-number normalisation."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache


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


# registers and notices repeat their street names and house numbers: each distinct one is read once
# (typed: 5 and 5.0 are different texts)
@lru_cache(maxsize=65_536, typed=True)
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


@lru_cache(maxsize=65_536, typed=True)
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
