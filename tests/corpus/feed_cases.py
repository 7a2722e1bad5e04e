"""Feeds and workbooks: WZDx road events, XLSX registers, outage notices with address lists."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path

from tests.corpus import Case, files, named
from tests.corpus.layers import ADDRESS_REGISTER, CLOSURES_WZDX, NOTICES, NOTICES_HEADER, WORKS_XLSX
from tests.test_bad_input import GOOD_POINT, HEADER

# A street in central Irkutsk, lon/lat.
ROAD = [[104.28, 52.28], [104.285, 52.283], [104.29, 52.285]]


def event(
    event_id: str, start: str | None = "2026-11-01T08:00:00Z", end: str | None = "2026-11-20T18:00:00Z", **change
) -> dict:
    properties = {
        "core_details": {
            "data_source_id": "1",
            "event_type": "work-zone",
            "road_names": ["ул. Ленина"],
            "direction": "northbound",
        },
        "start_date": start,
        "end_date": end,
        "location_method": "channel-device-method",
        "vehicle_impact": "all-lanes-closed",
        "is_start_date_verified": False,
        "is_end_date_verified": False,
        "is_start_position_verified": False,
        "is_end_position_verified": False,
    }
    properties.update(change.pop("properties", {}))
    return {
        "id": event_id,
        "type": "Feature",
        "properties": properties,
        "geometry": change.pop("geometry", {"type": "LineString", "coordinates": ROAD}),
    }


def feed(features: list, version: str = "4.2", **feed_info) -> bytes:
    info = {
        "update_date": "2026-11-01T08:00:00Z",
        "publisher": "Test",
        "version": version,
        "data_sources": [{"data_source_id": "1", "organization_name": "Город"}],
        **feed_info,
    }
    return json.dumps(
        {"feed_info": info, "type": "FeatureCollection", "features": features}, ensure_ascii=False
    ).encode()


def wzdx(id: str, data: bytes, records: int, **kwargs) -> Case:
    return Case(
        id, CLOSURES_WZDX, named("feed.geojson", data), records, layer="closures", names="feed.geojson", **kwargs
    )


def spot(event_id: str) -> dict:
    return event(event_id, geometry={"type": "LineString", "coordinates": [ROAD[0], ROAD[0]]})


WZDX_CASES = [
    wzdx("wzdx-good", feed([event("E-1"), event("E-2")]), 2, expect="records", published=2),
    wzdx("wzdx-features-empty", feed([]), 0, published=0),
    wzdx("wzdx-version-3", feed([event("E-1")], version="3.1"), 1, expect="file", reason="version"),
    wzdx("wzdx-version-missing", feed([event("E-1")], version=""), 1, expect="file", reason="version"),
    wzdx("wzdx-version-4-0", feed([event("E-1")], version="4.0"), 1, expect="records", published=1),
    wzdx("cwz-1-0", feed([event("E-1")], version="1.0"), 1, expect="records", published=1),
    wzdx("wzdx-not-json", b'{"feed_info": {"version": "4.2"}, "features": [', 0, expect="file"),
    wzdx("wzdx-top-level-array", json.dumps([event("E-1")]).encode(), 1, expect="file"),
    wzdx("wzdx-features-not-a-list", feed([]).replace(b'"features": []', b'"features": {"E-1": {}}'), 1),
    wzdx("wzdx-feature-is-null", feed([event("E-1"), None, 7]), 3, expect="records", published=1),
    wzdx(
        "wzdx-event-without-core-details",
        feed([event("E-1"), event("E-2", properties={"core_details": None})]),
        2,
        published=1,
    ),
    wzdx("wzdx-start-date-missing", feed([event("E-1"), event("E-2", start=None)]), 2, expect="records", published=1),
    wzdx("wzdx-date-not-iso", feed([event("E-1"), event("E-2", start="yesterday")]), 2, expect="records", published=1),
    wzdx(
        "wzdx-end-before-start",
        feed([event("E-1"), event("E-2", start="2026-11-20T00:00:00Z", end="2026-11-01T00:00:00Z")]),
        2,
        published=1,
    ),
    wzdx("wzdx-epoch-start-date", feed([event("E-1"), event("E-2", start=1667612760000)]), 2),
    wzdx(
        "wzdx-geometry-strings",
        feed([event("E-1"), event("E-2", geometry={"type": "LineString", "coordinates": "104.28 52.28"})]),
        2,
        published=1,
    ),
    wzdx("wzdx-geometry-null", feed([event("E-1"), event("E-2", geometry=None)]), 2, published=1),
    wzdx("wzdx-spot-zone-two-identical-points", feed([event("E-1"), spot("E-2")]), 2, expect="records"),
    wzdx("wzdx-multipoint-geometry", feed([event("E-1", geometry={"type": "MultiPoint", "coordinates": ROAD})]), 1),
    wzdx(
        "wzdx-outside-extent",
        feed(
            [
                event("E-1"),
                event("E-2", geometry={"type": "LineString", "coordinates": [[-97.7, 30.2], [-97.71, 30.21]]}),
            ]
        ),
        2,
        published=1,
        reason="extent",
    ),
    wzdx("wzdx-duplicate-event-ids", feed([event("E-1"), event("E-1")]), 2, published=1),
    wzdx(
        "wzdx-unknown-vehicle-impact",
        feed([event("E-1", properties={"vehicle_impact": "unknown"}), event("E-2")]),
        2,
        published=1,
    ),
    wzdx(
        "wzdx-other-event-types-skipped",
        feed(
            [
                event("E-1"),
                event(
                    "D-1",
                    properties={"core_details": {"event_type": "detour", "data_source_id": "1", "road_names": []}},
                ),
            ]
        ),
        2,
        published=1,
    ),
]


def workbook(rows: list[list], stale_dimension: str | None = None, sheet: str = "Лист1") -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = sheet
    for values in rows:
        book.active.append(values)
    buffer = io.BytesIO()
    book.save(buffer)
    if stale_dimension is None:
        return buffer.getvalue()
    source, target = zipfile.ZipFile(io.BytesIO(buffer.getvalue())), io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'<dimension ref="[^"]*"', f'<dimension ref="{stale_dimension}"'.encode(), data)
            out.writestr(item, data)
    return target.getvalue()


def xrow(work_id: str, network="Теплосеть", start="01.11.2026", end="10.11.2026", wkt=GOOD_POINT) -> list:
    return [work_id, network, start, end, wkt]


XHEADER = HEADER.split(";")


def xlsx(id: str, data: bytes, records: int, **kwargs) -> Case:
    return Case(id, WORKS_XLSX, named("works.xlsx", data), records, names="works.xlsx", **kwargs)


XLSX_CASES = [
    xlsx("xlsx-good", workbook([XHEADER, xrow("W-1"), xrow("W-2")]), 2, expect="records", published=2),
    xlsx(
        "xlsx-stale-dimension",
        workbook([XHEADER, *[xrow(f"W-{n}") for n in range(1, 41)]], "A1:E10"),
        40,
        expect="records",
        published=40,
    ),
    xlsx("xlsx-not-a-workbook", "это не книга Excel".encode(), 0, expect="file", reason="XLSX"),
    xlsx(
        "xlsx-csv-renamed",
        "\n".join([HEADER, "W-1;Теплосеть;01.11.2026;;" + GOOD_POINT]).encode("cp1251"),
        1,
        expect="file",
    ),
    xlsx("xlsx-zip-without-workbook", b"PK\x05\x06" + b"\x00" * 18, 0, expect="file"),
    xlsx("xlsx-empty-sheet", workbook([]), 0, expect="file", reason="empty"),
    xlsx("xlsx-header-only", workbook([XHEADER]), 0, published=0),
    xlsx(
        "xlsx-date-cells",
        workbook([XHEADER, xrow("W-1", start=dt.datetime(2026, 11, 1, 9)), xrow("W-2")]),
        2,
        published=2,
    ),
    xlsx("xlsx-number-id-cells", workbook([XHEADER, xrow(101), xrow(102.0)]), 2, published=2),
    xlsx(
        "xlsx-formula-without-cached-value",
        workbook([XHEADER, xrow('=CONCAT("W-",1)'), xrow("W-2")]),
        2,
        expect="records",
    ),
    xlsx(
        "xlsx-blank-rows-and-padding",
        workbook([XHEADER, xrow("W-1"), [], [None, None, None], xrow("W-2")]),
        2,
        published=2,
    ),
    xlsx(
        "xlsx-duplicate-column",
        workbook([[*XHEADER, "Номер"], [*xrow("W-1"), "W-9"]]),
        1,
        expect="file",
        reason="Номер",
    ),
    xlsx("xlsx-header-blank-cells", workbook([[*XHEADER, None, "Прим"], [*xrow("W-1"), None, "x"]]), 1, published=1),
]


def notices(lines: list[str]) -> bytes:
    return "\n".join([NOTICES_HEADER, *lines]).encode()


def notice(id: str, lines: list[str], records: int, **kwargs) -> Case:
    write = files({"addresses.csv": ADDRESS_REGISTER, "notices.txt": notices(lines)})
    return Case(id, NOTICES, write, records, layer="outages", names="notices.txt", prepare=("addresses",), **kwargs)


WHEN = "\t01.11.2026 09:00\t01.11.2026 17:00"
NOTICE_CASES = [
    notice("notice-good", ["N-1\tул. Ленина, 1, 3, 5" + WHEN], 3, expect="records", published=3),
    notice("notice-unknown-house", ["N-1\tул. Ленина, 1, 99" + WHEN], 2, expect="records", published=1),
    notice(
        "notice-unknown-street",
        ["N-1\tул. Несуществующая, 1, 2" + WHEN, "N-2\tул. Мира, 2" + WHEN],
        3,
        expect="records",
        published=1,
    ),
    notice("notice-fragment-not-understood", ["N-1\tул. Ленина, 1; ??? ; ул. Мира, 4" + WHEN], 3, expect="records"),
    notice("notice-no-address", ["N-1\t" + WHEN, "N-2\tул. Мира, 2" + WHEN], 2, expect="records", published=1),
    notice(
        "notice-bad-date-many-buildings",
        ["N-1\tул. Ленина, 1, 3, 5\t31.11.2026 09:00\t"],
        3,
        expect="records",
        published=0,
    ),
    notice("notice-range-of-houses", ["N-1\tул. Ленина, 1-5" + WHEN], 3, expect="records", published=3),
    notice(
        "notice-same-building-twice",
        ["N-1\tул. Ленина, 1" + WHEN, "N-1\tул. Ленина, 1" + WHEN],
        2,
        expect="records",
        published=1,
    ),
    notice("notice-binary", [], 0, expect=None),
]


def _binary_notices(case: Case) -> Case:
    def write(folder: Path) -> None:
        case.write(folder)
        (folder / "notices.txt").write_bytes(bytes(range(256)) * 16)

    return Case(case.id, case.layers, write, 0, "file", case.layer, case.names, prepare=case.prepare)


NOTICE_CASES[-1] = _binary_notices(NOTICE_CASES[-1])

CASES = WZDX_CASES + XLSX_CASES + NOTICE_CASES
