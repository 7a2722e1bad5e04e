"""WZDx 4.x WorkZoneFeed: road events flattened to columns, detour chains resolved to closures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape

from assets.records import RawRecord, SourceError, SourceTable

COLUMNS = [
    "id",
    "event_type",
    "road_names",
    "name",
    "description",
    "start_date",
    "end_date",
    "vehicle_impact",
    "organization",
    "related_work_zone",
    "has_detour",
    "sequence",
]


def _links(properties: dict[str, Any], kind: str) -> list[str]:
    core = properties.get("core_details") or {}
    return [link.get("id") for link in core.get("related_road_events") or [] if link.get("type") == kind]


def detour_sequence(features: list[dict[str, Any]]) -> dict[str, int]:
    """Position of each detour segment in its chain, following next-in-sequence links from the
    segment that no other segment points to (WZDx scenario 4)."""
    following = {}
    for feature in features:
        nxt = _links(feature.get("properties") or {}, "next-in-sequence")
        if nxt:
            following[feature.get("id")] = nxt[0]
    pointed_to = set(following.values())
    order: dict[str, int] = {}
    for head in (fid for fid in following if fid not in pointed_to):
        position, current = 1, head
        while current is not None and current not in order:
            order[current] = position
            position, current = position + 1, following.get(current)
    for feature in features:  # a one-segment detour has no sequence links at all
        properties = feature.get("properties") or {}
        if (
            (properties.get("core_details") or {}).get("event_type") == "detour"
            and feature.get("id") not in order
            and not _links(properties, "first-in-sequence")
        ):
            order[feature.get("id")] = 1
    return order


def read_wzdx(path: Path, source: str) -> SourceTable:
    try:
        feed = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(source, f"cannot read the file: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(source, f"not a JSON document: {exc}") from None
    if not isinstance(feed, dict) or feed.get("type") != "FeatureCollection" or "features" not in feed:
        raise SourceError(source, "not a WZDx WorkZoneFeed: expected a GeoJSON FeatureCollection with feed_info")
    version = str((feed.get("feed_info") or {}).get("version", ""))
    if not version.startswith("4"):
        raise SourceError(source, f"WZDx version {version or 'missing'} is not supported (4.x expected)")
    return SourceTable(source, COLUMNS, _events(feed, source))


def _events(feed: dict[str, Any], source: str) -> Iterator[RawRecord]:
    organizations = {
        str(ds.get("data_source_id")): ds.get("organization_name")
        for ds in (feed.get("feed_info") or {}).get("data_sources") or []
    }
    features = [f for f in feed["features"] if isinstance(f, dict)]
    sequence = detour_sequence(features)
    for index, feature in enumerate(feed["features"], start=1):
        number = f"feature {index}"
        properties = feature.get("properties") if isinstance(feature, dict) else None
        core = (properties or {}).get("core_details")
        if not isinstance(core, dict):
            yield RawRecord(source, number, {}, error="road event without core_details", error_field="core_details")
            continue
        event_id = feature.get("id")
        values = {
            "id": event_id,
            "event_type": core.get("event_type"),
            "road_names": ", ".join(core.get("road_names") or []),
            "name": core.get("name"),
            "description": core.get("description"),
            "start_date": properties.get("start_date"),
            "end_date": properties.get("end_date"),
            "vehicle_impact": properties.get("vehicle_impact"),
            "organization": organizations.get(str(core.get("data_source_id"))),
            "related_work_zone": next(iter(_links(properties, "related-work-zone")), None),
            "has_detour": bool(_links(properties, "related-detour")),
            "sequence": sequence.get(event_id),
        }
        try:
            geometry = shape(feature["geometry"]) if feature.get("geometry") else None
        except (KeyError, ValueError, TypeError, AttributeError, shapely.errors.ShapelyError) as exc:
            yield RawRecord(source, number, values, error=f"unreadable geometry: {exc}", error_field="geometry")
            continue
        yield RawRecord(source, number, values, geometry=geometry)
