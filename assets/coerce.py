"""Typed columns from raw cells, vectorised, with the rows that failed and why (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

TRUE_WORDS = {"да", "yes", "true", "1", "есть", "+", "y", "д", "истина"}
FALSE_WORDS = {"нет", "no", "false", "0", "-", "n", "н", "ложь"}


@dataclass
class Coerced:
    values: pd.Series
    failed: pd.Series  # bool: a non-empty cell that could not be read as the type
    reason: str


def by_distinct(raw: pd.Series, function: Callable[[object], object]) -> pd.Series:
    """`raw.map(function)`, calling `function` once per distinct value (and once for all the empty
    cells): a column of a million cells holds a few hundred distinct values more often than not."""
    if (cells := _repeated_texts(raw)) is not None:
        # texts: a lookup per cell costs less than their factorisation (a repeated text is one object)
        judged = _Judged(function)
        return pd.Series(np.fromiter(map(judged.__getitem__, cells), object, len(cells)), index=raw.index, dtype=object)
    return _each_distinct(raw, lambda values: [function(value) for value in values], function(None))


def _each_distinct(raw: pd.Series, judge: Callable[[np.ndarray], list], empty: object) -> pd.Series:
    """`by_distinct` with the distinct values judged in one call (`judge`) and `empty` for empty cells."""
    codes, distinct = factorized(raw)
    results = np.empty(len(distinct) + 1, dtype=object)
    results[:-1] = judge(np.asarray(distinct, dtype=object))  # not per-item __getitem__
    results[-1] = empty  # code -1: None and NaN alike
    return pd.Series(results[codes], index=raw.index, dtype=object)


def blank(raw: pd.Series) -> pd.Series:
    """Empty cells: None/NaN, empty or whitespace-only strings."""
    return by_distinct(raw, lambda v: v is None or (isinstance(v, str) and not v.strip())).astype(bool)


def _text(value: object) -> object:
    """`as_text` of one cell."""
    if (
        type(value) is str
        and value
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
        and "  " not in value
    ):
        return value  # the common case, already clean: no split/join per cell
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores "12" typed into a cell as 12.0
    value = " ".join(str(value).split())
    return value or None


def as_text(raw: pd.Series) -> Coerced:
    text = _text

    def texts(values: np.ndarray) -> list:
        # the clean case inline, not a call per distinct value: ids and phone numbers are all distinct
        return [
            value
            if type(value) is str
            and value
            and value.isprintable()
            and value[0] != " "
            and value[-1] != " "
            and "  " not in value
            else text(value)
            for value in values
        ]

    if not _only_text(raw):  # 1 and True are one value to a factorisation: judged as before, per distinct value
        return Coerced(_each_distinct(raw, texts, text(None)), pd.Series(False, index=raw.index), "")
    # texts and empty cells only. Each distinct text is judged once, looked up cell by cell (a column of a
    # few hundred repeated texts: names, addresses), or, in a column of mostly distinct texts (ids, phone
    # numbers), whose factorisation or Python test per cell costs more than the rest of their typing, runs
    # of texts are tested whole.
    cells = raw.to_numpy(dtype=object)
    unclean = _Judged(text)
    if _repeated(cells):
        values = np.fromiter(map(unclean.__getitem__, cells), dtype=object, count=len(cells))
        return Coerced(pd.Series(values, index=raw.index, dtype=object), pd.Series(False, index=raw.index), "")
    values = np.full(len(cells), None, dtype=object)
    present = np.flatnonzero(~pd.isna(cells))
    for start in range(0, len(present), CLEAN_RUN):
        run = present[start : start + CLEAN_RUN]
        found = cells[run]
        if not _all_clean(found):
            found = [value if _all_clean((value,)) else unclean[value] for value in found]
        values[run] = found
    return Coerced(pd.Series(values, index=raw.index, dtype=object), pd.Series(False, index=raw.index), "")


@dataclass
class CodedTexts:
    """A column of repeated texts by its distinct values: each cell's code (-1: empty), and per code (the last:
    empty) a function of the text and the `as_text` of that, so that a test of the typed values (allowed, missing)
    is made once per distinct value and taken by the codes."""

    codes: np.ndarray
    mapped: np.ndarray
    typed: np.ndarray

    def cells(self, per_code: np.ndarray, index: pd.Index, dtype: object = object) -> pd.Series:
        return pd.Series(per_code[self.codes], index=index, dtype=dtype)


def coded_texts(raw: pd.Series, function: Callable[[object], object]) -> CodedTexts | None:
    """`by_distinct(raw, function)` and its `as_text` for a column of repeated texts (None for another column:
    a factorisation takes 1 and True for one value, `as_text` of the mapped cells may not)."""
    if (cells := _repeated_texts(raw)) is None:
        return None
    coding = _Codes()
    codes = np.fromiter(map(coding.__getitem__, cells), np.intp, len(cells))
    mapped = _objects([*map(function, coding.distinct), function(None)])  # code -1, the last: an empty cell
    return CodedTexts(codes, mapped, _objects([*map(_text, mapped)]))


def _objects(values: list) -> np.ndarray:
    """`values` as a one-dimensional array of objects, whatever they are."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


# cells that tell a column of repeated texts from one of distinct texts
DISTINCT_SAMPLE = 20_000
# texts tested at once by `_all_clean`: a run with an unclean one is tested text by text
CLEAN_RUN = 256


def _all_clean(texts) -> bool:
    """Every text non-empty, printable, without a space at either end or two in a row: exactly when the texts
    joined by single spaces are non-empty, printable, have no two spaces in a row and none at either end
    (an empty text or one with a space at an end makes two in a row with a joining space, or one at an end)."""
    joined = " ".join(texts)
    return bool(joined) and joined.isprintable() and "  " not in joined and joined[0] != " " and joined[-1] != " "


class _Judged(dict):
    """`function` of each value met, called once per distinct one (an empty cell: as None)."""

    def __init__(self, function: Callable[[object], object]):
        super().__init__()
        self.function = function

    def __missing__(self, value: object) -> object:
        judged = self[value] = self.function(value if isinstance(value, str) else None)
        return judged


def factorized(raw: pd.Series) -> tuple[np.ndarray, object]:
    """`pd.factorize(raw, use_na_sentinel=True)`: (each cell's code, -1 for an empty one; the distinct values
    in the order met). A column of repeated texts is coded by a lookup per cell: a repeated text is one object."""
    if (cells := _repeated_texts(raw)) is not None:
        codes = _Codes()
        return np.fromiter(map(codes.__getitem__, cells), np.intp, len(cells)), np.array(codes.distinct, dtype=object)
    return pd.factorize(raw, use_na_sentinel=True)


class _Codes(dict):
    """The code of each text met, in the order met; an empty cell (None, NaN, NA) is -1."""

    def __init__(self):
        super().__init__()
        self.distinct: list[str] = []

    def __missing__(self, value: object) -> int:
        if not isinstance(value, str):
            code = self[value] = -1
            return code
        code = self[value] = len(self.distinct)
        self.distinct.append(value)
        return code


def _repeated_texts(raw: pd.Series) -> np.ndarray | None:
    """The cells as Python objects when all are texts or empty and they repeat (the columns a lookup per cell codes
    faster than a factorisation); None otherwise."""
    if not _only_text(raw):
        return None
    cells = raw.to_numpy(dtype=object)
    return cells if _repeated(cells) else None


def _repeated(cells: np.ndarray) -> bool:
    """Whether the first DISTINCT_SAMPLE cells hold at most half as many distinct values."""
    sample = cells[:DISTINCT_SAMPLE]
    return 2 * len(set(sample)) <= len(sample)


def _only_text(raw: pd.Series) -> bool:
    """Every cell a text or empty (None, NaN, NA)."""
    if isinstance(raw.dtype, pd.StringDtype):
        return True
    return raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty")


def _numeric_text(raw: pd.Series) -> pd.Series:
    # "1 234,5" as Russian spreadsheets print numbers
    return raw.map(lambda v: v.replace("\u00a0", "").replace(" ", "").replace(",", ".") if isinstance(v, str) else v)


def as_number(raw: pd.Series) -> Coerced:
    values = pd.to_numeric(_numeric_text(raw), errors="coerce").astype("float64")
    return Coerced(values, values.isna() & ~blank(raw), "not a number")


def as_integer(raw: pd.Series) -> Coerced:
    numbers = pd.to_numeric(_numeric_text(raw), errors="coerce")
    # beyond 2**53 a float is no exact whole number (and 1e308 cannot become an Int64 at all)
    whole = numbers.notna() & (numbers == numbers.round()) & (numbers.abs() <= 2**53)
    values = numbers.where(whole).astype("Int64")
    return Coerced(values, ~whole & ~blank(raw), "not a whole number")


def as_boolean(raw: pd.Series) -> Coerced:
    def truth(value: object) -> object:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if value is not None else ""
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None

    values = raw.map(truth).astype("boolean")
    return Coerced(values, values.isna() & ~blank(raw), "not yes/no (да/нет)")


def _date_only_format(date_format: str) -> str:
    return date_format.split(" ")[0]


def _parse_one(value: object, date_format: str) -> tuple[pd.Timestamp | None, bool]:
    """(timestamp, is date-only) for the cells the vectorised pass could not read."""
    if isinstance(value, dt.datetime):
        return pd.Timestamp(value), False
    if isinstance(value, dt.date):
        return pd.Timestamp(value), True
    text = str(value).strip()
    for fmt, date_only in ((date_format, False), (_date_only_format(date_format), True)):
        try:
            return pd.Timestamp(dt.datetime.strptime(text, fmt)), date_only or fmt == "%d.%m.%Y"
        except ValueError:
            pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, False
    return pd.Timestamp(parsed), len(text) <= 10


# `date_format` keywords beside strptime patterns: feeds write moments as Unix time or ISO 8601
EPOCH_UNITS = {"epoch_s": "s", "epoch_ms": "ms"}
FORMAT_NAMES = {"epoch_s": "epoch seconds", "epoch_ms": "epoch milliseconds", "iso": "ISO 8601"}


def _from_epoch(raw: pd.Series, unit: str) -> pd.Series:
    """UTC timestamps from Unix time (numbers or numeric text; true/false are not times)."""
    numbers = pd.to_numeric(_numeric_text(raw.where(~raw.map(lambda v: isinstance(v, bool)))), errors="coerce")
    stamps = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    return stamps.astype("datetime64[us, UTC]")


def as_datetime(raw: pd.Series, date_format: str, timezone: str, end_of_day: bool) -> Coerced:
    """`_as_datetime`, judging each distinct text once: a million permits start on a few thousand days.
    Only for text columns: a factorisation takes 1 and 1.0 (and True) for one value, which a date
    parser may not."""
    if date_format in EPOCH_UNITS or not isinstance(raw.dtype, pd.StringDtype):
        return _as_datetime(raw, date_format, timezone, end_of_day)
    codes, distinct = factorized(raw)
    if 2 * len(distinct) > len(raw):
        return _as_datetime(raw, date_format, timezone, end_of_day)
    # the last cell stands for every empty one (code -1)
    cells = pd.Series(pd.array([*np.asarray(distinct, dtype=object), None], dtype=raw.dtype))
    judged = _as_datetime(cells, date_format, timezone, end_of_day)
    take = np.where(codes < 0, len(distinct), codes)
    values = judged.values.iloc[take].set_axis(raw.index)
    return Coerced(values, judged.failed.iloc[take].set_axis(raw.index), judged.reason)


def _as_datetime(raw: pd.Series, date_format: str, timezone: str, end_of_day: bool) -> Coerced:
    """UTC timestamps. Naive values are local city time; a bare date that ends an interval means
    the end of that day, because a permit "until 30.11" is valid all of the 30th. `date_format` may
    also be `epoch_s`, `epoch_ms` (Unix time, UTC by definition) or `iso` (ISO 8601 / RFC 3339,
    every cell judged alone: `iso` matches no strptime pattern, so the fast pass below reads none)."""
    empty = blank(raw)
    reason = f"not a date/time in the form {FORMAT_NAMES.get(date_format, date_format)}"
    if date_format in EPOCH_UNITS:
        values = _from_epoch(raw, EPOCH_UNITS[date_format])
        return Coerced(values, values.isna() & ~empty, reason)
    strings = raw.where(raw.map(lambda v: isinstance(v, str)))
    fast = pd.to_datetime(strings, format=date_format, errors="coerce")
    date_only = pd.Series(date_format == _date_only_format(date_format), index=raw.index)
    values = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    local = fast.notna()
    if local.any():
        values[local] = (
            fast[local].dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
        )
    for index in raw.index[~local & ~empty]:
        stamp, only_date = _parse_one(raw[index], date_format)
        if stamp is None:
            continue
        date_only[index] = only_date
        stamp = stamp.tz_localize(timezone) if stamp.tzinfo is None else stamp
        values[index] = stamp.tz_convert("UTC")
    if end_of_day:
        shift = values.notna() & date_only
        values[shift] = values[shift] + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return Coerced(values, values.isna() & ~empty, reason)


def as_date(raw: pd.Series, date_format: str, timezone: str) -> Coerced:
    stamps = as_datetime(raw, _date_only_format(date_format), timezone, end_of_day=False)
    values = stamps.values.dt.tz_convert(timezone).dt.strftime("%Y-%m-%d").astype(object)
    values = values.where(stamps.values.notna(), None)
    form = FORMAT_NAMES.get(date_format, _date_only_format(date_format))
    return Coerced(values, stamps.failed, f"not a date in the form {form}")


def placeholders(raw: pd.Series, nulls: list[str]) -> pd.Series:
    """Cells that only say "no value" (`Не заполнено`, `н/д`, `-`), compared trimmed and case-
    insensitively. Judged once per distinct value: registers repeat the same few placeholders."""
    words = {word.strip().casefold() for word in nulls}
    if not words or raw.empty:
        return pd.Series(False, index=raw.index)
    hits = [v for v in pd.unique(raw.to_numpy(dtype=object)) if isinstance(v, str) and v.strip().casefold() in words]
    return raw.isin(hits) if hits else pd.Series(False, index=raw.index)


def outside_dates(
    values: pd.Series, earliest: dt.date | None, latest: dt.date | None, timezone: str
) -> tuple[pd.Series, pd.Series]:
    """(before `earliest`, after `latest`) for typed dates (ISO strings) or UTC timestamps; the
    bounds are whole local days of the city."""
    never = pd.Series(False, index=values.index)
    if values.dtype == object:  # dates: "YYYY-MM-DD" strings compare in calendar order
        text = values.where(values.notna(), "")
        early = values.notna() & (text < earliest.isoformat()) if earliest else never
        late = values.notna() & (text > latest.isoformat()) if latest else never
        return early, late
    local = values.dt.tz_convert(timezone)
    after_latest = pd.Timestamp(latest + dt.timedelta(days=1)).tz_localize(timezone) if latest else None
    early = (local < pd.Timestamp(earliest).tz_localize(timezone)).fillna(False) if earliest else never
    late = (local >= after_latest).fillna(False) if latest else never
    return early.astype(bool), late.astype(bool)
