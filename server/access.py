"""The one access rule every route asks: may this level see this layer, which of its fields, and how to refuse."""

from __future__ import annotations

import re
from typing import Literal, get_args

from layers.catalog import Catalog, FieldSpec, LayerSpec
from server.errors import Forbidden, GeoportalError, NotFound

Level = Literal["public", "internal"]
LEVELS: tuple[Level, ...] = get_args(Level)  # ascending: a key of a level sees everything below it
# Every route family that names a layer in its path: features, tiles (OGC and XYZ), TileJSON, styles, downloads.
LAYER_IN_PATH = re.compile(
    r"^/(?:collections/(?P<collection>[^/]+)"
    r"|downloads/(?P<download>[^/]+)\.gpkg$"
    r"|tiles/(?P<tiles>[^/]+)/"
    r"|styles/(?P<style>[^/]+)\.qml$)"
)


def allows(granted: Level, required: Level) -> bool:
    return LEVELS.index(granted) >= LEVELS.index(required)


def sees_internal(level: Level) -> bool:
    """Whether internal layers and internal-only fields exist for this level (tiles' `staff` flag)."""
    return allows(level, "internal")


def level_of_staff(staff: bool) -> Level:
    return "internal" if staff else "public"


def sees(level: Level, spec: LayerSpec) -> bool:
    return allows(level, spec.access)


def visible_layers(catalog: Catalog, level: Level) -> list[LayerSpec]:
    return [spec for spec in catalog.values() if sees(level, spec)]


def visible_fields(spec: LayerSpec, level: Level) -> list[FieldSpec]:
    """Internal-only fields exist for the internal level only; for the others they are simply absent."""
    return [f for f in spec.fields if not f.internal or sees_internal(level)]


def exposed_fields(spec: LayerSpec, level: Level) -> list[str]:
    return [f.name for f in visible_fields(spec, level)]


def layer_in_path(path: str) -> str | None:
    match = LAYER_IN_PATH.match(path)
    return next((name for name in match.groups() if name), None) if match else None


def staff_refusal(level: Level, keyed: bool, what: str) -> GeoportalError | None:
    """Staff-only resources that are not layers (the daily reports), refused like an internal layer: absent
    without a key, forbidden to a valid key below the internal level."""
    if sees_internal(level):
        return None
    return Forbidden(f"the API key does not give access to {what}") if keyed else NotFound(f"no resource {what}")


def refusal(catalog: Catalog, layer_id: str, level: Level, keyed: bool) -> GeoportalError | None:
    """None when the caller may see the layer (or it is not a layer at all: the route answers that). Without a
    key an internal layer does not exist (404); a valid key learns that it exists but is above it (403)."""
    spec = catalog.get(layer_id)
    if spec is None or sees(level, spec):
        return None
    if keyed:
        return Forbidden(f"the API key does not give access to collection {layer_id!r}")
    return NotFound(f"no collection {layer_id!r}")
