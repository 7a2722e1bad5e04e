"""The daily summary's numbers: events new, active and ended in the last day, by domain and by district; conflicts."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from assets.raster import active_filter
from layers.catalog import Catalog, LayerSpec
from layers.domains import DOMAINS
from layers.timewindow import zone

COUNTS = ("new", "active", "ended")
NO_DISTRICT = "—"  # an event outside every district, or a layer without the tag
SEPARATOR = ", "  # several districts joined (assets/responsibility.py)


@dataclass
class DailySummary:
    day: dt.date  # the city's date the summary is for
    moment: dt.datetime  # "now" of the summary (UTC)
    since: dt.datetime  # the day before it
    city: str
    district_title: str | None  # the zone layer events are counted by (None: the catalog has none)
    by_domain: dict[str, Counter] = field(default_factory=dict)
    by_layer: dict[str, Counter] = field(default_factory=dict)
    by_district: dict[str, Counter] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)  # rule → conflicts active now
    conflict_titles: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # layers left out and why
    active_frames: dict[str, gpd.GeoDataFrame] = field(default_factory=dict, repr=False)  # for the map
    districts: gpd.GeoDataFrame | None = field(default=None, repr=False)

    def as_json(self) -> dict:
        return {
            "day": self.day.isoformat(),
            "moment": self.moment.isoformat(),
            "since": self.since.isoformat(),
            "by_domain": {k: dict(v) for k, v in self.by_domain.items()},
            "by_layer": {k: dict(v) for k, v in self.by_layer.items()},
            "by_district": {k: dict(v) for k, v in self.by_district.items()},
            "conflicts": self.conflicts,
            "notes": self.notes,
        }


def event_layers(catalog: Catalog) -> list[LayerSpec]:
    """Layers of events: read from files, with a period, not zones or reference data."""
    return [
        spec
        for spec in catalog.values()
        if spec.sources and spec.temporal and spec.domain not in ("zones", "reference", "coordination")
    ]


def district_layer(catalog: Catalog) -> LayerSpec | None:
    """The responsibility zone set events are counted by: the first by id (election districts in the sample)."""
    zones = sorted((spec for spec in catalog.values() if spec.responsibility), key=lambda spec: spec.id)
    return zones[0] if zones else None


def _moments(values: pd.Series, spec: LayerSpec, name: str, local: dt.tzinfo, end: bool) -> pd.Series:
    """Stored dates and times as UTC instants; a date is its local day (an end date lasts all day)."""
    if spec.field(name).type == "date":
        days = pd.to_datetime(values, errors="coerce")
        instants = days.dt.tz_localize(local) + (pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1) if end else 0)
        return instants.dt.tz_convert("UTC")
    return pd.to_datetime(values, utc=True, errors="coerce")


def layer_counts(
    spec: LayerSpec, path: Path, moment: dt.datetime, timezone: str, district_field: str | None
) -> tuple[pd.DataFrame, gpd.GeoDataFrame]:
    """Per feature: new (started in the last day), active (the API's definition, in SQLite) and ended (ended
    in the last day), with its district; and the active features for the map."""
    local = zone(timezone)
    start, end = spec.temporal.start, spec.temporal.end
    columns = [spec.id_field, start, *([end] if end else []), *([district_field] if district_field else [])]
    frame = pyogrio.read_dataframe(path, columns=columns, read_geometry=False)
    active = pyogrio.read_dataframe(path, columns=[spec.id_field], where=active_filter(spec, moment, timezone))
    now, since = pd.Timestamp(moment), pd.Timestamp(moment - dt.timedelta(days=1))
    starts = _moments(frame[start], spec, start, local, end=False)
    ends = _moments(frame[end], spec, end, local, end=True) if end else pd.Series(pd.NaT, index=frame.index)
    counted = pd.DataFrame(
        {
            "new": (starts > since) & (starts <= now),
            "active": frame[spec.id_field].isin(set(active[spec.id_field])),
            "ended": (ends > since) & (ends <= now),
            "district": frame[district_field].fillna("") if district_field else "",
        }
    )
    return counted, active


def _districts_of(text: str) -> list[str]:
    found = [part.strip() for part in str(text).split(SEPARATOR) if part.strip() and part.strip() != "—"]
    return found or [NO_DISTRICT]


def daily_summary(
    catalog: Catalog, published: Callable[[str], Path], moment: dt.datetime, conflicts: gpd.GeoDataFrame | None
) -> DailySummary:
    """The numbers of the summary at `moment` from the published files; a layer not published is a note."""
    local = zone(catalog.city.timezone)
    districts = district_layer(catalog)
    district_field = districts.responsibility.carried(districts.responsibility.fields[0]) if districts else None
    summary = DailySummary(
        day=moment.astimezone(local).date(),
        moment=moment,
        since=moment - dt.timedelta(days=1),
        city=catalog.city.name.ru,
        district_title=districts.title.ru if districts else None,
    )
    for spec in event_layers(catalog):
        path = published(spec.id)
        if not path.exists():
            summary.notes.append(f"{spec.id}: not published")
            continue
        tagged = district_field if district_field and _has(spec, district_field) else None
        counted, summary.active_frames[spec.id] = layer_counts(spec, path, moment, catalog.city.timezone, tagged)
        totals = Counter({name: int(counted[name].sum()) for name in COUNTS})
        summary.by_layer[spec.id] = totals
        summary.by_domain.setdefault(spec.domain, Counter()).update(totals)
        for row in counted.itertuples(index=False):
            for district in _districts_of(row.district):
                summary.by_district.setdefault(district, Counter()).update(
                    {name: int(getattr(row, name)) for name in COUNTS}
                )
    for domain in summary.by_domain:
        for name in COUNTS:
            summary.by_domain[domain].setdefault(name, 0)
    if districts and published(districts.id).exists():
        summary.districts = pyogrio.read_dataframe(published(districts.id), columns=[district_field])
    rules = next((spec for spec in catalog.values() if spec.rules), None)
    if rules is not None and conflicts is not None:
        summary.conflicts = {rule.id: int((conflicts["rule"] == rule.id).sum()) for rule in rules.rules}
        summary.conflict_titles = {rule.id: rule.title.ru for rule in rules.rules}
    elif rules is not None:
        summary.notes.append(f"{rules.id}: not published")
    return summary


def _has(spec: LayerSpec, name: str) -> bool:
    return any(f.name == name for f in spec.fields)


def domain_title(domain: str) -> str:
    return DOMAINS.get(domain, {}).get("title", {}).get("ru", domain)


def district_key(text: str) -> tuple:
    """Districts in natural order: 2 before 10, the unknown last."""
    return (text == NO_DISTRICT, int(text) if text.isdigit() else 0, text)
