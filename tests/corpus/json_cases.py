"""JSON record feeds as outage APIs emit them: epoch times, flat coordinate lists, odd shapes."""

from __future__ import annotations

import json

from tests.corpus import Case, named
from tests.corpus.layers import OUTAGE_FEED
from tests.corpus.vector_cases import nested

# An open ring in central Irkutsk as [lat, lng, lat, lng, …].
RING = [52.28, 104.28, 52.28, 104.29, 52.285, 104.29, 52.285, 104.28]
START, END = 1_793_520_000_000, 1_793_563_200_000  # 2026-11-01 08:00 and 20:00 UTC, in ms


def item(outage_id, area=RING, start=START, end=END, kind="вода", **extra) -> dict:
    return {"id": outage_id, "info": {"kind": kind}, "period": {"from": start, "to": end}, "area": area, **extra}


def document(items: list) -> bytes:
    return json.dumps({"data": {"items": items}}, ensure_ascii=False).encode()


def feed(id: str, data: bytes, records: int, **kwargs) -> Case:
    return Case(
        id, OUTAGE_FEED, named("outages.json", data), records, layer="outage_areas", names="outages.json", **kwargs
    )


CASES = [
    feed("json-good", document([item("O-1"), item("O-2")]), 2, expect="records", published=2),
    feed("json-empty-items", document([]), 0, published=0),
    feed("json-not-json", b'{"data": {"items": [', 0, expect="file"),
    feed(
        "json-records-path-missing", json.dumps({"data": {"rows": []}}).encode(), 0, expect="file", reason="data.items"
    ),
    feed("json-records-not-an-array", json.dumps({"data": {"items": {"O-1": item("O-1")}}}).encode(), 1, expect="file"),
    feed("json-nested-100k-deep", b'{"data": {"items": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}}", 1),
    feed(
        "json-nested-deep-inside-a-record",
        b'{"data": {"items": [{"id": "O-1", "area": ' + nested(50_000)[-200_000:] + b"}]}}",
        1,
    ),
    feed("json-record-not-an-object", document([item("O-1"), "O-2", None]), 3, expect="records", published=1),
    feed(
        "json-odd-coordinate-count",
        document([item("O-1"), item("O-2", area=RING[:-1])]),
        2,
        expect="records",
        published=1,
    ),
    feed(
        "json-too-few-points-for-a-ring",
        document([item("O-1"), item("O-2", area=RING[:4])]),
        2,
        expect="records",
        published=1,
    ),
    feed(
        "json-coordinates-as-text",
        document([item("O-1"), item("O-2", area=" ".join(map(str, RING)))]),
        2,
        expect="records",
        published=1,
    ),
    feed(
        "json-lon-lat-instead-of-lat-lon",
        document([item("O-1"), item("O-2", area=RING[1:] + RING[:1])]),
        2,
        expect="records",
        published=1,
    ),
    feed("json-ring-already-closed", document([item("O-1", area=RING + RING[:2])]), 1, published=1),
    feed(
        "json-epoch-seconds-not-ms",
        document([item("O-1"), item("O-2", start=START // 1000, end=END // 1000)]),
        2,
        published=1,
    ),
    feed("json-times-as-iso-text", document([item("O-1"), item("O-2", start="2026-11-01T08:00:00Z")]), 2),
    feed("json-time-null", document([item("O-1"), item("O-2", start=None)]), 2, published=1, reason="required"),
    feed(
        "json-id-missing", document([item("O-1"), {k: v for k, v in item("O-2").items() if k != "id"}]), 2, published=1
    ),
    feed("json-nested-field-missing", document([item("O-1"), {**item("O-2"), "info": None}]), 2, published=2),
    feed("json-list-where-text-expected", document([item("O-1", kind=["вода", "тепло"])]), 1),
    feed("json-numbers-as-ids", document([item(1), item(2.0)]), 2, published=2),
    feed("json-utf8-bom", b"\xef\xbb\xbf" + document([item("O-1")]), 1),
    feed("json-nan-literal", document([item("O-1")]).replace(str(START).encode(), b"NaN"), 1),
]
