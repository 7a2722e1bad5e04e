"""Closures and their detours as a WZDx 4.2 WorkZoneFeed, from the public fields of the published layers only."""

from __future__ import annotations

from datetime import UTC, datetime

import geopandas as gpd
import pandas as pd
from pydantic_settings import BaseSettings, SettingsConfigDict
from shapely.geometry import mapping

from layers.catalog import Catalog, LayerSpec

WZDX_VERSION = "4.2"
LICENSE = "https://creativecommons.org/publicdomain/zero/1.0/"  # the only license WZDx 4.2 allows
DATA_SOURCE = "1"
# The catalog's closure types as WZDx vehicle impacts; anything else is "unknown".
VEHICLE_IMPACT = {"full": "all-lanes-closed", "partial": "some-lanes-closed"}


class WzdxSettings(BaseSettings):
    """Which layers are the closures and their detours, and who publishes the feed (GEOPORTAL_WZDX_*)."""

    model_config = SettingsConfigDict(env_prefix="GEOPORTAL_WZDX_", frozen=True)

    closures_layer: str = "road_closures"  # id field, temporal fields, road_name, closure_type, reason
    detours_layer: str = "detours"  # id field, temporal fields, closure_id (the closure), sequence, road_name
    publisher: str | None = None  # default: the city's English name
    update_frequency: int = 600  # seconds: the closures' schedule


def rfc3339(value: object) -> str | None:
    """A stored time as RFC 3339 UTC with seconds (`2026-11-24T04:00:00Z`); None for a missing one."""
    if value is None or pd.isna(value):
        return None
    moment = pd.Timestamp(value)
    moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _core(spec: LayerSpec, row: pd.Series, event_type: str, related: list[dict], name: str | None) -> dict:
    core = {
        "data_source_id": DATA_SOURCE,
        "event_type": event_type,
        "road_names": [_text(row.get("road_name")) or "—"],
        "direction": "unknown",  # the city's files do not say which carriageway
        "related_road_events": related,
    }
    if name:
        core["name"] = name
    if _text(row.get("reason" if event_type == "work-zone" else "description")):
        core["description"] = _text(row.get("reason" if event_type == "work-zone" else "description"))
    return core


def _period(spec: LayerSpec, row: pd.Series, fallback_end: str | None = None) -> tuple[str | None, str | None]:
    start = rfc3339(row.get(spec.temporal.start)) if spec.temporal else None
    end = rfc3339(row.get(spec.temporal.end)) if spec.temporal and spec.temporal.end else None
    return start, end or fallback_end


def work_zone_feed(
    catalog: Catalog,
    closures: gpd.GeoDataFrame,
    detours: gpd.GeoDataFrame,
    now: datetime,
    settings: WzdxSettings,
) -> tuple[dict, list[str]]:
    """The feed, and what was left out and why (WZDx needs an end date and a line; ended events are not news)."""
    closure_spec, detour_spec = catalog[settings.closures_layer], catalog[settings.detours_layer]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    features, left_out, ends = [], [], {}
    segments = detours.sort_values(["closure_id", "sequence"], na_position="last") if len(detours) else detours
    by_closure: dict[str, list[str]] = {}
    for row in segments.itertuples(index=False):
        by_closure.setdefault(str(row.closure_id), []).append(str(getattr(row, detour_spec.id_field)))
    for _, row in closures.iterrows():
        key = str(row[closure_spec.id_field])
        start, end = _period(closure_spec, row)
        if end is None or start is None:
            left_out.append(f"{closure_spec.id} {key}: no end date (WZDx requires one)")
            continue
        if end < stamp:
            continue
        if row.geometry is None or row.geometry.geom_type != "LineString":
            left_out.append(f"{closure_spec.id} {key}: not a line")
            continue
        ends[key] = end
        related = [{"type": "related-detour", "id": detour} for detour in by_closure.get(key, [])]
        properties = {
            "core_details": _core(closure_spec, row, "work-zone", related, _text(row.get("road_name"))),
            "start_date": start,
            "end_date": end,
            "vehicle_impact": VEHICLE_IMPACT.get(_text(row.get("closure_type")) or "", "unknown"),
            "location_method": "unknown",
            # the city's registers are plans: neither the dates nor the positions are verified on site
            "is_start_date_verified": False,
            "is_end_date_verified": False,
            "is_start_position_verified": False,
            "is_end_position_verified": False,
        }
        features.append({"id": key, "type": "Feature", "properties": properties, "geometry": mapping(row.geometry)})
    for _, row in segments.iterrows():
        key, closure = str(row[detour_spec.id_field]), str(row["closure_id"])
        if closure not in ends:
            continue  # its closure is ended, left out, or not published
        chain = by_closure[closure]
        related = [{"type": "related-work-zone", "id": closure}]
        if chain.index(key) > 0:
            related.append({"type": "first-in-sequence", "id": chain[0]})
        if chain.index(key) + 1 < len(chain):
            related.append({"type": "next-in-sequence", "id": chain[chain.index(key) + 1]})
        start, end = _period(detour_spec, row, ends[closure])
        if row.geometry is None or row.geometry.geom_type != "LineString" or start is None:
            left_out.append(f"{detour_spec.id} {key}: not a line with a start")
            continue
        properties = {
            "core_details": _core(detour_spec, row, "detour", related, None),
            "start_date": start,
            "end_date": end,
            "is_start_date_verified": False,
            "is_end_date_verified": False,
        }
        features.append({"id": key, "type": "Feature", "properties": properties, "geometry": mapping(row.geometry)})
    publisher = settings.publisher or catalog.city.name.en
    feed_info = {
        "update_date": stamp,
        "publisher": publisher,
        "version": WZDX_VERSION,
        "license": LICENSE,
        "update_frequency": settings.update_frequency,
        "data_sources": [
            {"data_source_id": DATA_SOURCE, "organization_name": publisher, "update_date": stamp},
        ],
    }
    return {"feed_info": feed_info, "type": "FeatureCollection", "features": features}, left_out
