"""Writes the Sofia sample's own fixtures (`sample/`): run it to regenerate them, the output is committed.

Shaped after what Sofia's agencies publish (the notices in ../shared/data/sofia/notices, WZDx 4.2 and
CWZ 1.0 feeds), but the records are our own. The districts are not here: they are real open data,
copied from ../shared/data/sofia/districts by the tests and the README walk-through.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

SAMPLE = Path(__file__).resolve().parent / "sample"
SOFIA = ZoneInfo("Europe/Sofia")


def epoch_ms(day: str, hour: str) -> int:
    """Local Sofia time as the notices write it ("20.03.2026", "09:00") → Unix milliseconds."""
    local = dt.datetime.strptime(f"{day} {hour}", "%d.%m.%Y %H:%M").replace(tzinfo=SOFIA)
    return int(local.timestamp() * 1000)


def flat_lat_lon(ring: list[tuple[float, float]]) -> list[float]:
    """An open ring of (lon, lat) as the flat [lat, lng, lat, lng, …] list outage APIs send."""
    return [value for lon, lat in ring for value in (lat, lon)]


def outages() -> list[dict]:
    """After the notices: a water shut-off by housing blocks, one message with two time spans (two
    records), and a message about nothing on the map (no area: a reject)."""
    druzhba = [(23.3935, 42.6605), (23.3990, 42.6605), (23.3990, 42.6640), (23.3935, 42.6640)]
    stadium = [(23.3330, 42.6865), (23.3370, 42.6865), (23.3370, 42.6890), (23.3330, 42.6890)]
    parking = "Забранява се престоят и паркирането на паркингите на моста пред Националния стадион „Васил Левски“."
    return [
        {
            "id": "SV-2026-0320-1",
            "type": "water-supply",
            "text": "Преустановено водоснабдяване в ж.к. Дружба, до бл. 66, пред бл. 91 и пред бл. 88.",
            "period": {"start": epoch_ms("20.03.2026", "09:00"), "end": epoch_ms("20.03.2026", "17:00")},
            "polygon": flat_lat_lon(druzhba),
        },
        {
            "id": "SO-2026-0205-1",
            "type": "parking-ban",
            "text": parking,
            "period": {"start": epoch_ms("06.02.2026", "15:00"), "end": epoch_ms("06.02.2026", "20:00")},
            "polygon": flat_lat_lon(stadium),
        },
        {
            "id": "SO-2026-0205-2",
            "type": "parking-ban",
            "text": parking,
            "period": {"start": epoch_ms("10.02.2026", "15:00"), "end": epoch_ms("10.02.2026", "20:30")},
            "polygon": flat_lat_lon(stadium),
        },
        {
            "id": "SO-2026-0301-9",
            "type": "parking-ban",
            "text": "Съобщение без засегнат район.",
            "period": {"start": epoch_ms("01.03.2026", "08:00"), "end": None},
            "polygon": None,
        },
    ]


def road_event(event_id: str, road: str, coordinates: list, start: str, end: str, **properties) -> dict:
    core = {
        "data_source_id": "sofia-roads",
        "event_type": properties.pop("event_type", "work-zone"),
        "road_names": [road],
        "direction": properties.pop("direction", "eastbound"),
        "description": properties.pop("description", f"Ремонт на {road}"),
        "update_date": "2026-11-20T08:00:00Z",
    }
    return {
        "id": event_id,
        "type": "Feature",
        "properties": {
            "core_details": core,
            "start_date": start,
            "end_date": end,
            "is_start_date_verified": True,
            "is_end_date_verified": False,
            "is_start_position_verified": True,
            "is_end_position_verified": True,
            "location_method": "channel-device-method",
            "vehicle_impact": properties.pop("vehicle_impact", "some-lanes-closed"),
            **properties,
        },
        "geometry": {"type": "LineString", "coordinates": coordinates},
    }


def feed_info(version: str) -> dict:
    return {
        "update_date": "2026-11-20T08:00:00Z",
        "publisher": "Столична община",
        "contact_email": "roads@example.org",
        "version": version,
        "license": "https://creativecommons.org/publicdomain/zero/1.0/",
        "data_sources": [{"data_source_id": "sofia-roads", "organization_name": "Столична община, дирекция Транспорт"}],
    }


def wzdx_feed() -> dict:
    lanes = [{"order": 1, "status": "closed", "type": "general"}, {"order": 2, "status": "open", "type": "general"}]
    events = [
        road_event(
            "SOF-WZ-1",
            "бул. Витоша",
            [[23.3190, 42.6960], [23.3180, 42.6925], [23.3170, 42.6890]],
            "2026-11-23T06:00:00Z",
            "2027-03-31T20:00:00Z",
            direction="southbound",
            vehicle_impact="all-lanes-closed",
            beginning_cross_street="ул. Алабин",
            types_of_work=[{"type_name": "surface-work", "is_architectural_change": False}],
            lanes=[{"order": 1, "status": "closed", "type": "general"}],
        ),
        road_event(
            "SOF-WZ-2",
            "бул. Цар Освободител",
            [[23.3290, 42.6940], [23.3335, 42.6930], [23.3380, 42.6920]],
            "2026-11-01T06:00:00Z",
            "2026-12-20T18:00:00Z",
            reduced_speed_limit_kph=30,
            beginning_cross_street="ул. Раковски",
            ending_cross_street="бул. Васил Левски",
            types_of_work=[
                {"type_name": "surface-work", "is_architectural_change": False},
                {"type_name": "painting", "is_architectural_change": False},
            ],
            lanes=lanes,
        ),
        road_event(
            "SOF-WZ-3",
            "бул. Драган Цанков",
            [[23.3420, 42.6750], [23.3465, 42.6725], [23.3510, 42.6700]],
            "2025-06-01T06:00:00Z",
            "2028-12-31T20:00:00Z",
            description="Строителство на метро",
            direction="northbound",
            types_of_work=[{"type_name": "roadway-creation", "is_architectural_change": True}],
            lanes=lanes,
        ),
        # a spot work zone: its line is one point twice; on a line layer, a reject that says so
        road_event(
            "SOF-WZ-4",
            "ул. Граф Игнатиев",
            [[23.3300, 42.6900], [23.3300, 42.6900]],
            "2026-11-25T07:00:00Z",
            "2026-11-25T15:00:00Z",
            vehicle_impact="some-lanes-closed",
        ),
        road_event(
            "SOF-DT-1",
            "ул. Шипка",
            [[23.3340, 42.6945], [23.3390, 42.6960]],
            "2026-11-23T06:00:00Z",
            "2027-03-31T20:00:00Z",
            event_type="detour",
            vehicle_impact="unknown",
        ),
    ]
    return {"feed_info": feed_info("4.2"), "type": "FeatureCollection", "features": events}


def cwz_feed() -> dict:
    """CWZ 1.0 (the WZDx successor): the same road events, a version of its own."""
    events = [
        road_event(
            "SOF-CWZ-1",
            "бул. Дондуков",
            [[23.3260, 42.6985], [23.3335, 42.6988], [23.3410, 42.6990]],
            "2026-11-15T06:00:00Z",
            "2027-01-15T20:00:00Z",
            vehicle_impact="all-lanes-closed",
            types_of_work=[{"type_name": "below-road-work", "is_architectural_change": False}],
        ),
        road_event(
            "SOF-CWZ-2",
            "ул. Оборище",
            [[23.3400, 42.6960], [23.3450, 42.6965]],
            "2026-11-15T06:00:00Z",
            "2027-01-15T20:00:00Z",
        ),
    ]
    return {"feed_info": feed_info("1.0"), "type": "FeatureCollection", "features": events}


STREET_WORKS = [
    # (work no, kind, start, end, crew, lon, lat): placeholders as the contractor's register writes them
    ("СР-101", "ВиК", "02.11.2026", "30.11.2026", "4", 23.3225, 42.6935),
    ("СР-102", "Топлофикация", "10.11.2026", "няма данни", "6", 23.3290, 42.6975),
    ("СР-103", "Електро", "15.11.2026", "15.12.2026", "н/д", 23.3410, 42.6890),
    ("СР-104", "ВиК", "20.11.2026", "-", "-", 23.3480, 42.6760),
    ("СР-105", "Топлофикация", "31.02.2026", "10.03.2026", "3", 23.3355, 42.6965),
    ("СР-106", "Електро", "25.11.2026", "05.12.2026", "2", 23.3160, 42.6880),
]


def street_works(folder: Path) -> None:
    """A contractor's Shapefile in BGS2005 / CCS2005 (EPSG:7801), said only by its .prj."""
    import fiona
    import pyproj

    to_local = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:7801", always_xy=True)
    schema = {
        "geometry": "Point",
        "properties": {"WORK_NO": "str:12", "KIND": "str:20", "START": "str:12", "END": "str:12", "CREW": "str:10"},
    }
    options = {"driver": "ESRI Shapefile", "schema": schema, "encoding": "utf-8", "crs": "EPSG:7801"}
    with fiona.open(folder / "street_works.shp", "w", **options) as sink:
        for number, kind, start, end, crew, lon, lat in STREET_WORKS:
            x, y = to_local.transform(lon, lat)
            sink.write(
                {
                    "geometry": {"type": "Point", "coordinates": (round(x, 2), round(y, 2))},
                    "properties": {"WORK_NO": number, "KIND": kind, "START": start, "END": end, "CREW": crew},
                }
            )


def permits_workbook() -> bytes:
    """Excavation permits: date cells, numbers typed as text, placeholders, and a stale <dimension>
    (the exporter says A1:H5 while the sheet holds 13 rows)."""
    import openpyxl

    book = openpyxl.Workbook()
    book.properties.created = book.properties.modified = dt.datetime(2026, 11, 20, 8, 0)  # same bytes each run
    sheet = book.active
    sheet.title = "Разрешения"
    sheet.append(["Разрешение №", "Вид", "Адрес", "Начало", "Край", "Дължина, м", "lon", "lat"])
    kinds = ["ВиК", "Топлофикация", "Електро"]
    for n in range(1, 13):
        start = dt.datetime(2026, 11, n, 8, 0)
        end = "няма данни" if n % 5 == 0 else dt.datetime(2026, 12, n + 5, 18, 0)
        length = f"{n * 12},5" if n % 2 else n * 10
        sheet.append(
            [f"РР-{n:03d}", kinds[n % 3], f"ул. Пример {n}", start, end, length, 23.30 + n * 0.004, 42.680 + n * 0.002]
        )
    sheet.append(["РР-013", "ВиК", "ул. Пример 13", "няма данни", None, "н/д", 23.36, 42.70])
    buffer = io.BytesIO()
    book.save(buffer)
    source, target = zipfile.ZipFile(io.BytesIO(buffer.getvalue())), io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:H5"', data)
            if item.filename == "docProps/core.xml":  # openpyxl stamps the time of saving
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2026-11-20T08:00:00Z", data)
            item.date_time = (2026, 11, 20, 8, 0, 0)
            out.writestr(item, data)
    return target.getvalue()


def main() -> None:
    for folder in ("outages", "closures", "works", "permits"):
        (SAMPLE / folder).mkdir(parents=True, exist_ok=True)
    dump = lambda value: json.dumps(value, ensure_ascii=False, indent=1) + "\n"  # noqa: E731
    (SAMPLE / "outages" / "notices.json").write_text(dump(outages()), encoding="utf-8")
    (SAMPLE / "closures" / "wzdx_feed.geojson").write_text(dump(wzdx_feed()), encoding="utf-8")
    (SAMPLE / "closures" / "cwz_feed.geojson").write_text(dump(cwz_feed()), encoding="utf-8")
    street_works(SAMPLE / "works")
    (SAMPLE / "permits" / "permits.xlsx").write_bytes(permits_workbook())


if __name__ == "__main__":
    main()
