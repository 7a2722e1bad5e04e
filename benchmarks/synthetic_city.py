"""A large seeded synthetic Irkutsk for the ingest benchmark, in the formats the city really delivers.

Every coordinate is invented and built in МСК-38 zone 3 from the proj4 string of `layers/_city.yaml`
(never resolved by name). Generation is vectorised (numpy/shapely/pandas), so the full-scale city
(1M repair points, 200k closure lines, 20k zones) takes seconds. A small share of records carries the
defects real registers have (unknown values, impossible dates, swapped X/Y, broken WKT, duplicate ids,
address-only rows, bow-tie polygons), so the benchmark also pays for the reject path.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
import yaml
from pyproj import CRS, Transformer

# Bump when the generated files change, so cached cities are rebuilt.
GENERATOR_VERSION = 1
SEED = 20261124
FULL_SCALE = {"addresses": 10_000, "repairs": 1_000_000, "road_closures": 200_000, "election_districts": 20_000}
# Source files relative to the city's folder; the benchmark catalog points at the same paths.
FILES = {
    "addresses": "addresses/address_register.csv",
    "repairs": "repairs/permits.csv",
    "road_closures": "closures/municipal_closures.csv",
    "election_districts": "zones/election_districts.shp",
    "deputies": "zones/deputies.csv",
}
WKT_COLUMN = "Геометрия (WKT)"

STREETS = [
    "ул. Ленина", "ул. Карла Маркса", "ул. Свердлова", "ул. Горького", "ул. Дзержинского", "ул. Чехова",
    "ул. Сухэ-Батора", "пер. Почтовый", "ул. Урицкого", "ул. Бограда", "ул. Декабрьских Событий",
    "ул. Партизанская", "ул. Советская", "ул. Рабочая", "ул. Трилиссера", "ул. Депутатская",
    "ул. Байкальская", "ул. Лыткина", "ул. Пискунова", "ул. Ширямова", "б-р Гагарина",
    "пр-т Маршала Жукова", "ул. Лермонтова", "ул. Академическая", "ул. Улан-Баторская",
    "ул. Розы Люксембург", "ул. Мира", "ул. Баумана", "ул. Радищева", "ул. Баррикад", "ул. Ярославского",
    "ул. Полярная", "ул. Мамина-Сибиряка", "ул. Волжская", "ул. Костычева", "ул. Верхняя Набережная",
    "ул. Рабочего Штаба", "ул. Волгоградская", "ул. Сибирских Партизан", "ул. Курчатова",
]
DISTRICTS = ["Кировский", "Куйбышевский", "Октябрьский", "Свердловский", "Ленинский"]
NETWORKS = ["Теплосеть", "Тепловые сети", "Водопровод", "Водоснабжение", "Канализация", "Электросети",
            "Электроснабжение", "Газопровод", "Газоснабжение", "Связь", "Сети связи"]
WORK_KINDS = ["Плановые", "Плановый ремонт", "Аварийные", "Аварийный ремонт"]
STATUSES = ["Выдан", "Выдано", "В работе", "Ведутся работы", "Завершено", "Закрыт", "Приостановлено"]
CONTRACTORS = ['ООО "Иркутскэнергосбыт-Сервис"', 'МУП "Водоканал" г. Иркутска', 'ООО "ТеплоСтрой"',
               'АО "Иркутская электросетевая компания"', 'ООО "Газпром газораспределение"', 'ПАО "Ростелеком"',
               'ООО "СибМонтаж"', 'ИП Кузнецов А. В.']
CLOSURE_TYPES = ["Полное", "Полное перекрытие", "Частичное", "Частичное перекрытие", "Сужение"]
REASONS = ["Ремонт теплотрассы", "Замена водопровода", "Ремонт дорожного покрытия", "Массовое мероприятие",
           "Укладка кабеля связи", "Реконструкция трамвайных путей", "Аварийные работы на канализации"]
ORGANIZERS = ['МКУ "Городская дирекция дорожного строительства"', 'ООО "ДорСтрой"', 'МУП "Водоканал" г. Иркутска',
              'Комитет городского обустройства']
PARTIES = ["Единая Россия", "КПРФ", "ЛДПР", "Справедливая Россия", "Новые люди", "самовыдвижение"]
SURNAMES = ["Иванов", "Петров", "Сидоров", "Кузнецов", "Смирнов", "Попов", "Соколов", "Лебедев", "Козлов", "Новиков"]


@dataclass(frozen=True)
class SyntheticCity:
    directory: Path
    scale: float
    counts: dict[str, int]
    proj4: str
    defects: dict[str, dict[str, int]]

    def path(self, key: str) -> Path:
        return self.directory / FILES[key]


def city_definition(city_yaml: Path) -> tuple[str, tuple[float, float, float, float]]:
    """(МСК-38 zone 3 proj4 string, lon/lat extent) as `_city.yaml` declares them."""
    city = yaml.safe_load(city_yaml.read_text(encoding="utf-8"))
    return " ".join(city["crs"]["msk38-3"]["proj4"].split()), tuple(city["extent"])


def ensure_city(out_dir: Path, scale: float, city_yaml: Path, log=print) -> SyntheticCity:
    """The city of this scale under `out_dir`, generated unless a complete one of this scale,
    seed and generator version is already there (its manifest is written last)."""
    directory = out_dir / f"scale_{scale:g}"
    manifest = directory / "manifest.json"
    proj4, extent = city_definition(city_yaml)
    wanted = {"generator": GENERATOR_VERSION, "seed": SEED, "scale": scale, "proj4": proj4, "extent": list(extent)}
    if manifest.exists():
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in wanted} == wanted and all((directory / f).exists() for f in FILES.values()):
            return SyntheticCity(directory, scale, saved["counts"], proj4, saved["defects"])
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    counts = {layer: max(int(round(n * scale)), 10) for layer, n in FULL_SCALE.items()}
    log(f"generating the synthetic city at scale {scale:g} into {directory} ...")
    generator = _Generator(directory, proj4, extent, np.random.default_rng(SEED))
    defects = {
        "addresses": generator.addresses(counts["addresses"]),
        "repairs": generator.repairs(counts["repairs"]),
        "road_closures": generator.closures(counts["road_closures"]),
        "election_districts": generator.zones(counts["election_districts"]),
    }
    seconds = round(time.perf_counter() - started, 1)
    manifest.write_text(json.dumps({**wanted, "counts": counts, "defects": defects, "seconds": seconds},
                                   ensure_ascii=False, indent=2), encoding="utf-8")
    log(f"generated in {seconds} s: {counts}")
    return SyntheticCity(directory, scale, counts, proj4, defects)


def _pick(rng: np.random.Generator, choices: list[str], n: int) -> np.ndarray:
    return np.asarray(choices, dtype=object)[rng.integers(0, len(choices), n)]


def _defect_marker(rng, n: int, defects: dict[str, int]):
    """`defect(name, share)` → a mask of rows for that defect, never overlapping an earlier one."""
    taken = np.zeros(n, dtype=bool)

    def defect(name: str, share: float) -> np.ndarray:
        mask = _some(rng, n, share, taken)
        taken[mask] = True
        defects[name] = int(mask.sum())
        return mask

    return defect


def _some(rng: np.random.Generator, n: int, share: float, exclude: np.ndarray | None = None) -> np.ndarray:
    """A mask of about `share * n` rows (at least one), none of them in `exclude`."""
    mask = rng.random(n) < share
    if not mask.any():
        mask[rng.integers(0, n)] = True
    return mask & ~exclude if exclude is not None else mask


def _formatted(codes: np.ndarray, fmt: str, base: pd.Timestamp, unit: str) -> np.ndarray:
    """`base + code units` formatted, formatting each distinct value once (strftime is slow per row)."""
    unique, inverse = np.unique(codes, return_inverse=True)
    texts = (base + pd.to_timedelta(unique, unit=unit)).strftime(fmt).to_numpy(dtype=object)
    return texts[inverse]


def _write_csv(frame: pd.DataFrame, path: Path, encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=";", index=False, encoding=encoding, lineterminator="\r\n")


class _Generator:
    def __init__(self, directory: Path, proj4: str, extent: tuple[float, ...], rng: np.random.Generator):
        self.directory, self.rng = directory, rng
        self.crs = CRS.from_proj4(proj4)
        self.to_msk = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        self.extent = extent
        self.register: pd.DataFrame | None = None

    def _lonlat(self, n: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
        west, south, east, north = self.extent
        lon = self.rng.uniform(west + margin, east - margin, n)
        lat = self.rng.uniform(south + margin, north - margin, n)
        return lon, lat

    def _msk(self, n: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """(easting, northing) of `n` random points at least `margin` degrees inside the extent."""
        return self.to_msk.transform(*self._lonlat(n, margin))

    def addresses(self, n: int) -> dict[str, int]:
        """The address register (surveyors' convention: X = northing, Y = easting); repairs given by
        address only are geocoded against it."""
        rng = self.rng
        per_street = -(-n // len(STREETS))
        street = np.repeat(np.asarray(STREETS, dtype=object), per_street)[:n]
        number = np.tile(np.arange(1, per_street + 1), len(STREETS))[:n].astype(str).astype(object)
        letter = np.where(rng.random(n) < 0.1, "А", "")
        house = number + letter
        easting, northing = self._msk(n, margin=0.01)
        self.register = pd.DataFrame({"street": street, "house": house})
        frame = pd.DataFrame({
            "Код": [f"A-{i:06d}" for i in range(1, n + 1)],
            "Улица": street, "Дом": house, "Адрес": street + ", " + house,
            "Район": _pick(rng, DISTRICTS, n), "Этажность": rng.integers(1, 17, n),
            "X": np.round(northing, 2), "Y": np.round(easting, 2),
        })
        _write_csv(frame, self.directory / FILES["addresses"], "utf-8")
        return {}

    def repairs(self, n: int) -> dict[str, int]:
        """Earthworks permits: cp1251 `;` CSV, dd.mm.yyyy dates, WKT POINT in МСК-38."""
        rng, register = self.rng, self.register
        easting, northing = self._msk(n, margin=0.002)
        wkt = shapely.to_wkt(shapely.points(easting, northing), rounding_precision=2).astype(object)
        at = rng.integers(0, len(register), n)
        address = (register.street.to_numpy()[at] + ", " + register.house.to_numpy()[at]).astype(object)
        start_day = rng.integers(0, 730, n)
        end_day = start_day + rng.integers(1, 120, n)
        base = pd.Timestamp("2024-01-01")
        start, end = _formatted(start_day, "%d.%m.%Y", base, "D"), _formatted(end_day, "%d.%m.%Y", base, "D")
        end[rng.random(n) < 0.2] = ""  # open-ended permits
        network = _pick(rng, NETWORKS, n)
        notes = np.full(n, "", dtype=object)
        notes[rng.random(n) < 0.05] = "Согласовано с ГИБДД; ограждение установлено"
        notes[rng.random(n) < 0.001] = "Работы в две смены.\nВосстановление благоустройства до 01.06"
        permit = np.char.add("ОР-", np.char.zfill(np.arange(1, n + 1).astype(str), 7)).astype(object)

        # defects, each on its own rows
        defects: dict[str, int] = {}
        defect = _defect_marker(rng, n, defects)

        mask = defect("address_only", 0.01)
        wkt[mask] = ""
        unknown = defect("address_not_in_register", 0.001)
        wkt[unknown] = ""
        address[unknown] = _pick(rng, STREETS, int(unknown.sum())) + ", 9999"
        network[defect("unknown_network", 0.003)] = "Ливнёвка"
        start[defect("impossible_date", 0.001)] = "31.02.2025"
        mask = defect("ends_before_start", 0.001)
        start[mask], end[mask] = "10.06.2025", "01.06.2025"
        mask = defect("duplicate_id", 0.001)
        permit[mask] = permit[np.maximum(np.flatnonzero(mask) - 1, 0)]
        mask = defect("broken_wkt", 0.0005)
        wkt[mask] = np.char.rstrip(wkt[mask].astype(str), ")").astype(object)
        mask = defect("swapped_xy", 0.0005)
        wkt[mask] = shapely.to_wkt(shapely.points(northing[mask], easting[mask]), rounding_precision=2)

        frame = pd.DataFrame({
            "Номер ордера": permit, "Вид сетей": network, "Вид работ": _pick(rng, WORK_KINDS, n),
            "Статус": _pick(rng, STATUSES, n), "Адрес": address, "Подрядчик": _pick(rng, CONTRACTORS, n),
            "Телефон подрядчика": np.char.add("+7 (3952) ", rng.integers(200000, 799999, n).astype(str)).astype(object),
            "Дата начала": start, "Дата окончания": end, "Примечание": notes, WKT_COLUMN: wkt,
        })
        _write_csv(frame, self.directory / FILES["repairs"], "cp1251")
        return defects

    def closures(self, n: int, max_vertices: int = 8) -> dict[str, int]:
        """Municipal closures: cp1251 `;` CSV, dd.mm.yyyy HH:MM, WKT LINESTRING in МСК-38 (2-8 vertices,
        a gently bending street segment up to ~1 km)."""
        rng = self.rng
        easting, northing = self._msk(n, margin=0.02)
        bearing = rng.uniform(0, 2 * np.pi, n)[:, None] + rng.normal(0, 0.15, (n, max_vertices - 1)).cumsum(axis=1)
        step = rng.uniform(40, 150, (n, max_vertices - 1))
        x = np.concatenate([easting[:, None], easting[:, None] + (step * np.sin(bearing)).cumsum(axis=1)], axis=1)
        y = np.concatenate([northing[:, None], northing[:, None] + (step * np.cos(bearing)).cumsum(axis=1)], axis=1)
        vertices = rng.integers(2, max_vertices + 1, n)
        keep = np.arange(max_vertices)[None, :] < vertices[:, None]
        lines = shapely.linestrings(x[keep], y[keep], indices=np.repeat(np.arange(n), vertices))
        wkt = shapely.to_wkt(lines, rounding_precision=2).astype(object)
        start_hour = rng.integers(0, 730 * 24, n)
        end_hour = start_hour + rng.integers(2, 24 * 30, n)
        base = pd.Timestamp("2024-01-01")
        start = _formatted(start_hour, "%d.%m.%Y %H:%M", base, "h")
        end = _formatted(end_hour, "%d.%m.%Y %H:%M", base, "h")
        kind = _pick(rng, CLOSURE_TYPES, n)
        ids = np.char.add("П-", np.char.zfill(np.arange(1, n + 1).astype(str), 6)).astype(object)

        defects: dict[str, int] = {}
        defect = _defect_marker(rng, n, defects)

        kind[defect("unknown_closure_type", 0.001)] = "Ограничение"
        mask = defect("ends_before_start", 0.001)
        start[mask], end[mask] = "10.06.2025 08:00", "01.06.2025 20:00"
        mask = defect("broken_wkt", 0.0005)
        wkt[mask] = np.char.rstrip(wkt[mask].astype(str), ")").astype(object)
        mask = defect("zero_length_line", 0.0002)
        stub = shapely.linestrings(np.repeat(x[mask, :1], 2, axis=1), np.repeat(y[mask, :1], 2, axis=1))
        wkt[mask] = shapely.to_wkt(stub, rounding_precision=2)

        frame = pd.DataFrame({
            "Номер": ids, "Улица": _pick(rng, STREETS, n), "Тип перекрытия": kind, "Причина": _pick(rng, REASONS, n),
            "Организатор": _pick(rng, ORGANIZERS, n), "Начало": start, "Окончание": end,
            "Объезд": _pick(rng, ["да", "нет"], n),
            "Изменение маршрутов ОТ": np.where(rng.random(n) < 0.3, "Троллейбус № 4, автобус № 16", ""),
            WKT_COLUMN: wkt,
        })
        _write_csv(frame, self.directory / FILES["road_closures"], "cp1251")
        return defects

    def zones(self, n: int) -> dict[str, int]:
        """Election districts: a grid of cells filling the city (no gaps, no overlaps) as a cp1251
        Shapefile in МСК-38, plus the deputies table joined to it; a few cells are bow-ties."""
        import geopandas as gpd  # imported here: only the zones need it
        import pyogrio

        rng = self.rng
        west, south, east, north = self.extent
        lons = [west + 0.01, east - 0.01, east - 0.01, west + 0.01]  # SW, SE, NE, NW, inset
        lats = [south + 0.01, south + 0.01, north - 0.01, north - 0.01]
        corners_e, corners_n = self.to_msk.transform(lons, lats)
        # the rectangle inside all four corners stays inside the extent whatever the grid rotation
        x0, x1 = max(corners_e[0], corners_e[3]), min(corners_e[1], corners_e[2])
        y0, y1 = max(corners_n[0], corners_n[1]), min(corners_n[2], corners_n[3])
        rows = max(int(round(np.sqrt(n * (y1 - y0) / (x1 - x0)))), 1)
        cols = -(-n // rows)
        column, row = np.arange(n) % cols, np.arange(n) // cols
        width, height = (x1 - x0) / cols, (y1 - y0) / rows
        left, bottom = x0 + column * width, y0 + row * height
        right, top = left + width, bottom + height
        ring_x = np.stack([left, right, right, left, left], axis=1)
        ring_y = np.stack([bottom, bottom, top, top, bottom], axis=1)
        bowtie = _some(rng, n, 0.005)
        ring_x[bowtie] = np.stack([left, right, left, right, left], axis=1)[bowtie]  # self-intersecting
        polygons = shapely.polygons(np.stack([ring_x, ring_y], axis=2))
        number = np.arange(1, n + 1)
        frame = gpd.GeoDataFrame({
            "OKRUG_NO": number,
            "NAZVANIE": [f"Избирательный округ № {i} ({DISTRICTS[i % len(DISTRICTS)]})" for i in number],
        }, geometry=polygons, crs=self.crs)
        path = self.directory / FILES["election_districts"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile", encoding="cp1251")

        with_deputy = rng.random(n) < 0.99
        surname = _pick(rng, SURNAMES, n)
        deputies = pd.DataFrame({
            "Номер округа": number, "ФИО депутата": surname + " " + _pick(rng, ["А.", "В.", "Е.", "И.", "О."], n) + " "
            + _pick(rng, ["А.", "В.", "Н.", "П.", "С."], n), "Партия": _pick(rng, PARTIES, n),
            "Телефон приёмной": np.char.add("+7 (3952) ", rng.integers(200000, 799999, n).astype(str)),
            "Часы приёма": _pick(rng, ["пн 10:00-13:00", "вт 15:00-18:00", "ср 10:00-12:00", "чт 14:00-17:00"], n),
        })[with_deputy]
        _write_csv(deputies, self.directory / FILES["deputies"], "cp1251")
        return {"bowtie_polygon": int(bowtie.sum()), "no_deputy": int((~with_deputy).sum())}
