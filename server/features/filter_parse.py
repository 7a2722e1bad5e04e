"""The `filter` parameter and body read into a pygeofilter AST (CQL2 text and JSON), and the literal forms inside it
(LIKE patterns, DE-9IM matrices, envelopes) read for the SQL compiler (filter_sql)."""

from __future__ import annotations

import json

import shapely
from pygeofilter import ast, values
from pygeofilter.parsers.cql2_json import parse as parse_pygeofilter_cql2_json


class FilterError(ValueError):
    """The filter cannot be run on this collection; the message is meant for the client (HTTP 400)."""


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


def envelope_box(envelope: values.Envelope) -> shapely.Polygon:
    """pygeofilter fills Envelope(x1, x2, y1, y2) from ENVELOPE(minx maxx miny maxy) in text but
    positionally from CQL2 JSON's {"bbox": [minx, miny, maxx, maxy]}; tell them apart by which reading
    is a valid box, and prefer the JSON one (the common source) when both are."""
    a, b, c, d = envelope.x1, envelope.x2, envelope.y1, envelope.y2
    if a <= c and b <= d:
        return shapely.box(a, b, c, d)
    if a <= b and c <= d:
        return shapely.box(a, c, b, d)
    raise FilterError("bbox minimum is greater than its maximum")


def like_glob(pattern: str, *, wildcard: str, single: str, escape: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == escape and index + 1 < len(pattern):
            out.append(_glob_literal(pattern[index + 1]))
            index += 2
            continue
        out.append("*" if char == wildcard else "?" if char == single else _glob_literal(char))
        index += 1
    return "".join(out)


def _glob_literal(char: str) -> str:
    return f"[{char}]" if char in "*?[" else char


def transpose_de9im(pattern: str) -> str:
    """DE-9IM pattern of (B, A) from that of (A, B)."""
    if len(pattern) != 9:
        raise FilterError(f"RELATE pattern {pattern!r} must have 9 characters")
    return "".join(pattern[column * 3 + row] for row in range(3) for column in range(3))
