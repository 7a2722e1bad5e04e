"""Events tagged with the zones that answer for them: the fields of every zone an event touches."""

from __future__ import annotations

import re
from dataclasses import dataclass

import geopandas as gpd
import pandas as pd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError, FieldError

from layers.catalog import Catalog, LayerSpec
from layers.coordination import is_event_layer, responsible_zones
from layers.settings import PathSettings

SEPARATOR = ", "
MISSING = "—"  # a zone without the value, among several: the positions of district_no and deputy stay aligned


@dataclass(frozen=True)
class Zones:
    """A published responsibility zone layer: its spec and its polygons with the carried fields."""

    spec: LayerSpec
    frame: gpd.GeoDataFrame


def _natural(value: object) -> tuple:
    """ "7" before "12", "УУП-02" before "УУП-10"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(value)))


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def tag_zones(events: gpd.GeoDataFrame, zones: list[Zones]) -> gpd.GeoDataFrame:
    """`events` with the carried fields of each zone set filled from the zones each event intersects
    (several joined with ", " in the zones' natural id order; none: empty). Both in the same CRS."""
    result = events.copy()
    for zone in zones:
        rule = zone.spec.responsibility
        assert rule is not None
        polygons = zone.frame.reset_index(drop=True)
        order = sorted(range(len(polygons)), key=lambda i: _natural(polygons.at[i, zone.spec.id_field]))
        rank = {position: number for number, position in enumerate(order)}
        located = result[result.geometry.notna() & ~result.geometry.is_empty]
        pairs = gpd.sjoin(
            located[["geometry"]], polygons[["geometry"]], how="inner", predicate="intersects"
        ).reset_index(names="event")
        touched: dict[object, list[int]] = {}
        for event, position in zip(pairs["event"], pairs["index_right"], strict=True):
            touched.setdefault(event, []).append(position)
        for name in rule.fields:
            carried = rule.carried(name)
            values = {}
            for event, positions in touched.items():
                texts = [_text(polygons.at[p, name]) for p in sorted(set(positions), key=rank.__getitem__)]
                if len(texts) == 1:
                    values[event] = texts[0]
                elif any(texts):
                    values[event] = SEPARATOR.join(t or MISSING for t in texts)
            result[carried] = pd.Series(values, index=result.index, dtype=object).where(
                result.index.isin(list(values)), None
            )
    return result


def published_zones(spec: LayerSpec, catalog: Catalog, paths: PathSettings) -> tuple[list[Zones], list[str]]:
    """The published responsibility zones that tag `spec` (none unless it is an event layer), and a warning
    for each zone layer that cannot: its fields stay empty until it is published."""
    if not is_event_layer(spec):
        return [], []
    found, warnings = [], []
    for zone in responsible_zones(catalog):
        assert zone.responsibility is not None
        path = paths.published_path(zone.id)
        columns = list(dict.fromkeys([zone.id_field, *zone.responsibility.fields]))
        fields = ", ".join(zone.responsibility.carried(name) for name in zone.responsibility.fields)
        if not path.exists():
            warnings.append(f"{zone.id} is not published yet: {fields} left empty")
            continue
        try:
            frame = pyogrio.read_dataframe(path, columns=columns)
        except (DataSourceError, DataLayerError, FieldError) as error:
            warnings.append(f"{zone.id}: cannot read {path.name} ({error}): {fields} left empty")
            continue
        found.append(Zones(zone, frame.to_crs("EPSG:4326")))
    return found, warnings
