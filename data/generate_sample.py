"""Seeded, deterministic generator of the bundled sample city, Irkutsk: `python data/generate_sample.py`.

Writes data/sample/irkutsk/ exactly as the sources of layers/*.yaml declare them (paths, formats,
encodings, delimiters, Russian column names and values). Street names are real, geometry is synthetic
(see data/_sample_geometry.py). Every file has its own random stream, so editing one keeps the others.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import uuid
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _sample_geometry as geo  # noqa: E402
import fiona  # noqa: E402
import shapely  # noqa: E402
from shapely.geometry import MultiPolygon, Point, mapping  # noqa: E402
from shapely.geometry import shape as from_geojson  # noqa: E402
from shapely.geometry.polygon import orient  # noqa: E402
from shapely.ops import substring  # noqa: E402

SEED = 38
OUT = geo.REPO / "data" / "sample" / "irkutsk"
TODAY = datetime(2026, 11, 24, 12, 0)  # anchor "now": a good share of permits, closures, outages is active
FIRST, LAST = date(2026, 9, 1), date(2027, 2, 28)

NETWORKS = {"heat": ["Теплосеть", "Тепловые сети"], "water": ["Водопровод", "Водоснабжение"], "sewer": ["Канализация"],
            "power": ["Электросети", "Электроснабжение"], "gas": ["Газопровод", "Газоснабжение"],
            "telecom": ["Связь", "Сети связи"]}
WORK_KINDS = {"planned": ["Плановые", "Плановый ремонт"], "emergency": ["Аварийные", "Аварийный ремонт"]}
STATUSES = {"issued": ["Выдан", "Выдано"], "active": ["В работе", "Ведутся работы"],
            "completed": ["Завершено", "Закрыт"], "suspended": ["Приостановлено"]}
VODOKANAL, BEK = "МУП «Водоканал» г. Иркутска", "ООО «Байкальская энергетическая компания»"
IESK, GAS, KGO = "ОАО «ИЭСК»", "АО «Иркутскоблгаз»", "Комитет городского обустройства администрации г. Иркутска"
CONTRACTORS = {"heat": [BEK, "ООО «Теплоремстрой»"], "water": [VODOKANAL, "ООО «Водстрой-38»"],
               "sewer": [VODOKANAL], "power": [IESK, "ООО «Электромонтаж-38»"], "gas": [GAS],
               "telecom": ["ПАО «Ростелеком»", "ООО «СвязьМонтаж»"]}
RESOURCES = {  # resource: (Russian values, utility, reasons)
    "cold_water": (["Холодная вода", "ХВС"], VODOKANAL, ["Ремонт водопроводного ввода", "Порыв водовода"]),
    "hot_water": (["Горячая вода", "ГВС"], BEK, ["Ремонт трубопровода ГВС", "Гидравлические испытания"]),
    "heating": (["Отопление", "Теплоснабжение"], BEK, ["Порыв на тепловой сети", "Замена участка теплотрассы"]),
    "power": (["Электроэнергия", "Электроснабжение"], IESK, ["Ремонт ТП-1245", "Замена кабельной линии 0,4 кВ"]),
    "gas": (["Газ", "Газоснабжение"], GAS, ["Ремонт газопровода низкого давления", "ТО газового оборудования"])}
NOTICE_PREFIX = {VODOKANAL: "ВК", BEK: "БЭК", IESK: "ИЭСК", GAS: "ИОГ"}


def rng_for(name: str) -> random.Random:
    return random.Random(f"{SEED}-{name}")


def dmy(value, time: bool = False) -> str:
    return value.strftime("%d.%m.%Y %H:%M" if time else "%d.%m.%Y") if value else ""


def wkt(geom) -> str:
    return shapely.to_wkt(geom, rounding_precision=2, trim=False)


# ------------------------------------------------------------------------------- planted coordination

def planted_cases(city: geo.City) -> dict:
    """Records planted for the conflict rules of layers/conflicts.yaml, appended after each file's generated
    rows (which stay as they were). All in 2027, after the generated events, so nothing else answers them."""
    free = sorted((s for s in city.streets if s.line is not None and s.grid is None), key=lambda s: s.full)
    plain = lambda street: [h for h in city.houses_of(street) if not h.suffix]  # noqa: E731
    nearest = lambda street, point: min(plain(street), key=lambda h: point.distance(Point(h.x, h.y)))  # noqa: E731
    # a closure of 102 days (over the 45 of long_closure); a permit on its line after it ended (no closure then)
    road = free[0]
    closed = substring(road.line, 60, 460)
    on_road = closed.interpolate(0.5, normalized=True)
    closure = ["ПД-2026-201", road.full, "Полное перекрытие", "Реконструкция теплотрассы", BEK,
               "10.11.2026 08:00", "20.02.2027 20:00", "Нет", "", wkt(closed)]
    # two excavations 8 m apart on another street, overlapping 20-25 January 2027
    street = free[3]
    first, second = street.line.interpolate(120), street.line.interpolate(128)
    near_first = nearest(street, first)
    permits = [
        ["ЗР-2026-0901", "Водопровод", "Плановые", "Выдан", f"{street.full}, в районе д. {near_first.house}",
         VODOKANAL, "+7 (3952) 21-46-01", "10.01.2027", "25.01.2027", "", wkt(first)],
        ["ЗР-2026-0902", "Тепловые сети", "Плановые", "Выдан", f"{street.full}, в районе д. {near_first.house}",
         BEK, "+7 (3952) 79-04-02", "20.01.2027", "05.02.2027", "", wkt(second)],
        ["ЗР-2026-0903", "Сети связи", "Плановые", "Выдан", f"{road.full}, в районе д. {nearest(road, on_road).house}",
         "ПАО «Ростелеком»", "+7 (3952) 25-00-03", "22.02.2027", "27.02.2027", "", wkt(on_road)],
    ]
    # an outage with no works near it, and one beside the excavations. March 2027, on a street over 1.5 km from
    # the emergency works published without an end (an event without an end lasts, so they would answer it)
    far = city.street("ул. Лермонтова")
    lonely = plain(far)[:2]
    notices = [
        ["ВК-2001", "Холодная вода", "Плановое", f"{far.full}, {', '.join(h.house for h in lonely)}",
         "10.03.2027 09:00", "10.03.2027 17:00", VODOKANAL, "Ремонт водопроводного ввода"],
        ["ВК-2002", "Холодная вода", "Плановое", f"{street.full}, {near_first.house}",
         "15.01.2027 09:00", "15.01.2027 17:00", VODOKANAL, "Ремонт водопроводного ввода"],
    ]
    expected = {
        "overlapping_excavations": [["ЗР-2026-0901", "ЗР-2026-0902"]],
        "works_without_closure": ["ЗР-2026-0903"],
        "outage_without_works": ["ВК-2001"],
        "long_closure": ["ПД-2026-201"],
        "answered": {"outage_without_works": ["ВК-2002"]},  # ЗР-2026-0901 is beside it that day
        "outage_buildings": {"ВК-2001": len(lonely), "ВК-2002": 1},
    }
    return {"permits": permits, "closures": [closure], "notices": notices, "expected": expected}


def planted_zones(planted: dict) -> dict:
    """The zones each planted permit and closure touches, from the zone files as written (in МСК): what the
    pipeline's responsibility fields must say after reading, reprojecting and intersecting them."""
    with fiona.open(OUT / "zones/election_districts.shp") as src:
        districts = [(str(f["properties"]["OKRUG_NO"]), from_geojson(f["geometry"])) for f in src]
    police = json.loads((OUT / "zones/police_precincts.geojson").read_text(encoding="utf-8"))["features"]
    companies = json.loads((OUT / "zones/management_companies.geojson").read_text(encoding="utf-8"))["features"]
    sets = {"district_no": sorted(districts, key=lambda zone: int(zone[0])),
            "precinct_id": sorted((f["properties"]["uchastok"], from_geojson(f["geometry"])) for f in police),
            "company_id": sorted((f["properties"]["id"], geo.to_msk(from_geojson(f["geometry"]))) for f in companies)}
    events = {row[0]: shapely.from_wkt(row[10]) for row in planted["permits"]}
    events |= {row[0]: shapely.from_wkt(row[9]) for row in planted["closures"]}
    return {event: {field: ", ".join(code for code, zone in zones if zone.intersects(geom))
                    for field, zones in sets.items()} for event, geom in events.items()}


# ---------------------------------------------------------------------------------------------- files

def write_addresses(city: geo.City) -> dict:
    rng = rng_for("addresses")
    floors = {"Правобережный": [2, 3, 4, 5, 5, 9], "Октябрьский": [5, 5, 9, 9, 10, 12, 16],
              "Свердловский": [5, 5, 9, 9, 12], "Ленинский": [2, 3, 5, 5, 9]}
    rows = []
    for number, h in enumerate(city.houses, 1):
        code = geo.CONTROL["code"] if h.exact else f"A-{number:05d}"
        district = geo.district_of(h.x, h.y)
        digits = 3 if h.exact else 2
        rows.append([code, h.street.full, h.house, f"г. Иркутск, {h.street.full}, д. {h.house}", district,
                     rng.choice(floors[district]), f"{h.y:.{digits}f}", f"{h.x:.{digits}f}"])
    assert len({r[0] for r in rows}) == len(rows) and len({(r[1], r[2]) for r in rows}) == len(rows)
    header = ["Код", "Улица", "Дом", "Адрес", "Район", "Этажность", "X", "Y"]  # X = northing, Y = easting
    geo.write_csv(OUT / "addresses/address_register.csv", header, rows, "utf-8")
    suffixes = [h.suffix for h in city.houses]
    return {"rows": len(rows), "streets": len({h.street.full for h in city.houses}),
            "letter_houses": sum(s in ("А", "Б") for s in suffixes), "corpus_houses": suffixes.count(" к2"),
            "slash_houses": suffixes.count("/1"), "control_code": geo.CONTROL["code"]}


def permit_dates(rng: random.Random) -> tuple[date, date]:
    if rng.random() < 0.45:  # running on the anchor day
        start = TODAY.date() - timedelta(days=rng.randint(0, 40))
        end = TODAY.date() + timedelta(days=rng.randint(0, 45))
    else:
        start = FIRST + timedelta(days=rng.randint(0, 150))
        end = start + timedelta(days=rng.randint(2, 45))
    return max(start, FIRST), min(end, LAST)


def status_of(start, end, rng: random.Random) -> str:
    now = TODAY if isinstance(start, datetime) else TODAY.date()
    if start > now:
        return "issued"
    if end is not None and end < now:
        return "completed"
    return "suspended" if rng.random() < 0.08 else "active"


def write_permits(city: geo.City, planted: list[list[str]]) -> dict:
    rng = rng_for("permits")
    notes = ["", "", "Восстановление благоустройства до 15.05.2027", "Вскрытие асфальтобетонного покрытия",
             "Работы в ночное время", "Согласовано с ГИБДД", "Частичное ограничение движения"]
    rows, unmatched, n = [], [], 150
    for i in range(n):  # the last 30 rows (20 %) have no WKT, only an address; three of those are unknown
        network = rng.choice(list(NETWORKS))
        kind = "emergency" if rng.random() < 0.2 else "planned"
        start, end = permit_dates(rng)
        street, p, near = geo.street_point(city, rng)
        if i >= n - 3:
            address, geom = f"{street.full}, {rng.choice(['', 'д. '])}999", ""
        elif i >= n - 30:
            address, geom = geo.house_address(rng.choice(city.houses), rng), ""
        else:
            address, geom = f"{street.full}, {rng.choice(['', 'в районе д. '])}{near.house}", wkt(p)
        rows.append([f"ЗР-2026-{i + 1:04d}", rng.choice(NETWORKS[network]), rng.choice(WORK_KINDS[kind]),
                     rng.choice(STATUSES[status_of(start, end, rng)]), address, rng.choice(CONTRACTORS[network]),
                     geo.phone(rng), dmy(start), dmy(end), rng.choice(notes), geom])
        if i >= n - 3:
            unmatched.append(rows[-1])
    rng.shuffle(rows)
    with_wkt = [r for r in rows if r[10]]
    bad = with_wkt[10:15]  # deliberately bad rows, each with a usable WKT so only the planted fault counts
    for row in bad[:2]:  # end date before start date
        row[8] = dmy(datetime.strptime(row[7], "%d.%m.%Y") - timedelta(days=rng.randint(3, 20)))
    bad[2][1] = "Ливнёвка"  # network not in the values map
    bad[3][7] = "31.02.2026"  # no such date
    bad[4][0] = with_wkt[0][0]  # the number of a valid row earlier in the file: a duplicate
    rows += planted  # after the shuffle and the bad rows: the generated rows stay as they were
    header = ["Номер ордера", "Вид сетей", "Вид работ", "Статус", "Адрес", "Подрядчик", "Телефон подрядчика",
              "Дата начала", "Дата окончания", "Примечание", "Геометрия (WKT)"]
    geo.write_csv(OUT / "repairs/permits.csv", header, rows, "cp1251")
    flagged = {id(r) for r in bad + unmatched}
    good = [r for r in rows if id(r) not in flagged]
    parse = lambda text: datetime.strptime(text, "%d.%m.%Y").date()  # noqa: E731
    active = sum(r[3] in STATUSES["active"] and parse(r[7]) <= TODAY.date() <= parse(r[8]) for r in good)
    return {"rows": n + len(planted), "planted": len(planted), "with_wkt": len(with_wkt) + len(planted),
            "address_only": n - len(with_wkt),
            "bad_rows": {"end_before_start": 2, "unknown_network": 1, "invalid_date": 1, "duplicate_id": 1},
            "bad_row_ids": {"end_before_start": [r[0] for r in bad[:2]], "unknown_network": [bad[2][0]],
                            "invalid_date": [bad[3][0]], "duplicate_id": [bad[4][0]]},
            "unmatched_addresses": len(unmatched), "unmatched_ids": [r[0] for r in unmatched],
            "valid": len(good), "active_on_anchor": active}


def write_emergency_works(city: geo.City) -> dict:
    rng = rng_for("emergency")
    wb, ws = geo.sheet("Аварийные работы", ["№ ордера", "Сети", "Состояние", "Адрес", "Организация",
                                        "Контактный телефон", "Начало", "Окончание", "WKT (МСК-38)"])
    n, text_dates, address_only, open_ended = 40, {5, 17, 29, 33}, {3, 11, 22, 27, 35, 38}, 0
    for i in range(n):
        network = rng.choice(["heat", "heat", "water", "water", "sewer", "power", "gas"])
        start = TODAY - timedelta(days=rng.uniform(0, 3) if rng.random() < 0.35 else rng.uniform(3, 40))
        start = start.replace(minute=rng.choice([0, 15, 30, 45]), second=0, microsecond=0)
        end = start + timedelta(hours=rng.randint(3, 96))
        if end > TODAY and rng.random() < 0.5 and i not in text_dates:
            end, open_ended = None, open_ended + 1
        street, p, near = geo.street_point(city, rng)
        address = f"{street.full}, {near.house}"
        if i in address_only:
            address = geo.house_address(rng.choice(city.houses), rng)
        status = "active" if end is None or end > TODAY else "completed"
        cells = [start, end] if i not in text_dates else [dmy(start), dmy(end)]
        ws.append([f"АВ-2026-{i + 1:03d}", rng.choice(NETWORKS[network]), rng.choice(STATUSES[status]), address,
                   rng.choice(CONTRACTORS[network]), geo.phone(rng, mobile=rng.random() < 0.3), *cells,
                   "" if i in address_only else wkt(p)])
        for cell in ws[ws.max_row][6:8]:
            if isinstance(cell.value, datetime):
                cell.number_format = "DD.MM.YYYY HH:MM"
    geo.save_xlsx(wb, OUT / "repairs/emergency_works.xlsx")
    return {"rows": n, "with_wkt": n - len(address_only), "address_only": len(address_only),
            "text_dates": len(text_dates), "open_ended": open_ended, "bad_rows": 0, "unmatched_addresses": 0}


def write_wzdx(city: geo.City) -> dict:
    rng = rng_for("wzdx")
    by_grid = {s.grid: s for s in city.streets if s.grid}
    longs, crosses = [v for *_, v in geo.LONG_STREETS], [300, 620, 780, 900]
    blocks = [("long", v, a, b, v + d) for v in longs for a, b in pairwise(crosses) for d in (300, -300)
              if v + d in longs]  # (axis, street, from, to, parallel street of the detour)
    blocks += [("cross", u, a, b, u2) for u, u2 in pairwise(crosses) for a, b in pairwise(longs)]
    chosen = rng.sample(blocks, 6)
    free = [s for s in city.streets if s.line is not None and s.grid is None]
    stamp = lambda dt: dt.strftime("%Y-%m-%dT%H:%M:%S") + "+08:00"  # noqa: E731
    new_id = lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))  # noqa: E731
    reasons = ["Ремонт тепловой сети", "Замена водопроводной линии", "Ремонт дорожного покрытия",
               "Переустройство кабельной линии", "Ремонт канализационного коллектора"]
    features, detours = [], 0

    for k in range(15):
        start = datetime(2026, 11, 1, rng.choice([8, 9, 22])) + timedelta(days=rng.randint(0, 35))
        end = start + timedelta(days=rng.randint(1, 30), hours=rng.choice([0, 8, 10]))
        source = rng.choice(["kgo-irk", "kgo-irk", "vodokanal-irk"])
        zone_id, segments = new_id(), []
        if k < len(chosen):
            axis, fixed, a, b, via = chosen[k]
            street, line, impact = by_grid[(axis, fixed)], geo.grid_line(axis, fixed, a, b), "all-lanes-closed"
            cross = "long" if axis == "cross" else "cross"
            ends = {"beginning_cross_street": by_grid[(cross, a)].full,
                    "ending_cross_street": by_grid[(cross, b)].full}
            legs = geo.detour_legs(axis, fixed, a, b, via)
            parts = {1: [legs], 2: [legs[:2], legs[2:]], 3: [[leg] for leg in legs]}[[3, 1, 2, 3, 2, 1][k]]
            merged = [shapely.line_merge(shapely.MultiLineString([leg for *_, leg in part]), directed=True)
                      for part in parts]
            segments = [(new_id(), [by_grid[(ax, c)].full for ax, c, _ in part], geom)
                        for part, geom in zip(parts, merged, strict=True)]
        else:
            street = rng.choice(free)
            pos = rng.uniform(0, street.line.length - 250)
            line, ends = substring(street.line, pos, pos + rng.uniform(150, min(600, street.line.length - pos))), {}
            impact = rng.choice(["some-lanes-closed", "some-lanes-closed", "alternating-one-way", "all-lanes-closed"])
        core = {"data_source_id": source, "event_type": "work-zone", "road_names": [street.full],
                "direction": geo.direction(line), "name": f"Перекрытие: {street.full}",
                "description": f"{rng.choice(reasons)}, {street.full}",
                "creation_date": stamp(start - timedelta(days=7)), "update_date": stamp(TODAY - timedelta(hours=k))}
        if segments:
            core["related_road_events"] = [{"type": "related-detour", "id": segments[0][0]}]
        props = {"core_details": core, **ends, "start_date": stamp(start), "end_date": stamp(end),
                 "is_start_date_verified": start <= TODAY, "is_end_date_verified": False,
                 "is_start_position_verified": True, "is_end_position_verified": True,
                 "location_method": "channel-device-method", "vehicle_impact": impact,
                 "types_of_work": [{"type_name": "below-road-work", "is_architectural_change": False}]}
        if impact != "all-lanes-closed":
            props["reduced_speed_limit_kph"] = 20
        features.append(geo.wzdx_feature(zone_id, line, props))
        for number, (detour_id, names, geom) in enumerate(segments):
            related = [{"type": "related-work-zone", "id": zone_id}]  # linked exactly like WZDx scenario 4
            if number > 0:
                related.append({"type": "first-in-sequence", "id": segments[0][0]})
            if number + 1 < len(segments):
                related.append({"type": "next-in-sequence", "id": segments[number + 1][0]})
            core = {"data_source_id": source, "event_type": "detour", "related_road_events": related,
                    "road_names": names, "direction": geo.direction(geom),
                    "name": f"Объезд: {street.full} (отрезок {number + 1})",
                    "description": f"Объезд перекрытия {street.full} по {', '.join(names)}"}
            features.append(geo.wzdx_feature(detour_id, geom, {"core_details": core, "start_date": stamp(start),
                                                      "end_date": stamp(end), "is_start_date_verified": start <= TODAY,
                                                      "is_end_date_verified": False}))
            detours += 1
    update = stamp(TODAY.replace(hour=8))
    feed = {"feed_info": {"update_date": update, "publisher": KGO, "contact_name": "Дежурно-диспетчерская служба",
                          "contact_email": "dds@kgo.irk.example", "update_frequency": 300, "version": "4.2",
                          "license": "https://creativecommons.org/publicdomain/zero/1.0/",
                          "data_sources": [{"data_source_id": "kgo-irk", "organization_name": KGO,
                                            "update_frequency": 300, "update_date": update},
                                           {"data_source_id": "vodokanal-irk", "organization_name": VODOKANAL,
                                            "update_frequency": 900, "update_date": update}]},
            "type": "FeatureCollection", "features": features}
    geo.validate_wzdx(feed)
    text = json.dumps(feed, ensure_ascii=False, indent=1)
    (OUT / "closures").mkdir(parents=True, exist_ok=True)
    (OUT / "closures/wzdx_feed.geojson").write_text(text + "\n", encoding="utf-8")
    return {"work_zones": 15, "work_zones_with_detour": len(chosen), "detour_segments": detours,
            "features": len(features)}


def write_municipal_closures(city: geo.City, planted: list[list[str]]) -> dict:
    rng = rng_for("municipal")
    kinds = {"Полное": True, "Полное перекрытие": True, "Частичное": False, "Частичное перекрытие": False,
             "Сужение": False}  # is it a full closure
    reasons = ["Ремонт тепловой сети", "Замена водопроводного ввода", "Ремонт дорожного покрытия",
               "Проведение праздничных мероприятий", "Строительство ливневой канализации", "Ремонт трамвайных путей"]
    organizers = [KGO, VODOKANAL, BEK, "МУП «Иркутскавтодор»", "ПАО «Ростелеком»"]
    rows, n, open_ended = [], 25, {7, 19}
    for i in range(n):
        street = rng.choice([s for s in city.streets if s.line is not None])
        pos = rng.uniform(0, street.line.length - 150)
        line = substring(street.line, pos, pos + rng.uniform(120, min(600, street.line.length - pos)))
        kind = rng.choice(list(kinds) + ["Полное"])
        start = datetime(2026, 11, 4, rng.choice([8, 9, 21, 22])) + timedelta(days=rng.randint(0, 35))
        end = None if i in open_ended else start + timedelta(hours=rng.choice([10, 24, 72, 240, 480]))
        transit = ""
        if kinds[kind] and rng.random() < 0.7:
            a, b = sorted(rng.sample([3, 5, 10, 16, 20, 42, 45, 64, 80, 90], 2))
            transit = f"Автобусы № {a}, {b} следуют по {geo.nearest_other_street(city, street, line).full}"
        rows.append([f"ПД-2026-{i + 101}", street.full, kind, rng.choice(reasons), rng.choice(organizers),
                     dmy(start, True), dmy(end, True), "Да" if kinds[kind] and rng.random() < 0.85 else "Нет",
                     transit, wkt(line)])
    rows += planted
    header = ["Номер", "Улица", "Тип перекрытия", "Причина", "Организатор", "Начало", "Окончание", "Объезд",
              "Изменение маршрутов ОТ", "Геометрия (WKT)"]
    geo.write_csv(OUT / "closures/municipal_closures.csv", header, rows, "cp1251")
    return {"rows": len(rows), "planted": len(planted), "full": sum(kinds[r[2]] for r in rows),
            "partial": sum(not kinds[r[2]] for r in rows),
            "with_detour": sum(r[7] == "Да" for r in rows), "with_transit_changes": sum(bool(r[8]) for r in rows),
            "open_ended": len(open_ended), "bad_rows": 0}


def address_part(street: geo.Street, houses: list[geo.House], rng: random.Random) -> tuple[str, list[str]]:
    """One street of a notice ("ул. Ленина, 1, 3, 5а, 8-14") and the register houses it names."""
    plain = {h.number for h in houses if not h.suffix}
    varied = {h.number for h in houses if h.suffix}
    tokens, refs = [], []
    for _ in range(rng.randint(1, 4)):
        h = rng.choice(houses)
        run = [h.number + 2 * k for k in range(rng.randint(3, 6))]
        if rng.random() < 0.3 and all(n in plain and n not in varied for n in run):
            token, names = f"{run[0]}-{run[-1]}", [str(n) for n in run]  # parity kept: 2-12 = 2, 4, …, 12
        elif h.suffix == " к2":
            token, names = f"д. {h.number} корп. 2", [h.house]
        else:
            token, names = (f"д. {h.house}" if rng.random() < 0.2 else h.house.lower()), [h.house]
        if not set(names) & set(refs):
            tokens.append((h.number, token))
            refs += names
    return f"{street.full}, {', '.join(token for _, token in sorted(tokens))}", refs


def write_notices(city: geo.City, planted: list[list[str]], buildings: int) -> dict:
    rng = rng_for("notices")
    rows, matched, unmatched, n = [], 0, 0, 40
    for i in range(n):
        resource = rng.choice(list(RESOURCES))
        names, org, reasons = RESOURCES[resource]
        parts = []
        for street in rng.sample([s for s in city.streets if len(city.houses_of(s)) > 10], rng.choice([1, 1, 2, 3])):
            part, refs = address_part(street, city.houses_of(street), rng)
            parts.append(part)
            matched += len(refs)
        if i % 8 == 3:  # a building the register does not know
            street = rng.choice([s for s in city.streets if s.line is not None])
            top = max(h.number for h in city.houses_of(street))
            parts.append(f"{street.full}, {rng.choice([top + 20, 999])}" if i != 35 else "ул. Звёздная, 3")
            unmatched += 1
        emergency = rng.random() < 0.3
        day = datetime.combine(TODAY.date() + timedelta(days=rng.randint(-10, 12)), datetime.min.time())
        if emergency:
            start = day + timedelta(hours=rng.randint(0, 23), minutes=rng.choice([0, 15, 30, 45]))
            end = None if rng.random() < 0.4 else start + timedelta(hours=rng.randint(4, 14))
        else:
            style = rng.choice(["day", "day", "night", "multi"])
            start = day + timedelta(hours={"day": rng.choice([9, 10]), "night": 22, "multi": 9}[style])
            end = {"day": day + timedelta(hours=17), "night": day + timedelta(hours=30),
                   "multi": day + timedelta(days=rng.randint(2, 5), hours=18)}[style]
        kind = rng.choice(["Аварийное", "Аварийное отключение"] if emergency else ["Плановое", "Плановое отключение"])
        rows.append([f"{NOTICE_PREFIX[org]}-{1001 + i}", rng.choice(names), kind, "; ".join(parts),
                     dmy(start, True), dmy(end, True), org, rng.choice(reasons)])
    rows += planted
    matched += buildings
    header = ["Номер", "Ресурс", "Вид", "Адреса", "Начало", "Окончание", "Организация", "Причина"]
    geo.write_csv(OUT / "outages/notices.txt", header, rows, "cp1251", delimiter="\t")
    return {"rows": len(rows), "planted": len(planted), "address_references": matched + unmatched,
            "matched_addresses": matched,
            "unmatched_addresses": unmatched, "expected_features": matched,
            "emergency": sum(r[2].startswith("Авар") for r in rows), "open_ended": sum(not r[5] for r in rows)}


def write_election_districts(city: geo.City) -> dict:
    rng = rng_for("election")
    cells = geo.partition(city.polygon, 25, rng)
    path = OUT / "zones/election_districts.shp"
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = {"geometry": "MultiPolygon", "properties": {"OKRUG_NO": "int:4", "NAZVANIE": "str:80"}}
    with fiona.open(path, "w", driver="ESRI Shapefile", schema=schema, encoding="cp1251") as dst:
        for number, cell in enumerate(cells, 1):
            dst.write({"geometry": mapping(MultiPolygon(shapely.get_parts(cell))),
                       "properties": {"OKRUG_NO": number, "NAZVANIE": f"Избирательный округ № {number}"}})
    path.with_suffix(".prj").write_text(geo.MSK.to_wkt("WKT1_ESRI"), encoding="ascii")
    path.with_suffix(".cpg").write_text("CP1251", encoding="ascii")
    with open(path.with_suffix(".dbf"), "r+b") as dbf:  # the dBASE header stamps the write date: pin it
        dbf.seek(1)
        dbf.write(bytes([TODAY.year - 1900, TODAY.month, TODAY.day]))
    parties = ["Единая Россия", "Единая Россия", "КПРФ", "ЛДПР", "Справедливая Россия — За правду", "Новые люди",
               "самовыдвижение"]
    days = ["понедельник", "вторник", "среда", "четверг", "пятница"]
    rows = [[number, geo.person(rng), rng.choice(parties), geo.phone(rng),
             f"{rng.choice(days)} {rng.choice([14, 15, 16])}:00–18:00"]
            for number in range(1, len(cells) + 2)]  # the last row: district 26, which does not exist
    header = ["Номер округа", "ФИО депутата", "Партия", "Телефон приёмной", "Часы приёма"]
    geo.write_csv(OUT / "zones/deputies.csv", header, rows, "cp1251")
    return {"districts": len(cells), "deputy_rows": len(rows), "deputies_without_district": [len(cells) + 1]}


def write_police(city: geo.City) -> dict:
    rng = rng_for("police")
    cells = geo.partition(city.polygon, 40, rng)
    features = [{"type": "Feature", "geometry": mapping(orient(cell, 1.0)),
                 "properties": {"uchastok": f"УУП-{k:02d}", "name": f"Административный участок № {k}"}}
                for k, cell in enumerate(cells, 1)]
    collection = {"type": "FeatureCollection", "name": "police_precincts", "features": features}  # no "crs"
    text = json.dumps(collection, ensure_ascii=False)
    (OUT / "zones/police_precincts.geojson").write_text(text + "\n", encoding="utf-8")
    ranks = ["лейтенант полиции", "старший лейтенант полиции", "капитан полиции", "майор полиции"]
    hours = ["вт, чт 18:00–20:00; сб 11:00–13:00", "пн, ср 17:00–19:00", "вт 10:00–12:00, чт 18:00–20:00"]
    wb, ws = geo.sheet("Участковые", ["Участок", "ФИО", "Звание", "Адрес пункта полиции", "Часы приёма", "Телефон"])
    for k, cell in enumerate(cells, 1):
        station = min(city.houses, key=lambda h: cell.centroid.distance(Point(h.x, h.y)))
        ws.append([f"УУП-{k:02d}", geo.person(rng), rng.choice(ranks),
                   f"г. Иркутск, {station.street.full}, д. {station.house}", rng.choice(hours),
                   geo.phone(rng, mobile=True)])
    geo.save_xlsx(wb, OUT / "zones/officers.xlsx")
    return {"precincts": len(cells), "officer_rows": len(cells)}


def write_management_companies(city: geo.City) -> dict:
    rng = rng_for("management")
    cells = geo.partition(city.polygon, 12, rng)
    names = [("Центр", "centr"), ("Октябрьская", "oktyabrskaya"), ("Байкальская", "baikalskaya"), ("Ангара", "angara"),
             ("Академическая", "akademicheskaya"), ("Ленинская", "leninskaya"), ("Правобережная", "pravoberezhnaya"),
             ("Иркут", "irkut"), ("Юбилейная", "yubileynaya"), ("Синюшина гора", "sinyushina"),
             ("Ново-Ленино", "novolenino"), ("Жилкино", "zhilkino")]
    wgs = [geo.to_wgs(orient(cell, 1.0)) for cell in cells]
    geo.check_coverage(wgs, "management companies in lon/lat")
    features = []
    for k, (cell, shape, (name, slug)) in enumerate(zip(cells, wgs, names, strict=True), 1):
        houses = sum(cell.covers(Point(h.x, h.y)) for h in city.houses)
        features.append({"type": "Feature", "properties": {
            "id": f"UK-{k:02d}", "name": f"ООО «УК {name}»", "inn": geo.inn(rng), "dispatcher": geo.phone(rng),
            "site": f"https://uk-{slug}.irk.example", "houses": houses}, "geometry": mapping(shape)})
    text = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)
    (OUT / "zones/management_companies.geojson").write_text(text + "\n", encoding="utf-8")
    return {"companies": len(cells), "houses_total": sum(f["properties"]["houses"] for f in features)}


def write_readme(c: dict) -> None:
    p, e, w, m, o = c["permits"], c["emergency_works"], c["wzdx"], c["municipal_closures"], c["outages"]
    ids = p["bad_row_ids"]
    files = [  # file, layer(s), format, encoding / delimiter, rows
        ("addresses/address_register.csv", "addresses", "CSV; X/Y 2 decimals (control row 3)", "utf-8, `;`",
         f"{c['addresses']['rows']} buildings on {c['addresses']['streets']} streets"),
        ("repairs/permits.csv", "repairs", "CSV; dates dd.mm.yyyy; WKT POINT", "cp1251, `;`",
         f"{p['rows']} ({p['with_wkt']} with WKT, {p['address_only']} address only)"),
        ("repairs/emergency_works.xlsx", "repairs", "sheet «Аварийные работы», header in row 1", "xlsx",
         f"{e['rows']} ({e['address_only']} address only; {e['text_dates']} with text dates dd.mm.yyyy, "
         f"{e['open_ended']} without end)"),
        ("closures/wzdx_feed.geojson", "road_closures, detours", "WZDx 4.2 WorkZoneFeed, schema-validated", "utf-8",
         f"{w['work_zones']} work zones, {w['work_zones_with_detour']} with detours of "
         f"{w['detour_segments']} segments"),
        ("closures/municipal_closures.csv", "road_closures", "CSV; dates dd.mm.yyyy HH:MM; WKT LINESTRING",
         "cp1251, `;`", f"{m['rows']} ({m['full']} full, {m['open_ended']} without end)"),
        ("outages/notices.txt", "outages", "text table; dates dd.mm.yyyy HH:MM", "cp1251, TAB",
         f"{o['rows']} notices naming {o['address_references']} buildings"),
        ("zones/election_districts.shp", "election_districts", "Shapefile (+shx dbf prj cpg); OKRUG_NO, NAZVANIE",
         "cp1251 (.cpg)", f"{c['election_districts']['districts']} districts"),
        ("zones/deputies.csv", "election_districts (join)", "CSV", "cp1251, `;`",
         f"{c['election_districts']['deputy_rows']}"),
        ("zones/police_precincts.geojson", "police_precincts", "GeoJSON in МСК, no `crs` member", "utf-8",
         f"{c['police_precincts']['precincts']}"),
        ("zones/officers.xlsx", "police_precincts (join)", "sheet «Участковые»", "xlsx",
         f"{c['police_precincts']['officer_rows']}"),
        ("zones/management_companies.geojson", "management_companies", "GeoJSON, WGS 84 (RFC 7946)", "utf-8",
         f"{c['management_companies']['companies']}"),
    ]
    table = "\n".join("| " + " | ".join(row) + " |" for row in files)
    layers = "\n".join(f"| {name} | {count} | {c['rejects'].get(name, 0)} |" for name, count in c["layers"].items())
    cp = geo.CONTROL
    text = f"""# Sample city: Иркутск (Irkutsk)

Written by `python data/generate_sample.py` (seed {SEED}; deterministic: a rerun gives identical bytes).
**Street names are real; all geometry is synthetic** (a street grid drawn for the sample, not a survey). People,
phone numbers, INNs and web sites are invented. Dates are spread around the anchor "today" {TODAY:%Y-%m-%d}
(Asia/Irkutsk), so a good share of permits, closures and outages is active then. Every count below is in
`expected.json` (machine-readable, for tests).

## Coordinates
- МСК-38 zone 3 = `msk38-3` of `layers/_city.yaml` (proj4 with towgs84; never resolve "МСК-38" by name). WKT
  columns and the police precincts GeoJSON are (easting, northing). The address register keeps the surveyors'
  convention: **X = northing, Y = easting**. The shapefile .prj is pyproj's ESRI WKT, which cannot carry towgs84.
- The WZDx feed (offsets +08:00) and the management companies are WGS 84 lon/lat.
- Everything lies in a city polygon of lon 104.16–104.40, lat 52.22–52.36, inside the extent {list(geo.EXTENT)}.
- **Control point**: register row `{cp['code']}`, {cp['street']}, {cp['house']}, X = {cp['X']}, Y = {cp['Y']}
  = lon {cp['lon']}, lat {cp['lat']} (the Irkutsk vector of msk_test_vectors.json).

## Files
| file | layer | format | encoding, delimiter | rows |
|---|---|---|---|---|
{table}

Zones (25 districts, 40 precincts, 12 companies) are relaxed Voronoi cells clipped to the city polygon; each set
covers the city exactly, without overlaps or gaps. GeoJSON zones are Polygons, shapefile zones MultiPolygons.

## Addresses as the sources write them
Register: `Улица` "ул. Ленина", `Дом` "12", "5А" (Cyrillic capital), "7 к2" (корпус 2) or "7/1"; odd numbers on
one side of a street, even on the other. Permits, emergency works and notices write "ул. Ленина, 12",
"ул. Ленина, д. 12", "5а", "д. 7 корп. 2" (= register "7 к2"), "7/1". A notice lists many buildings:
"ул. Ленина, 1, 3, 5а; ул. Карла Маркса, 2-12" — streets separated by ";", ranges keep parity (2-12 = 2, 4, …,
12) and every range covers plain register houses only.

## Deliberately bad records
- permits.csv: end date before start date ({", ".join(ids["end_before_start"])}); unknown network "Ливнёвка"
  ({ids["unknown_network"][0]}); impossible date "31.02.2026" ({ids["invalid_date"][0]}); duplicate permit number
  {ids["duplicate_id"][0]} (the later row is the duplicate); {p["unmatched_addresses"]} address-only rows naming
  house 999, which the register lacks ({", ".join(p["unmatched_ids"])}). {p["valid"]} permits are valid.
- notices.txt: {o["unmatched_addresses"]} buildings not in the register (numbers past the end of a street,
  house 999, "ул. Звёздная, 3"); the other {o["matched_addresses"]} all match.
- deputies.csv: a row for district 26, which election_districts.shp does not have.

## Planted for the conflict rules (layers/conflicts.yaml)
Appended after the generated rows, all in 2027: permits ЗР-2026-0901 and ЗР-2026-0902, 8 m apart and overlapping
20-25 January (overlapping_excavations); municipal closure ПД-2026-201, 102 days (long_closure); permit ЗР-2026-0903
on that closure's line after it ended (works_without_closure); outage notice ВК-2001 in March on ул. Лермонтова, with
no works within 150 m then (outage_without_works); notice ВК-2002 beside ЗР-2026-0901 while it runs (answered, no
conflict). `expected.json` → `conflicts`; the generated records produce conflicts of their own too. The zones
each planted permit and closure touches (intersected in МСК from the zone files) are `expected.json` →
`responsibility`; ПД-2026-201 crosses two police precincts.

## What the layers should publish
| layer | features | rejects |
|---|---|---|
{layers}

The election_districts reject is the deputies.csv row of district 26, which matches no district.
"""
    (OUT / "README.md").write_text(text, encoding="utf-8")


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    rng = rng_for("city")
    city = geo.City(geo.city_polygon(), geo.build_streets(rng))
    geo.build_houses(city, rng)
    lon0, lat0, lon1, lat1 = geo.to_wgs(city.polygon).bounds
    x0, y0, x1, y1 = geo.EXTENT
    assert x0 < lon0 and lon1 < x1 and y0 < lat0 and lat1 < y1, "city polygon outside the extent"
    assert all(city.polygon.contains(s.line) for s in city.streets if s.line is not None), "a street leaves the city"
    assert abs(geo.TO_MSK.transform(geo.CONTROL["lon"], geo.CONTROL["lat"])[1] - geo.CONTROL["X"]) < 0.001
    counts = {"seed": SEED, "anchor_today": TODAY.date().isoformat(), "crs": "msk38-3",
              "control_point": {k: geo.CONTROL[k] for k in ("code", "street", "house", "X", "Y", "lon", "lat")}}
    counts["addresses"] = write_addresses(city)
    planted = planted_cases(city)
    counts["permits"] = write_permits(city, planted["permits"])
    counts["emergency_works"] = write_emergency_works(city)
    counts["wzdx"] = write_wzdx(city)
    counts["municipal_closures"] = write_municipal_closures(city, planted["closures"])
    counts["outages"] = write_notices(city, planted["notices"], sum(planted["expected"]["outage_buildings"].values()))
    counts["election_districts"] = write_election_districts(city)
    counts["police_precincts"] = write_police(city)
    counts["management_companies"] = write_management_companies(city)
    counts["layers"] = {  # features each layer should publish from this sample
        "addresses": counts["addresses"]["rows"],
        "repairs": counts["permits"]["valid"] + counts["emergency_works"]["rows"],
        "road_closures": counts["wzdx"]["work_zones"] + counts["municipal_closures"]["rows"],  # planted included
        "detours": counts["wzdx"]["detour_segments"], "outages": counts["outages"]["expected_features"],
        "election_districts": counts["election_districts"]["districts"],
        "police_precincts": counts["police_precincts"]["precincts"],
        "management_companies": counts["management_companies"]["companies"]}
    counts["rejects"] = {  # rows data/rejects/<layer>.csv should get (bad records and unmatched addresses)
        "repairs": sum(counts["permits"]["bad_rows"].values()) + counts["permits"]["unmatched_addresses"],
        "outages": counts["outages"]["unmatched_addresses"], "election_districts": 1}  # the deputy of district 26
    counts["orphan_join_rows"] = {"election_districts": counts["election_districts"]["deputies_without_district"]}
    counts["emergency_works_rows"] = counts["emergency_works"]["rows"]
    # conflicts layers/conflicts.yaml must find among them (other, generated ones too); "answered": must not
    counts["conflicts"] = planted["expected"]
    counts["responsibility"] = planted_zones(planted)  # the planted events' zones, for the responsibility fields
    counts["files"] = {str(f.relative_to(OUT)): f.stat().st_size for f in sorted(OUT.rglob("*")) if f.is_file()}
    write_readme(counts)
    (OUT / "expected.json").write_text(json.dumps(counts, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    assert total < 3_000_000, f"sample too large: {total} bytes"
    print(f"wrote {OUT} ({total / 1e6:.2f} MB): " + ", ".join(f"{k} {v}" for k, v in counts["layers"].items()))


if __name__ == "__main__":
    main()
