"""The `datetime` window of OGC API requests, read once for features, tiles and the raster.

Times become the fixed-width UTC text the GeoPackages store (docs/contracts.md), so comparing text compares
time; dates, months, years and zone-less times are read in the city's zone. Pure: no server or pipeline imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OPEN = {"..", ""}
YEAR = re.compile(r"^\d{4}$")
MONTH = re.compile(r"^\d{4}-\d{2}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class TimeQueryError(ValueError):
    """A datetime parameter or literal we cannot read; the message is meant for the client."""


def zone(name: str | None) -> tzinfo:
    """The zone that dates and zone-less times in queries are read in (a date is a local day)."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeQueryError(f"unknown time zone {name!r}") from None


def stored_text(moment: datetime, local: tzinfo = UTC) -> str:
    """`YYYY-MM-DDTHH:MM:SS.sssZ`, the contract's datetime storage; naive moments are `local` time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=local)
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def day_start(day: date, local: tzinfo = UTC) -> str:
    return stored_text(datetime.combine(day, time.min, tzinfo=local), local)


def day_end(day: date, local: tzinfo = UTC) -> str:
    """The last stored millisecond of a local day: "until 30.11" includes all of the 30th."""
    following = datetime.combine(day + timedelta(days=1), time.min, tzinfo=local)
    return stored_text(following - timedelta(milliseconds=1), local)


def _period(text: str) -> tuple[date, date] | None:
    """The first and last day of a calendar year, month or day written without a time, else None."""
    try:
        if YEAR.match(text):
            year = int(text)
            return date(year, 1, 1), date(year, 12, 31)
        if MONTH.match(text):
            first = date(int(text[:4]), int(text[5:7]), 1)
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return first, following - timedelta(days=1)
        if DAY.match(text):
            day = date.fromisoformat(text)
            return day, day
    except ValueError:
        raise TimeQueryError(f"{text!r} is not a valid date") from None
    return None


def bound(text: str, *, end: bool, local: tzinfo = UTC) -> str:
    """One side of an interval in stored form; a date (or month, year) covers the whole period."""
    text = text.strip()
    period = _period(text)
    if period is not None:
        return day_end(period[1], local) if end else day_start(period[0], local)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TimeQueryError(
            f"{text!r} is not an RFC 3339 date-time (like 2026-11-24T10:00:00Z) or a date (2026-11-24)"
        ) from None
    return stored_text(moment, local)


@dataclass(frozen=True)
class Interval:
    """Stored-form bounds (None: an open end), and the same bounds as local calendar days (`YYYY-MM-DD`) for
    date-typed fields."""

    start: str | None
    end: str | None
    start_day: str | None = None
    end_day: str | None = None

    def first_for(self, is_date: bool) -> str | None:
        """The lower bound as the field it is compared with stores it."""
        return self.start_day if is_date else self.start

    def last_for(self, is_date: bool) -> str | None:
        return self.end_day if is_date else self.end


def active_clauses(start: str, end: str | None, first: str | None, last: str | None) -> list[tuple[str, str]]:
    """The one definition of "active in the window", as SQL over the column expressions `start` and `end`
    (None: the layer holds instants), each with its parameter: start <= last AND (end IS NULL OR end >= first);
    instants: first <= start <= last. `first` and `last` are in the storage form of the columns."""
    clauses = []
    if last is not None:
        clauses.append((f"{start} <= ?", last))
    if first is not None:
        clauses.append((f"({end} IS NULL OR {end} >= ?)" if end else f"{start} >= ?", first))
    return clauses


def parse_datetime_parameter(value: str, local: tzinfo = UTC) -> Interval:
    """The OGC `datetime` parameter: an instant, `a/b`, `../b`, `a/..` (also with empty sides)."""
    value = value.strip()
    if "/" not in value:
        if value in OPEN:
            raise TimeQueryError("datetime needs an instant or an interval, not '..'")
        return _with_days(bound(value, end=False, local=local), bound(value, end=True, local=local), local)
    parts = value.split("/")
    if len(parts) != 2:
        raise TimeQueryError(f"datetime interval {value!r} must have exactly one '/'")
    first, last = (p.strip() for p in parts)
    start = None if first in OPEN else bound(first, end=False, local=local)
    end = None if last in OPEN else bound(last, end=True, local=local)
    if start is None and end is None:
        raise TimeQueryError("datetime interval '../..' is open at both ends; leave datetime out instead")
    if start is not None and end is not None and start > end:
        raise TimeQueryError(f"datetime interval {value!r} ends before it starts")
    return _with_days(start, end, local)


def _with_days(start: str | None, end: str | None, local: tzinfo) -> Interval:
    day = lambda stored: None if stored is None else as_date_text(stored, local)  # noqa: E731
    return Interval(start, end, day(start), day(end))


def as_date_text(stored: str, local: tzinfo = UTC) -> str:
    """A stored datetime as the local calendar date, for comparing with date (`YYYY-MM-DD`) columns."""
    moment = datetime.fromisoformat(stored)
    return moment.astimezone(local).date().isoformat()
