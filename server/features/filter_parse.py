"""The `filter` parameter and body read into a pygeofilter AST: CQL2 text and CQL2 JSON (compiled by filter_sql)."""

from __future__ import annotations

import json

from pygeofilter import ast
from pygeofilter.parsers.cql2_json import parse as parse_pygeofilter_cql2_json


def parse_cql2_text(text: str) -> ast.Node:
    """CQL2 text with pygeofilter's CQL2 parser (S_INTERSECTS, DATE(), CASEI...), falling back to its
    ECQL parser, the one pygeoapi 0.21 uses, which reads single-letter names CQL2's parser trips on."""
    from pygeofilter.parsers.cql2_text import parse as parse_cql2
    from pygeofilter.parsers.ecql import parse as parse_ecql

    try:
        return parse_cql2(text)
    except Exception as first:  # noqa: BLE001 - lark raises many unrelated types
        try:
            return parse_ecql(text)
        except Exception:  # noqa: BLE001
            raise first from None


def parse_filter_json(text: str) -> ast.Node:
    """CQL2 JSON; `{"bbox": [...]}` literals become polygons first, because pygeofilter 0.4 builds them
    into an Envelope with the coordinates in the wrong slots (x2 = miny)."""

    def boxes_to_polygons(node: object) -> object:
        if isinstance(node, dict):
            box = node.get("bbox")
            if len(node) == 1 and isinstance(box, list) and len(box) in (4, 6):
                minx, miny, maxx, maxy = (
                    (box[0], box[1], box[2], box[3]) if len(box) == 4 else (box[0], box[1], box[3], box[4])
                )
                ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
                return {"type": "Polygon", "coordinates": [ring]}
            return {key: boxes_to_polygons(value) for key, value in node.items()}
        if isinstance(node, list):
            return [boxes_to_polygons(value) for value in node]
        return node

    return parse_pygeofilter_cql2_json(json.dumps(boxes_to_polygons(json.loads(text))))


def parse_filter_text(text: str) -> ast.Node:
    """The `filter` query parameter: CQL2 JSON when it is a JSON object, else CQL2 text."""
    return parse_filter_json(text) if text.lstrip().startswith("{") else parse_cql2_text(text)
