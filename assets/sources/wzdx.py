"""WZDx 4.0–4.2 and CWZ 1.0 work zone feeds: every road-event property as a column, detour chains resolved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape

from assets.records import RawRecord, SourceError, SourceTable
from assets.sources.json_paths import all_paths, as_cell, load_document, value_at

# CWZ 1.0 (ITE's successor of WZDx 4.2) keeps the feed and road-event structure; its feed_info says
# version "1.0" (WZDx 1.0 was not GeoJSON, so there is no confusion with it).
VERSIONS = {"4.0": "WZDx 4.0", "4.1": "WZDx 4.1", "4.2": "WZDx 4.2", "1.0": "CWZ 1.0"}
# Convenience columns, computed from the feed (organisation by data source, detour chains).
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
# Road-event properties of WZDx 4.0–4.2 and CWZ 1.0 by dotted path below `properties` (through a list,
# a path reads every element: `lanes.status`). Always columns, so a catalog may map a property that
# today's feed happens not to carry; paths a feed adds beyond these are columns too.
PROPERTY_PATHS = [
    *(
        f"core_details.{name}"
        for name in (
            "data_source_id",
            "event_type",
            "related_road_events",
            "related_road_events.type",
            "related_road_events.id",
            "road_names",
            "direction",
            "name",
            "description",
            "creation_date",
            "update_date",
        )
    ),
    "start_date",
    "end_date",
    "is_start_date_verified",
    "is_end_date_verified",
    "is_start_position_verified",
    "is_end_position_verified",
    "location_method",
    "work_zone_type",
    "vehicle_impact",
    "event_status",
    "beginning_cross_street",
    "ending_cross_street",
    "beginning_milepost",
    "ending_milepost",
    "beginning_reference_post",
    "ending_reference_post",
    "reference_post_unit",
    "reduced_speed_limit_kph",
    "restrictions",
    "restrictions.type",
    "restrictions.value",
    "restrictions.unit",
    "types_of_work",
    "types_of_work.type_name",
    "types_of_work.is_architectural_change",
    "lanes",
    "lanes.order",
    "lanes.status",
    "lanes.type",
    "lanes.restrictions",
    "lanes.restrictions.type",
    "worker_presence",
    "worker_presence.are_workers_present",
    "worker_presence.method",
    "worker_presence.worker_presence_last_confirmed_date",
    "worker_presence.confidence",
    "worker_presence.definition",
    "impacted_cds_curb_zones",
]


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _key(value: Any) -> Any:
    """An id as feeds write it, usable as a key: a list or object (a broken feed) as its JSON text."""
    return as_cell(value) if isinstance(value, dict | list) else value


def _links(properties: Any, kind: str) -> list[Any]:
    links = _object(_object(properties).get("core_details")).get("related_road_events")
    return [_key(link.get("id")) for link in links or [] if isinstance(link, dict) and link.get("type") == kind]


def detour_sequence(features: list[dict[str, Any]]) -> dict[Any, int]:
    """Position of each detour segment in its chain, following next-in-sequence links from the
    segment that no other segment points to (WZDx scenario 4)."""
    following = {}
    for feature in features:
        nxt = _links(feature.get("properties"), "next-in-sequence")
        if nxt:
            following[_key(feature.get("id"))] = nxt[0]
    pointed_to = set(following.values())
    order: dict[Any, int] = {}
    for head in (fid for fid in following if fid not in pointed_to):
        position, current = 1, head
        while current is not None and current not in order:
            order[current] = position
            position, current = position + 1, following.get(current)
    for feature in features:  # a one-segment detour has no sequence links at all
        properties = feature.get("properties")
        event_id = _key(feature.get("id"))
        if (
            _object(_object(properties).get("core_details")).get("event_type") == "detour"
            and event_id not in order
            and not _links(properties, "first-in-sequence")
        ):
            order[event_id] = 1
    return order


def read_wzdx(
    path: Path, source: str, join_lists: dict[str, str] | None = None, wanted: set[str] | None = None
) -> SourceTable:
    """`join_lists` names the list properties to write as joined text rather than JSON text. Every
    property path is a column; only the `wanted` ones (the catalog's) are read into the records,
    since writing every list of every event as JSON text costs more than the rest of the read."""
    feed = load_document(path, source)
    features = feed.get("features") if isinstance(feed, dict) else None
    if not isinstance(features, list) or feed.get("type") != "FeatureCollection":
        raise SourceError(source, "not a WZDx/CWZ work zone feed: expected a GeoJSON FeatureCollection with feed_info")
    feed_info = feed.get("feed_info") if isinstance(feed.get("feed_info"), dict) else {}
    version = str(feed_info.get("version", ""))
    if version not in VERSIONS:
        raise SourceError(
            source, f"feed version {version or 'missing'} is not supported (WZDx 4.0, 4.1, 4.2 or CWZ 1.0 expected)"
        )
    properties = [f.get("properties") for f in features if isinstance(f, dict)]
    paths = all_paths(p for p in properties if isinstance(p, dict))
    columns = list(dict.fromkeys([*COLUMNS, *PROPERTY_PATHS, *paths]))
    read = [path for path in columns[len(COLUMNS) :] if wanted is None or path in wanted]
    return SourceTable(source, columns, _events(feed, source, read, join_lists or {}))


def _events(feed: dict[str, Any], source: str, paths: list[str], join_lists: dict[str, str]) -> Iterator[RawRecord]:
    sources = feed["feed_info"].get("data_sources")  # feed_info: a dict, checked by read_wzdx
    organizations = {
        str(ds.get("data_source_id")): ds.get("organization_name")
        for ds in (sources if isinstance(sources, list) else [])
        if isinstance(ds, dict)
    }
    features = [f for f in feed["features"] if isinstance(f, dict)]
    sequence = detour_sequence(features)
    for index, feature in enumerate(feed["features"], start=1):
        number = f"feature {index}"
        properties = feature.get("properties") if isinstance(feature, dict) else None
        core = (properties or {}).get("core_details") if isinstance(properties, dict) else None
        if not isinstance(core, dict):
            yield RawRecord(source, number, {}, error="road event without core_details", error_field="core_details")
            continue
        event_id = _key(feature.get("id"))
        road_names = core.get("road_names") if isinstance(core.get("road_names"), list) else []
        values = {
            "id": event_id,
            "event_type": core.get("event_type"),
            "road_names": ", ".join(str(name) for name in road_names),
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
        values = {name: as_cell(value) for name, value in values.items()}  # a broken feed's list: JSON text
        for path in paths:
            values[path] = as_cell(value_at(properties, path), join_lists.get(path))
        try:
            geometry = shape(feature["geometry"]) if feature.get("geometry") else None
        except (KeyError, ValueError, TypeError, AttributeError, shapely.errors.ShapelyError) as exc:
            yield RawRecord(source, number, values, error=f"unreadable geometry: {exc}", error_field="geometry")
            continue
        yield RawRecord(source, number, values, geometry=geometry)
