"""Catalog layers the corpus delivers into: one per shape of source a city has."""

from __future__ import annotations

from tests.test_bad_input import WORKS_YAML, ZONES_YAML

WORKS = {"works": WORKS_YAML.replace("{crs}", "msk38-3")}
WORKS_XLSX = {
    "works": WORKS_YAML.replace("{crs}", "msk38-3").replace(
        "path: works.csv\n    format: csv", "path: works.xlsx\n    format: xlsx"
    )
}
ZONES_SHP = {"zones": ZONES_YAML}

# Typed fields from a register: integers, numbers, booleans and dates as clerks type them.
BUILDINGS = {
    "buildings": """
title: {ru: Здания, en: Buildings}
description: {ru: Тестовый реестр, en: Test register}
domain: reference
geometry_type: Point
id_field: building_id
fields:
  - {name: building_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: floors, type: integer, title: {ru: Этажность, en: Floors}}
  - {name: area, type: number, title: {ru: Площадь, en: Area}}
  - {name: heated, type: boolean, title: {ru: Отопление, en: Heated}}
  - {name: built, type: date, dates: {earliest: 1800-01-01}, title: {ru: Дата ввода, en: Built}}
sources:
  - path: buildings.csv
    format: csv
    encoding: utf-8
    delimiter: ";"
    crs: EPSG:4326
    columns: {Код: building_id, Этажей: floors, Площадь: area, Отопление: heated, Введён: built}
    geometry: {x: Долгота, y: Широта}
"""
}
BUILDINGS_HEADER = "Код;Этажей;Площадь;Отопление;Введён;Долгота;Широта"

# Lines given as WKT in lon/lat (a closures register).
STREETS = {
    "streets": """
title: {ru: Участки, en: Sections}
description: {ru: Тестовые участки, en: Test sections}
domain: closures
geometry_type: LineString
id_field: section_id
fields:
  - {name: section_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: road, type: string, title: {ru: Улица, en: Road}}
sources:
  - path: sections.csv
    format: csv
    encoding: utf-8
    delimiter: ";"
    columns: {Код: section_id, Улица: road}
    geometry: {wkt: WKT}
"""
}
STREETS_HEADER = "Код;Улица;WKT"
LINE = "LINESTRING (104.28 52.28, 104.29 52.285)"

# A zone set as GeoJSON in lon/lat.
ZONES_GEOJSON = {
    "zones": """
title: {ru: Зоны, en: Zones}
description: {ru: Тестовые зоны, en: Test zones}
domain: zones
geometry_type: MultiPolygon
id_field: zone_no
fields:
  - {name: zone_no, type: integer, required: true, title: {ru: Номер, en: Number}}
  - {name: name, type: string, title: {ru: Имя, en: Name}}
sources:
  - path: zones.geojson
    format: geojson
    columns: {no: zone_no, name: name}
"""
}

# Road events from a WZDx feed.
CLOSURES_WZDX = {
    "closures": """
title: {ru: Перекрытия, en: Closures}
description: {ru: Тестовые перекрытия, en: Test closures}
domain: closures
geometry_type: LineString
id_field: closure_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: closure_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: road_name, type: string, title: {ru: Улица, en: Road}}
  - {name: closure_type, type: string, allowed: [full, partial], title: {ru: Тип, en: Type}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
sources:
  - path: feed.geojson
    format: wzdx
    select: {event_type: work-zone}
    columns: {id: closure_id, road_names: road_name, vehicle_impact: closure_type, start_date: start_time,
              end_date: end_time}
    values: {closure_type: {all-lanes-closed: full, some-lanes-closed: partial}}
"""
}

# Districts with their deputies joined from a table.
DISTRICTS_JOINED = {
    "districts": """
title: {ru: Округа, en: Districts}
description: {ru: Тестовые округа, en: Test districts}
domain: zones
geometry_type: MultiPolygon
id_field: district_no
fields:
  - {name: district_no, type: integer, required: true, title: {ru: Номер, en: Number}}
  - {name: deputy, type: string, title: {ru: Депутат, en: Deputy}}
sources:
  - path: districts.geojson
    format: geojson
    columns: {no: district_no}
    joins:
      - path: deputies.csv
        format: csv
        delimiter: ";"
        match: {district_no: Округ}
        columns: {ФИО: deputy}
"""
}

# Outage notices placed by an address register.
ADDRESSES = """
title: {ru: Адреса, en: Addresses}
description: {ru: Тестовый реестр, en: Test register}
domain: reference
geometry_type: Point
id_field: address_id
access: internal
fields:
  - {name: address_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: street, type: string, required: true, title: {ru: Улица, en: Street}}
  - {name: house, type: string, required: true, title: {ru: Дом, en: House}}
  - {name: full_address, type: string, title: {ru: Адрес, en: Address}}
sources:
  - path: addresses.csv
    format: csv
    delimiter: ";"
    crs: EPSG:4326
    columns: {Код: address_id, Улица: street, Дом: house, Адрес: full_address}
    geometry: {x: lon, y: lat}
"""
NOTICES = {
    "addresses": ADDRESSES,
    "outages": """
title: {ru: Отключения, en: Outages}
description: {ru: Тестовые отключения, en: Test outages}
domain: outages
geometry_type: Point
id_field: outage_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: outage_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: address, type: string, required: true, title: {ru: Адрес, en: Address}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
sources:
  - path: notices.txt
    format: notices
    delimiter: "\\t"
    date_format: "%d.%m.%Y %H:%M"
    columns: {record_id: outage_id, Адреса: address, Начало: start_time, Окончание: end_time}
    geometry: {address: Адреса, geocode: addresses}
""",
}
ADDRESS_REGISTER = "\n".join(
    [
        "Код;Улица;Дом;Адрес;lon;lat",
        "A-1;ул. Ленина;1;ул. Ленина, 1;104.281;52.287",
        "A-2;ул. Ленина;3;ул. Ленина, 3;104.282;52.287",
        "A-3;ул. Ленина;5;ул. Ленина, 5;104.283;52.287",
        "A-4;ул. Мира;2;ул. Мира, 2;104.284;52.288",
        "A-5;ул. Мира;4;ул. Мира, 4;104.285;52.288",
    ]
).encode()
NOTICES_HEADER = "Номер\tАдреса\tНачало\tОкончание"

# An outage feed: a JSON array of records, polygons as flat [lat, lng, …] lists, times in epoch ms.
OUTAGE_FEED = {
    "outage_areas": """
title: {ru: Зоны отключений, en: Outage areas}
description: {ru: Тестовые зоны, en: Test areas}
domain: outages
geometry_type: MultiPolygon
id_field: outage_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: outage_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: kind, type: string, title: {ru: Вид, en: Kind}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Конец, en: End}}
sources:
  - path: outages.json
    format: json
    records: data.items
    date_format: epoch_ms
    columns: {id: outage_id, info.kind: kind, period.from: start_time, period.to: end_time}
    geometry: {coordinates: area, kind: polygon, coordinate_order: lat_lon}
"""
}
