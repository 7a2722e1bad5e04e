"""Map styles from the catalog's style hints: a MapLibre GL style (v8) for the combined tileset, QML per layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from layers.catalog import LayerSpec
from server.styles.qml import qgis_style
from server.tiles.metadata import Bbox, center_of

__all__ = ["SOURCE_ID", "maplibre_style", "maplibre_layers", "legend", "qgis_style"]

SOURCE_ID = "geoportal"
DASH = [2, 1.5]  # in line widths
_DRAW_ORDER = {"MultiPolygon": 0, "MultiLineString": 1, "LineString": 1, "Point": 2}


def _value(spec: LayerSpec, field: str) -> list:
    # The catalog's colour keys are YAML strings: a non-text field is compared as text. A text field is read
    # bare, the form QGIS's MapLibre style converter understands too.
    return ["get", field] if spec.field(field).type == "string" else ["to-string", ["get", field]]


def color_expression(spec: LayerSpec) -> str | list:
    """`match` on the `by` field with the hint's colours, the layer colour for anything else."""
    style = spec.style
    if not (style.by and style.colors):
        return style.color
    # Labels as one-element arrays: the same for MapLibre, and the form QGIS 3.22's converter translates.
    pairs = [item for value, color in style.colors.items() for item in ([value], color)]
    return ["match", _value(spec, style.by), *pairs, style.color]


def dashed_filter(spec: LayerSpec, dashed: bool = True) -> list | None:
    """Selects features drawn dashed (any field of `dashed` holding one of its values), or with
    `dashed=False` the others; None when no value is dashed. Negation is spelt as `match` with swapped
    outputs rather than `!`, which QGIS 3.22's style converter cannot translate."""
    tests = [
        ["match", _value(spec, name), list(values), dashed, not dashed]
        for name, values in spec.style.dashed.items()
        if values
    ]
    if not tests:
        return None
    return tests[0] if len(tests) == 1 else ["any" if dashed else "all", *tests]


def legend(spec: LayerSpec) -> list[dict[str, Any]]:
    """Legend entries: one per colour of the `by` field (with its dashing), else one for the layer."""
    style = spec.style
    dashed = {(name, value) for name, values in style.dashed.items() for value in values}
    if not (style.by and style.colors):
        return [{"color": style.color, "dashed": False}]
    return [
        {"field": style.by, "value": value, "color": color, "dashed": (style.by, value) in dashed}
        for value, color in style.colors.items()
    ]


def _metadata(spec: LayerSpec) -> dict[str, Any]:
    return {
        "geoportal:layer": spec.id,
        "geoportal:title": {"ru": spec.title.ru, "en": spec.title.en},
        "geoportal:domain": spec.domain,
        "geoportal:geometry": spec.geometry_type,
        "geoportal:legend": legend(spec),
    }


def maplibre_layers(
    spec: LayerSpec, *, source: str = SOURCE_ID, labels: bool = False, fonts: Sequence[str] = ("Noto Sans Regular",)
) -> list[dict[str, Any]]:
    """The style layers drawing one catalog layer (its source-layer is the layer id)."""
    style, color, dashed = spec.style, color_expression(spec), dashed_filter(spec)
    base = {"source": source, "source-layer": spec.id, "metadata": _metadata(spec)}
    if style.min_zoom:
        base["minzoom"] = style.min_zoom
    layers: list[dict[str, Any]] = []
    if spec.geometry_type == "MultiPolygon":
        layers.append(
            {"id": spec.id, "type": "fill", **base, "paint": {"fill-color": color, "fill-opacity": style.opacity}}
        )
        layers.append(
            {
                "id": f"{spec.id}-outline",
                "type": "line",
                **base,
                "paint": {"line-color": color, "line-width": style.width},
            }
        )
    elif spec.geometry_type in ("LineString", "MultiLineString"):
        paint = {"line-color": color, "line-width": style.width, "line-opacity": style.opacity}
        solid = {
            "id": spec.id,
            "type": "line",
            **base,
            "layout": {"line-cap": "round", "line-join": "round"},
            "paint": paint,
        }
        layers.append(solid)
        if dashed:
            # Separate layers rather than a data-driven dasharray: older MapLibre and native renderers lack it.
            solid["filter"] = dashed_filter(spec, dashed=False)
            layers.append(
                {
                    "id": f"{spec.id}-dashed",
                    "type": "line",
                    **base,
                    "filter": dashed,
                    "layout": {"line-join": "round"},
                    "paint": {**paint, "line-dasharray": DASH},
                }
            )
    else:
        radius = style.radius
        # Below full detail a point stands for `point_count` features: grow it gently with the count.
        size = [
            "interpolate",
            ["linear"],
            ["coalesce", ["get", "point_count"], 1],
            1,
            radius,
            50,
            radius * 2,
            1000,
            radius * 3,
        ]
        ring = ["case", dashed, 0.3, style.opacity] if dashed else style.opacity
        layers.append(
            {
                "id": spec.id,
                "type": "circle",
                **base,
                "paint": {
                    "circle-color": color,
                    "circle-radius": size,
                    "circle-opacity": ring,
                    "circle-stroke-color": ["case", dashed, color, "#ffffff"] if dashed else "#ffffff",
                    "circle-stroke-width": ["case", dashed, 2, 1] if dashed else 1,
                },
            }
        )
    if labels and style.label:
        line = spec.geometry_type in ("LineString", "MultiLineString")
        layers.append(
            {
                "id": f"{spec.id}-label",
                "type": "symbol",
                **base,
                "minzoom": max(style.min_zoom, 13),
                "layout": {
                    "text-field": ["to-string", ["get", style.label]],
                    "text-font": list(fonts),
                    "text-size": 12,
                    "symbol-placement": "line" if line else "point",
                    **({} if line else {"text-offset": [0, 1.2], "text-anchor": "top", "text-optional": True}),
                },
                "paint": {"text-color": "#1f2937", "text-halo-color": "#ffffff", "text-halo-width": 1.5},
            }
        )
    return layers


def maplibre_style(
    layers: Sequence[LayerSpec],
    *,
    tiles_url: str | None = None,
    tilejson_url: str | None = None,
    name: str = "Geoportal",
    bounds: Bbox | None = None,
    maxzoom: int = 16,
    glyphs_url: str | None = None,
    fonts: Sequence[str] = ("Noto Sans Regular",),
    basemap_url: str | None = None,
    basemap_attribution: str | None = None,
    background: str = "#f8fafc",
) -> dict[str, Any]:
    """A complete MapLibre style: one vector source (an XYZ template or a TileJSON URL), the layers drawn
    zones → lines → points, labels only when a glyphs URL is given (a closed network has no font server),
    and an optional raster basemap under everything."""
    if (tiles_url is None) == (tilejson_url is None):
        raise ValueError("give exactly one of tiles_url and tilejson_url")
    source: dict[str, Any] = (
        {"type": "vector", "url": tilejson_url}
        if tilejson_url
        else {"type": "vector", "tiles": [tiles_url], "minzoom": 0, "maxzoom": maxzoom}
    )
    if bounds and tiles_url:
        source["bounds"] = list(bounds)
    sources: dict[str, Any] = {SOURCE_ID: source}
    style_layers: list[dict[str, Any]] = [
        {"id": "background", "type": "background", "paint": {"background-color": background}}
    ]
    if basemap_url:
        sources["basemap"] = {
            "type": "raster",
            "tiles": [basemap_url],
            "tileSize": 256,
            **({"attribution": basemap_attribution} if basemap_attribution else {}),
        }
        style_layers.append({"id": "basemap", "type": "raster", "source": "basemap"})
    ordered = sorted(layers, key=lambda spec: _DRAW_ORDER[spec.geometry_type])  # stable: catalog order within
    drawn = [layer for spec in ordered for layer in maplibre_layers(spec, labels=False)]
    labels = [
        layer
        for spec in ordered
        for layer in maplibre_layers(spec, labels=bool(glyphs_url), fonts=fonts)
        if layer["type"] == "symbol"
    ]
    document: dict[str, Any] = {
        "version": 8,
        "name": name,
        "sources": sources,
        "layers": style_layers + drawn + labels,
        "metadata": {"geoportal:layers": [spec.id for spec in ordered]},
    }
    if glyphs_url:
        document["glyphs"] = glyphs_url
    if bounds:
        lon, lat, zoom = center_of(bounds, 0, maxzoom)
        document.update(center=[lon, lat], zoom=zoom)
    return document
