"""Synthetic geometry of the Irkutsk sample city (street names are real, every coordinate is invented),
plus the small value and file helpers the writers of data/generate_sample.py share.

Everything is built in МСК-38 zone 3 (easting, northing in metres) from the proj4 string of
`layers/_city.yaml` (never resolved by name); lon/lat only enter and leave through pyproj Transformers.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jsonschema
import numpy as np
import openpyxl
import shapely
import yaml
from openpyxl.styles import Font
from pyproj import CRS, Transformer
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from shapely.geometry import LineString, MultiPoint, Point, Polygon

REPO = Path(__file__).resolve().parent.parent
WZDX_DIR = Path("/work/shared/data/wzdx")  # WZDx 4.2 schemas and the GeoJSON schemas they $ref
_CITY = yaml.safe_load((REPO / "layers" / "_city.yaml").read_text(encoding="utf-8"))
MSK_PROJ4 = " ".join(_CITY["crs"]["msk38-3"]["proj4"].split())
MSK = CRS.from_proj4(MSK_PROJ4)
EXTENT = tuple(_CITY["extent"])  # lon/lat bounds every published feature must fall inside
TO_MSK = Transformer.from_crs("EPSG:4326", MSK, always_xy=True)
TO_WGS = Transformer.from_crs(MSK, "EPSG:4326", always_xy=True)

# Test vector for Иркутск (/work/shared/data/msk_test_vectors.json); surveyors' X = northing, Y = easting.
CONTROL = {"lon": 104.2806, "lat": 52.287, "X": 384985.639, "Y": 3335093.201,
           "street": "ул. Ленина", "house": "5А", "code": "A-CONTROL"}

# A hand-drawn city outline (lon, lat), well inside the extent.
CITY_LONLAT = [(104.160, 52.335), (104.185, 52.358), (104.245, 52.358), (104.290, 52.334), (104.335, 52.318),
               (104.385, 52.302), (104.398, 52.272), (104.388, 52.243), (104.352, 52.224), (104.300, 52.221),
               (104.250, 52.226), (104.212, 52.246), (104.188, 52.280), (104.168, 52.305)]

# Centre grid: long streets run at bearing 160° (offset v across), cross streets at 70° (offset u along).
U_BEARING, V_BEARING = 160.0, 70.0
LONG_STREETS = [("ул.", "Свердлова", -600), ("ул.", "Горького", -300), ("ул.", "Ленина", 0),
                ("ул.", "Карла Маркса", 300), ("ул.", "Дзержинского", 600)]
LONG_SPAN = (0.0, 900.0)
CROSS_STREETS = [("ул.", "Чехова", 150, -650, 0), ("ул.", "Сухэ-Батора", 300, -650, 650),
                 ("пер.", "Почтовый", 460, 0, 300), ("ул.", "Урицкого", 620, -650, 650),
                 ("ул.", "Бограда", 780, -650, 650), ("ул.", "Декабрьских Событий", 900, -650, 1500)]
# Other streets: (type, name, start lon, start lat, bearing°, length m); gently curved.
FREE_STREETS = [
    ("ул.", "Партизанская", 104.2600, 52.2700, 165, 600), ("ул.", "Советская", 104.2930, 52.2660, 100, 800),
    ("ул.", "Рабочая", 104.3000, 52.2960, 155, 400), ("ул.", "Трилиссера", 104.3080, 52.2810, 165, 400),
    ("ул.", "Депутатская", 104.3150, 52.2600, 60, 600), ("ул.", "Байкальская", 104.2950, 52.2610, 122, 1900),
    ("ул.", "Лыткина", 104.3060, 52.2540, 20, 400), ("ул.", "Пискунова", 104.3280, 52.2480, 40, 600),
    ("ул.", "Ширямова", 104.3450, 52.2700, 80, 600), ("б-р", "Гагарина", 104.2640, 52.2960, 150, 600),
    ("пр-т", "Маршала Жукова", 104.3250, 52.2850, 55, 1000), ("ул.", "Лермонтова", 104.2480, 52.2820, 175, 1400),
    ("ул.", "Академическая", 104.2560, 52.2480, 100, 600), ("ул.", "Улан-Баторская", 104.2300, 52.2500, 20, 700),
    ("ул.", "Розы Люксембург", 104.2150, 52.3530, 160, 1000), ("ул.", "Мира", 104.1880, 52.3360, 70, 600),
    ("ул.", "Баумана", 104.2350, 52.3430, 150, 600), ("ул.", "Радищева", 104.2150, 52.2750, 165, 900),
    ("ул.", "Баррикад", 104.2920, 52.3000, 45, 600), ("ул.", "Ярославского", 104.1950, 52.3240, 150, 500),
    ("ул.", "Полярная", 104.2400, 52.3250, 60, 600), ("ул.", "Мамина-Сибиряка", 104.2280, 52.2660, 80, 500),
    ("ул.", "Волжская", 104.3350, 52.2400, 60, 600), ("ул.", "Костычева", 104.3520, 52.2550, 120, 500),
    ("ул.", "Верхняя Набережная", 104.2800, 52.2640, 95, 500), ("ул.", "Рабочего Штаба", 104.3030, 52.3060, 105, 600),
    ("ул.", "Волгоградская", 104.2050, 52.2900, 30, 600), ("ул.", "Сибирских Партизан", 104.1950, 52.3100, 100, 600),
]
MICRODISTRICT = ("мкр.", "Юбилейный", 104.2960, 52.2330)  # numbered buildings on a 6×6 block grid


def unit(bearing: float) -> np.ndarray:
    rad = math.radians(bearing)
    return np.array([math.sin(rad), math.cos(rad)])


U, V = unit(U_BEARING), unit(V_BEARING)
# Ленина starts so that its house 5 lands next to the control point (90 m along, 18 m to the left).
ORIGIN = np.array([CONTROL["Y"], CONTROL["X"]]) - 90.0 * U - 18.0 * V


def grid_xy(u: float, v: float) -> tuple[float, float]:
    x, y = ORIGIN + u * U + v * V
    return float(x), float(y)


def to_wgs(geom):
    """A МСК geometry in lon/lat (7 decimals, ~1 cm)."""
    return shapely.transform(geom, lambda c: np.round(np.column_stack(TO_WGS.transform(c[:, 0], c[:, 1])), 7))


def to_msk(geom):
    return shapely.transform(geom, lambda c: np.column_stack(TO_MSK.transform(c[:, 0], c[:, 1])))


def city_polygon() -> Polygon:
    outline = shapely.segmentize(Polygon(CITY_LONLAT), 0.004)
    return shapely.set_precision(to_msk(outline), 0.1)


@dataclass
class Street:
    kind: str
    name: str
    line: LineString | None  # None for a microdistrict
    grid: tuple[str, float] | None = None  # ("long", v) or ("cross", u) for centre-grid streets

    @property
    def full(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class House:
    street: Street
    number: int
    suffix: str  # "", "А", "Б", " к2", "/1"
    x: float  # easting
    y: float  # northing
    exact: bool = False  # the control point: written with 3 decimals

    @property
    def house(self) -> str:
        return f"{self.number}{self.suffix}"


@dataclass
class City:
    polygon: Polygon
    streets: list[Street]
    houses: list[House] = field(default_factory=list)

    def street(self, full: str) -> Street:
        return next(s for s in self.streets if s.full == full)

    def houses_of(self, street: Street) -> list[House]:
        return [h for h in self.houses if h.street is street]


def _free_line(start_lon, start_lat, bearing, length, rng: random.Random) -> LineString:
    x, y = TO_MSK.transform(start_lon, start_lat)
    points, step = [(x, y)], 200.0
    for _ in range(max(1, round(length / step))):
        bearing += rng.uniform(-4.0, 4.0)
        x, y = np.array([x, y]) + step * unit(bearing)
        points.append((float(x), float(y)))
    return LineString(points)


def build_streets(rng: random.Random) -> list[Street]:
    streets = [Street(k, n, LineString([grid_xy(LONG_SPAN[0], v), grid_xy(LONG_SPAN[1], v)]), ("long", v))
               for k, n, v in LONG_STREETS]
    streets += [Street(k, n, LineString([grid_xy(u, v0), grid_xy(u, v1)]), ("cross", u))
                for k, n, u, v0, v1 in CROSS_STREETS]
    streets += [Street(k, n, _free_line(lon, lat, b, length, rng)) for k, n, lon, lat, b, length in FREE_STREETS]
    streets.append(Street(MICRODISTRICT[0], MICRODISTRICT[1], None))
    return streets


def build_houses(city: City, rng: random.Random, spacing: float = 40.0, setback: float = 18.0) -> None:
    """Odd numbers on the left of the street direction, even on the right; some А/Б, к2 and /1 buildings."""
    inner = city.polygon.buffer(-150)
    taken: list[Point] = []
    control = Point(CONTROL["Y"], CONTROL["X"])

    def free(p: Point, own: Street) -> bool:
        if not inner.contains(p) or any(p.distance(q) < 14 for q in taken):
            return False
        return all(s is own or s.line is None or s.line.distance(p) > 15 for s in city.streets)

    def add(street, number, suffix, p, exact=False):
        city.houses.append(House(street, number, suffix, p.x, p.y, exact))
        taken.append(p)

    for street in city.streets:
        if street.line is None:
            continue
        line, pos, numbers = street.line, 22.0, {1: 1, -1: 2}
        while pos < line.length - 10:
            a, b = line.interpolate(max(pos - 1, 0)), line.interpolate(min(pos + 1, line.length))
            t = np.array([b.x - a.x, b.y - a.y]) / math.hypot(b.x - a.x, b.y - a.y)
            normal = np.array([-t[1], t[0]])  # left of the direction of travel
            for side in (1, -1):
                centre = line.interpolate(pos + (0 if side == 1 else spacing / 2))
                base = np.array([centre.x, centre.y]) + side * setback * normal
                p = Point(*(base + rng.uniform(-3, 3) * t))
                if not free(p, street):
                    continue
                number = numbers[side]
                numbers[side] += 2
                is_control = street.full == CONTROL["street"] and number == 5
                roll = 1.0 if is_control else rng.random()
                add(street, number, "/1" if roll < 0.012 else "", p)
                if is_control:
                    add(street, 5, "А", control, exact=True)
                elif roll < 0.08:
                    extra = [("А", 16, 0), ("Б", 16, 14)] if roll < 0.02 else [("А", 16, 0)]
                    extra = extra if roll < 0.05 else [(" к2", 18, -12)]
                    for suffix, out, along in extra:
                        q = Point(*(base + side * out * normal + along * t))
                        if free(q, street):
                            add(street, number, suffix, q)
            pos += rng.uniform(spacing - 4, spacing + 4)
    mkr = next(s for s in city.streets if s.line is None)
    x0, y0 = TO_MSK.transform(MICRODISTRICT[2], MICRODISTRICT[3])
    number = 1
    for row in range(6):
        for col in range(6):
            p = Point(x0 + col * 75 + rng.uniform(-5, 5), y0 - row * 70 + rng.uniform(-5, 5))
            if rng.random() < 0.1 or not free(p, mkr):
                continue
            add(mkr, number, "", p)
            number += 1


def district_of(x: float, y: float) -> str:
    """The real city districts, by rough lon/lat bands."""
    lon, lat = TO_WGS.transform(x, y)
    if lat > 52.315:
        return "Ленинский"
    if lon < 104.262:
        return "Свердловский"
    if lon > 104.318 or (lat < 52.2835 and lon > 104.291):
        return "Октябрьский"
    return "Правобережный"


def partition(city: Polygon, n: int, rng: random.Random, iterations: int = 3) -> list[Polygon]:
    """`n` zones exactly covering `city`: relaxed Voronoi cells of seeded points, numbered north-west first."""
    minx, miny, maxx, maxy = city.bounds
    seeds: list[Point] = []
    while len(seeds) < n:
        p = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if city.contains(p):
            seeds.append(p)
    frame = city.envelope.buffer(5000)
    for step in range(iterations + 1):
        cells = shapely.get_parts(shapely.voronoi_polygons(MultiPoint(seeds), extend_to=frame, ordered=True))
        cells = [c.intersection(city) for c in cells]
        if step < iterations:
            seeds = [c.centroid if city.contains(c.centroid) else c.representative_point() for c in cells]
    band = 3000.0
    cells.sort(key=lambda c: (-math.floor(c.centroid.y / band), c.centroid.x))
    cells = [shapely.set_precision(c, 0.1) for c in cells]
    check_coverage(cells, f"{n} zones")
    return cells


def check_coverage(cells, what: str) -> None:
    """Fail loudly on overlaps, gaps or invalid parts of a zone set."""
    if not all(c.is_valid and not c.is_empty for c in cells):
        raise AssertionError(f"{what}: invalid or empty zone")
    if not shapely.coverage_is_valid(shapely.GeometryCollection(cells)):
        raise AssertionError(f"{what}: zones overlap")
    union = shapely.union_all(cells)
    holes = sum(len(p.interiors) for p in shapely.get_parts(union))
    if union.geom_type != "Polygon" or holes:
        raise AssertionError(f"{what}: zones leave gaps ({union.geom_type}, {holes} holes)")
    if abs(sum(c.area for c in cells) - union.area) > 1e-6 * union.area:
        raise AssertionError(f"{what}: zone areas do not add up")


def street_point(city: City, rng: random.Random) -> tuple[Street, Point, House]:
    """A point on a street (in the roadway or on the pavement) and the nearest building of that street."""
    street = rng.choice([s for s in city.streets if s.line is not None])
    pos = rng.uniform(30, street.line.length - 30)
    a, b = street.line.interpolate(pos), street.line.interpolate(pos + 1)
    side = rng.uniform(-7, 7)
    p = Point(a.x - side * (b.y - a.y), a.y + side * (b.x - a.x))
    return street, p, min(city.houses_of(street), key=lambda h: p.distance(Point(h.x, h.y)))


def nearest_other_street(city: City, street: Street, geom) -> Street:
    others = [s for s in city.streets if s.line is not None and s is not street]
    return min(others, key=lambda s: s.line.distance(geom))


def grid_line(axis: str, fixed: float, a: float, b: float) -> LineString:
    ends = [(a, fixed), (b, fixed)] if axis == "long" else [(fixed, a), (fixed, b)]
    return LineString([grid_xy(u, v) for u, v in ends])


def detour_legs(axis: str, fixed: float, a: float, b: float, via: float) -> list[tuple[str, float, LineString]]:
    """Around a closed block of the centre grid: along the cross street, the parallel street, and back."""
    other = "cross" if axis == "long" else "long"
    return [(other, a, grid_line(other, a, fixed, via)), (axis, via, grid_line(axis, via, a, b)),
            (other, b, grid_line(other, b, via, fixed))]


# ------------------------------------------------------------------ addresses and WZDx

def house_address(h: House, rng: random.Random, prefix: bool | None = None) -> str:
    """A register building as people write it: "ул. Ленина, 12", "ул. Ленина, д. 7 корп. 2"."""
    prefix = rng.random() < 0.4 if prefix is None else prefix
    house = f"{h.number} корп. 2" if h.suffix == " к2" else h.house
    return f"{h.street.full}, {'д. ' if prefix or h.suffix == ' к2' else ''}{house}"


def direction(line: LineString) -> str:
    """The WZDx direction of travel of a line, from its end points (МСК: x east, y north)."""
    (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
    if abs(x1 - x0) > abs(y1 - y0):
        return "eastbound" if x1 > x0 else "westbound"
    return "northbound" if y1 > y0 else "southbound"


def wzdx_feature(fid: str, line: LineString, props: dict) -> dict:
    coords = [list(c) for c in to_wgs(line).coords]
    geometry = {"type": "LineString", "coordinates": coords}
    return {"id": fid, "type": "Feature", "properties": props, "geometry": geometry}


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def validate_wzdx(feed: dict) -> None:
    """Validate against the WZDx 4.2 schema offline (every $ref is registered under its $id); fail loudly."""
    resources = []
    for folder in ("schemas-4.2", "geojson-schema"):
        for path in sorted((WZDX_DIR / folder).glob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            resources.append((schema["$id"], Resource.from_contents(schema, default_specification=DRAFT7)))
    root = json.loads((WZDX_DIR / "schemas-4.2/WorkZoneFeed.json").read_text(encoding="utf-8"))
    formats = jsonschema.FormatChecker(["email"])  # jsonschema checks date-time only with rfc3339-validator

    @formats.checks("date-time", raises=ValueError)
    def _rfc3339(value) -> bool:
        return not isinstance(value, str) or bool(RFC3339.match(value) and datetime.fromisoformat(value))

    validator = jsonschema.Draft7Validator(root, registry=Registry().with_resources(resources), format_checker=formats)

    def leaves(error):  # the innermost failures; skip the oneOf branch of the other event type
        return [leaf for sub in error.context for leaf in leaves(sub)] if error.context else [error]

    problems = sorted({f"{'/'.join(map(str, leaf.absolute_path))}: {leaf.message}"
                       for error in validator.iter_errors(feed) for leaf in leaves(error)
                       if not (leaf.validator == "const" and list(leaf.path)[-1:] == ["event_type"])})
    if problems:
        raise SystemExit("WZDx feed does not validate:\n  " + "\n  ".join(problems[:20]))


# ------------------------------------------------------------------ synthetic people, phones, files

SURNAMES = ["Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов", "Новиков",
            "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов",
            "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Борисов", "Яковлев", "Романов",
            "Сергеев", "Кузьмин", "Фролов", "Дмитриев", "Гусев", "Ильин", "Максимов", "Поляков", "Сорокин", "Белов"]
MALE = ["Александр", "Сергей", "Андрей", "Дмитрий", "Алексей", "Игорь", "Виктор", "Олег", "Николай", "Евгений"]
FEMALE = ["Елена", "Ольга", "Татьяна", "Наталья", "Ирина", "Светлана", "Анна", "Марина", "Юлия", "Галина"]
PATRONYMICS = ["Александров", "Сергеев", "Николаев", "Владимиров", "Викторов", "Петров", "Андреев", "Михайлов"]


def person(rng: random.Random) -> str:
    female = rng.random() < 0.4
    suffix, ending = ("а", "на") if female else ("", "ич")
    return f"{rng.choice(SURNAMES)}{suffix} {rng.choice(FEMALE if female else MALE)} {rng.choice(PATRONYMICS)}{ending}"


def phone(rng: random.Random, mobile: bool = False) -> str:
    if mobile:
        code = rng.choice([902, 908, 914, 924, 950])
        return f"+7 ({code}) {rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"
    return f"{rng.choice(['+7', '8'])} (3952) {rng.randint(20, 79)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"


def inn(rng: random.Random) -> str:
    """A 10-digit legal-entity INN of the Irkutsk region (38…) with a valid check digit."""
    digits = [3, 8, 0, rng.choice([8, 9, 1, 4])] + [rng.randint(0, 9) for _ in range(5)]
    check = sum(d * w for d, w in zip(digits, [2, 4, 10, 3, 5, 9, 4, 6, 8], strict=True)) % 11 % 10
    return "".join(map(str, digits + [check]))


def write_csv(path: Path, header: list[str], rows: list[list], encoding: str, delimiter: str = ";") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\r\n" if encoding == "cp1251" else "\n")
        writer.writerow(header)
        writer.writerows(rows)


def save_xlsx(wb: openpyxl.Workbook, path: Path) -> None:
    """openpyxl stamps the save time into the file; pin it (and the zip times) so reruns give identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    with zipfile.ZipFile(path) as src:
        items = [(info.filename, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in items:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>2026-11-24T00:00:00Z", data)
            dst.writestr(zipfile.ZipInfo(name, date_time=(2026, 11, 24, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)


def sheet(title: str, header: list[str]):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    ws.append(header)  # header in row 1, no title row above it
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for col, width in zip("ABCDEFGHI", [16, 22, 18, 34, 30, 22, 18, 18, 40], strict=True):
        ws.column_dimensions[col].width = width
    return wb, ws
