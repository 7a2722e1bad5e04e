"""QGIS layer styles (QML, as QGIS 3.22 LTR writes them) from a catalog layer's style hints."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from layers.catalog import LayerSpec, StyleHints

QGIS_VERSION = "3.22.16-Białowieża"
DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
_SYMBOL = {
    "Point": ("marker", "SimpleMarker", 0),
    "LineString": ("line", "SimpleLine", 1),
    "MultiLineString": ("line", "SimpleLine", 1),
    "MultiPolygon": ("fill", "SimpleFill", 2),
}


def qgis_color(hex_color: str, opacity: float = 1.0) -> str:
    """`#rrggbb` (or `#rgb`, `#rrggbbaa`) as QGIS's `r,g,b,a`."""
    digits = hex_color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    red, green, blue = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    alpha = int(digits[6:8], 16) if len(digits) == 8 else 255
    return f"{red},{green},{blue},{round(alpha * opacity)}"


def _options(parent: ET.Element, values: dict[str, str], name: str | None = None) -> ET.Element:
    options = ET.SubElement(parent, "Option", {"type": "Map", **({"name": name} if name else {})})
    for key, value in values.items():
        ET.SubElement(options, "Option", {"type": "QString", "name": key, "value": value})
    return options


def _data_defined(parent: ET.Element, tag: str, expressions: dict[str, str]) -> None:
    holder = ET.SubElement(ET.SubElement(parent, tag), "Option", {"type": "Map"})
    ET.SubElement(holder, "Option", {"type": "QString", "name": "name", "value": ""})
    if expressions:
        properties = ET.SubElement(holder, "Option", {"type": "Map", "name": "properties"})
        for key, expression in expressions.items():
            prop = ET.SubElement(properties, "Option", {"type": "Map", "name": key})
            ET.SubElement(prop, "Option", {"type": "bool", "name": "active", "value": "true"})
            ET.SubElement(prop, "Option", {"type": "QString", "name": "expression", "value": expression})
            ET.SubElement(prop, "Option", {"type": "int", "name": "type", "value": "3"})  # expression-based
    else:
        ET.SubElement(holder, "Option", {"name": "properties"})
    ET.SubElement(holder, "Option", {"type": "QString", "name": "type", "value": "collection"})


def _quote_field(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _dash_expression(style: StyleHints) -> str | None:
    """QGIS expression giving 'dash' for the values the hints draw dashed, else 'solid'."""
    tests = []
    for name, values in style.dashed.items():
        if values:
            listed = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
            tests.append(f"to_string({_quote_field(name)}) IN ({listed})")
    return f"CASE WHEN {' OR '.join(tests)} THEN 'dash' ELSE 'solid' END" if tests else None


def _symbol_layer_props(spec: LayerSpec, color: str) -> dict[str, str]:
    style = spec.style
    # The hints are in screen pixels (as MapLibre reads them), so every size is in Pixel units.
    if spec.geometry_type == "Point":
        return {
            "name": "circle",
            "color": qgis_color(color, style.opacity),
            "size": f"{style.radius * 2:g}",
            "size_unit": "Pixel",
            "scale_method": "diameter",
            "outline_color": "255,255,255,255",
            "outline_style": "solid",
            "outline_width": "1",
            "outline_width_unit": "Pixel",
            "angle": "0",
            "horizontal_anchor_point": "1",
            "vertical_anchor_point": "1",
            "joinstyle": "bevel",
            "offset": "0,0",
            "offset_unit": "Pixel",
        }
    if spec.geometry_type == "MultiPolygon":
        return {
            "color": qgis_color(color, style.opacity),
            "style": "solid",
            "outline_color": qgis_color(color),
            "outline_style": "solid",
            "outline_width": f"{style.width:g}",
            "outline_width_unit": "Pixel",
            "joinstyle": "bevel",
            "offset": "0,0",
            "offset_unit": "Pixel",
        }
    return {
        "line_color": qgis_color(color, style.opacity),
        "line_style": "solid",
        "line_width": f"{style.width:g}",
        "line_width_unit": "Pixel",
        "capstyle": "round",
        "joinstyle": "round",
        "use_custom_dash": "0",
        "customdash": "4;3",
        "customdash_unit": "Pixel",
        "offset": "0",
        "offset_unit": "Pixel",
    }


def _symbol(parent: ET.Element, spec: LayerSpec, name: str, color: str) -> None:
    kind, layer_class, _ = _SYMBOL[spec.geometry_type]
    symbol = ET.SubElement(
        parent, "symbol", {"type": kind, "name": name, "alpha": "1", "clip_to_extent": "1", "force_rhr": "0"}
    )
    _data_defined(symbol, "data_defined_properties", {})
    layer = ET.SubElement(symbol, "layer", {"class": layer_class, "enabled": "1", "locked": "0", "pass": "0"})
    _options(layer, _symbol_layer_props(spec, color))
    dash = _dash_expression(spec.style)
    # Points show "dashed" values as a dashed ring, lines and zones as a dashed stroke.
    _data_defined(layer, "data_defined_properties", {"outlineStyle": dash} if dash else {})


def _renderer(root: ET.Element, spec: LayerSpec) -> None:
    style = spec.style
    common = {"symbollevels": "0", "enableorderby": "0", "forceraster": "0", "referencescale": "-1"}
    if not (style.by and style.colors):
        renderer = ET.SubElement(root, "renderer-v2", {"type": "singleSymbol", **common})
        _symbol(ET.SubElement(renderer, "symbols"), spec, "0", style.color)
    else:
        renderer = ET.SubElement(root, "renderer-v2", {"type": "categorizedSymbol", "attr": style.by, **common})
        categories, symbols = ET.SubElement(renderer, "categories"), ET.SubElement(renderer, "symbols")
        for number, (value, color) in enumerate(style.colors.items()):
            ET.SubElement(
                categories,
                "category",
                {"value": value, "label": value, "symbol": str(number), "render": "true", "type": "string"},
            )
            _symbol(symbols, spec, str(number), color)
        source = ET.SubElement(renderer, "source-symbol")
        _symbol(source, spec, "0", style.color)
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")


def _labeling(root: ET.Element, spec: LayerSpec) -> None:
    if not spec.style.label:
        return
    settings = ET.SubElement(ET.SubElement(root, "labeling", {"type": "simple"}), "settings", {"calloutType": "simple"})
    text = ET.SubElement(
        settings,
        "text-style",
        {
            "fieldName": spec.style.label,
            "isExpression": "0",
            "fontFamily": "Sans Serif",
            "fontSize": "9",
            "fontSizeUnit": "Point",
            "textColor": "31,41,55,255",
            "textOpacity": "1",
            "namedStyle": "Regular",
        },
    )
    ET.SubElement(
        text,
        "text-buffer",
        {
            "bufferDraw": "1",
            "bufferSize": "1",
            "bufferSizeUnits": "MM",
            "bufferColor": "255,255,255,255",
            "bufferOpacity": "1",
        },
    )
    line = spec.geometry_type in ("LineString", "MultiLineString")
    # Placement 2 follows the line (parallel); 0 sets point labels around the point; 1 zone labels over.
    placement = "2" if line else ("0" if spec.geometry_type == "Point" else "1")
    ET.SubElement(
        settings,
        "placement",
        {"placement": placement, "dist": "1", "distUnits": "MM", "placementFlags": "10" if line else "0"},
    )
    # Labels of a whole city at once are noise: only at 1:25 000 and closer.
    ET.SubElement(
        settings,
        "rendering",
        {"scaleVisibility": "1", "scaleMin": "1", "scaleMax": "25000", "obstacle": "1", "drawLabels": "1"},
    )


def qgis_style(spec: LayerSpec) -> str:
    """QML for the layer's GeoPackage or OGC API Features layer: symbology and labels."""
    labels = bool(spec.style.label)
    root = ET.Element(
        "qgis",
        {"version": QGIS_VERSION, "styleCategories": "Symbology|Labeling", "labelsEnabled": "1" if labels else "0"},
    )
    _renderer(root, spec)
    _labeling(root, spec)
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerGeometryType").text = str(_SYMBOL[spec.geometry_type][2])
    ET.indent(root)
    return DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"
