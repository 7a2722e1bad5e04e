"""One source's records → the layer's typed schema in EPSG:4326, plus a reject for every record that
cannot be published and why (pure: the tables come in already read)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import shapely

from assets import coerce
from assets.geometry import (
    fit_type,
    parse_wkt_points,
    points_from_xy,
    points_to_wgs84,
    repair,
    to_wgs84,
    within_box,
    wkt_problem,
)
from assets.records import BatchedRecords, Reject, SourceError, SourceTable, raw_text
from assets.row_batches import SHARING_SAMPLE, collect_rows
from assets.sources.notices import BUILDING
from layers.catalog import City, FieldSpec, LayerSpec, SourceSpec

ROW, GEOMETRY = "_record", "_geometry"
# the record numbers ("line 14") stay with the published rows until the duplicates are judged: a million
# of them as Python strings are ~60 MB, in Arrow ~15 MB
RECORD_NUMBERS = ARROW_TEXT = pd.StringDtype("pyarrow")
UNSEEN = object()


@dataclass
class RawFrame:
    """A source's readable records as a table; unreadable ones already turned into rejects."""

    source: str
    table: pd.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    read: int = 0
    crs: pyproj.CRS = field(default_factory=lambda: pyproj.CRS.from_epsg(4326))  # of the source coordinates


def check_columns(table: SourceTable, spec: SourceSpec) -> None:
    """Every column the catalog maps must be in the file's header, once; one message names them all."""
    missing = [col for col in spec.used_columns if col not in table.columns]
    if missing and not table.columns_open:
        raise SourceError(table.source, f"column(s) {missing} not found; the file has {table.columns}")
    # two columns of one name: which one holds the id? Taking either publishes a guess
    twice = [col for col in spec.used_columns if table.columns.count(col) > 1]
    if twice:
        raise SourceError(table.source, f"column(s) {twice} appear more than once in the header: which one is meant?")


def collect(table: SourceTable, spec: SourceSpec, nulls: list[str] | tuple[str, ...] = ()) -> RawFrame:
    """The records as a table; cells that are placeholders (`nulls`: `Не заполнено`) are empty in it,
    except those the column's `values:` mapping names (the catalog's word for that cell wins)."""
    return next(collect_chunks(table, spec, nulls))


def collect_chunks(
    table: SourceTable, spec: SourceSpec, nulls: list[str] | tuple[str, ...] = (), rows: int | None = None
) -> Iterator[RawFrame]:
    """`collect` in chunks of about `rows` records (None: one chunk), each indexed by the positions of its
    records in the whole table; at least one chunk, empty for a source without records. Each chunk holds
    the reader's rejects and warnings met while reading it. Only a delimited file comes in chunks, at the
    ends of its pieces: its cells are texts. Other readers' cells are typed values (dates, numbers), whose
    column's type pandas infers from the whole column: their records come as one chunk."""
    check_columns(table, spec)
    # a list per column and one object per distinct string: a million small dicts and their
    # repeated values ("Теплосеть", dates) cost gigabytes otherwise. The placeholder test runs once
    # per distinct string, when it first enters this table, so it costs nothing per cell.
    columns = list(dict.fromkeys([*table.columns, *(spec.used_columns if table.columns_open else []), BUILDING]))
    data: dict[str, list] = {column: [] for column in columns}
    same: dict[str, dict] = {column: {} for column in columns}
    words = {word.strip().casefold() for word in nulls}
    kept = {column: _keys(spec.values.get(spec.columns.get(column, ""), {})) for column in columns}
    longest = max((len(word) for word in words), default=0)
    rejects: list[Reject] = []
    warnings: list[str] = []
    offset = 0

    def chunk(numbers: list[str] | pa.Array, geometries: list | None, cells: dict[str, list | np.ndarray]) -> RawFrame:
        nonlocal offset
        index = pd.RangeIndex(offset, offset + len(numbers))
        frame = RawFrame(table.source, pd.DataFrame(cells, columns=columns, index=index), list(rejects), list(warnings))
        frame.table[ROW] = pd.Series(pd.array(numbers, dtype=RECORD_NUMBERS), index=index)
        frame.table[GEOMETRY] = pd.Series(
            [None] * len(numbers) if geometries is None else geometries, index=index, dtype=object
        )
        frame.read = len(numbers) + len(rejects)
        offset += len(numbers)
        for values in data.values():  # the chunk's frame owns its cells now
            values.clear()
        rejects.clear()
        warnings.clear()
        return frame

    if isinstance(table.records, BatchedRecords):  # a CSV: its runs of split rows, column by column
        yielded = False
        arrow = _arrow_columns(spec)
        for numbers in collect_rows(table.records, rejects, warnings, data, words, kept, longest + 8, rows, arrow):
            if len(numbers) or rejects or warnings or not yielded:  # the last one may be empty: no record at all
                yielded = True
                yield chunk(numbers, None, {column: _joined(runs) for column, runs in data.items()})
        return
    # (column, its list's append, its distinct strings) with the lookups bound once: this loop runs
    # once per cell, a million rows are ten million cells
    plan = [(column, data[column].append, same[column]) for column in columns]
    numbers, geometries = [], []
    for record in table.records:
        if record.number == "file":
            warnings.append(f"{record.source}: {record.error}")
            continue
        if record.error:
            rejects.append(
                Reject(record.source, record.number, record.error_field or "", record.error, raw_text(record.values))
            )
            continue
        get = record.values.get
        for column, append, shared in plan:
            value = get(column)
            if value.__class__ is str:
                if shared is not None:
                    known = shared.get(value, UNSEEN)
                    if known is UNSEEN:
                        word = value.strip().casefold()
                        known = shared[value] = None if word in words and word not in kept[column] else value
                    value = known
                elif len(value) <= longest + 8:  # placeholders are short words (padding allowed)
                    word = value.strip().casefold()
                    value = None if word in words and word not in kept[column] else value
            append(value)
        numbers.append(record.number)
        geometries.append(record.geometry)
        if len(numbers) == SHARING_SAMPLE:
            # ids, WKT, phone numbers hardly repeat: a dict of a million distinct strings would cost
            # tens of MB per column and save nothing
            plan = [(c, a, s if s is not None and len(s) <= SHARING_SAMPLE // 2 else None) for c, a, s in plan]
    yield chunk(numbers, geometries, data)


def _joined(runs: list[np.ndarray | pa.Array]) -> np.ndarray | pd.api.extensions.ExtensionArray | list:
    """A column's runs of cells as one array (no records: an empty list, as the record path gives it)."""
    if not any(len(run) for run in runs):
        return []
    if isinstance(runs[0], pa.Array):
        return pd.array(pa.chunked_array(runs, pa.string()), dtype=ARROW_TEXT)
    return runs[0] if len(runs) == 1 else np.concatenate(runs)


def _arrow_columns(spec: SourceSpec) -> frozenset[str]:
    """The columns whose cells stay Arrow texts in the table (`geometries` reads them as such): the WKT
    column, when nothing else reads it (no field, selection or join; not also the address or a coordinate)."""
    how = spec.geometry
    if not how or not how.wkt or spec.joins or how.wkt in spec.columns or how.wkt in spec.select:
        return frozenset()
    return frozenset() if how.wkt in (how.x, how.y, how.address) else frozenset([how.wkt])


class Problems:
    """Row-level problems; a row with any problem is rejected, every problem is reported.

    One Problems may follow the chunks of a source (`chunk` before each): its rejects come in the order
    one table would give them. Each `add` and `step` starts a phase (every chunk goes through the same
    phases, in the same order); a row is listed in the phase of its first problem, the rows of a phase
    in the order they were met (each phase visits its rows in table order)."""

    def __init__(self, source: str, rows: pd.Series | None = None):
        self.source, self.rows = source, rows
        self.phase = 0
        # row index → (phase of its first problem, its record number, its problems)
        self.found: dict[object, tuple[int, str, list[tuple[str, str, str]]]] = {}

    def chunk(self, rows: pd.Series) -> None:
        """The next chunk's record numbers (indexed like its rows); its phases count from the start."""
        self.rows, self.phase = rows, 0

    def step(self) -> None:
        """A new phase: before each loop of `add_row` calls."""
        self.phase += 1

    def add(self, mask: pd.Series, field_name: str, reason: str, raw: pd.Series | None = None) -> None:
        self.step()
        for index in mask[mask].index:
            self.add_row(index, field_name, reason, "" if raw is None else str(raw[index]))

    def add_row(self, index: object, field_name: str, reason: str, value: str = "") -> None:
        entry = self.found.get(index)
        if entry is None:
            entry = self.found[index] = (self.phase, str(self.rows[index]), [])
        entry[2].append((field_name, reason, value))

    def rejects(self) -> list[Reject]:
        ordered = sorted(self.found.values(), key=lambda entry: entry[0])  # stable: chunk by chunk within a phase
        return [Reject(self.source, record, f, r, v) for _, record, items in ordered for f, r, v in items]

    @property
    def bad(self) -> pd.Index:
        return pd.Index(list(self.found))


def _typed(raw: pd.Series, spec: FieldSpec, source: SourceSpec, city: City, is_end: bool) -> coerce.Coerced:
    match spec.type:
        case "string":
            return coerce.as_text(raw)
        case "integer":
            return coerce.as_integer(raw)
        case "number":
            return coerce.as_number(raw)
        case "boolean":
            return coerce.as_boolean(raw)
        case "date":
            return coerce.as_date(raw, source.date_format, city.timezone)
        case "datetime":
            return coerce.as_datetime(raw, source.date_format, city.timezone, end_of_day=is_end)
    raise AssertionError(spec.type)


def _mapped(raw: pd.Series, mapping: dict[str, str]) -> pd.Series:
    return coerce.by_distinct(raw, _mapping(mapping))


def _mapping(mapping: dict[str, str]) -> Callable[[object], object]:
    lookup = {key.strip().lower(): value for key, value in mapping.items()}
    return lambda v: lookup.get(v.strip().lower(), v.strip()) if isinstance(v, str) else v


def _coded_field(
    raw: pd.Series, spec: FieldSpec, mapping: dict[str, str]
) -> tuple[pd.Series, coerce.Coerced, pd.Series | None, pd.Series | None] | None:
    """A text field with a value mapping whose cells are repeated texts (a few network or status names in a
    million records), judged once per distinct text: (the mapped cells, the typed ones, those not among the
    allowed values, those missing), as `_mapped`, `as_text`, `isin` and `isna` give them cell by cell.
    None for another field or column."""
    if spec.type != "string" or (coded := coerce.coded_texts(raw, _mapping(mapping))) is None:
        return None
    typed = pd.Series(coded.typed)
    outside = missing = None
    if spec.allowed is not None:
        outside = coded.cells((typed.notna() & ~typed.isin(spec.allowed)).to_numpy(), raw.index, bool)
    if spec.required:
        missing = coded.cells(typed.isna().to_numpy(), raw.index, bool)
    values = coerce.Coerced(coded.cells(coded.typed, raw.index), pd.Series(False, index=raw.index), "")
    return coded.cells(coded.mapped, raw.index), values, outside, missing


def _without_placeholders(raw: pd.Series, nulls: list[str], mapping: dict[str, str] | None = None) -> pd.Series:
    """`raw` with placeholder cells (`Не заполнено`) emptied, except those the field's `values:`
    mapping names: an explicit mapping is the catalog's word for that cell."""
    empty = coerce.placeholders(raw, [n for n in nulls if not mapping or n.strip().lower() not in _keys(mapping)])
    return raw.where(~empty, None) if empty.any() else raw


def _keys(mapping: dict[str, str]) -> set[str]:
    return {key.strip().lower() for key in mapping}


def _implausible_dates(
    values: pd.Series, spec: FieldSpec, city: City, now: dt.datetime, problems: Problems, raw: pd.Series
) -> None:
    window = city.date_window(spec)
    today = pd.Timestamp(now).tz_convert(city.timezone).date()
    early, late = coerce.outside_dates(values, window.earliest, window.latest(today), city.timezone)
    problems.add(early, spec.name, f"before {window.earliest}, the earliest plausible date for this field", raw)
    problems.add(
        late,
        spec.name,
        f"after {window.latest(today)}, the latest plausible date for this field "
        f"({window.latest_years_ahead} year{'' if window.latest_years_ahead == 1 else 's'} from today)",
        raw,
    )


def attributes(
    layer: LayerSpec, source: SourceSpec, frame: RawFrame, city: City, problems: Problems, now: dt.datetime
) -> pd.DataFrame:
    """The layer's fields, typed; failures go to `problems`. `now` places the plausible-date window."""
    table = frame.table
    nulls = city.nulls_for(source)
    joined = {target for join in source.joins for target in join.columns.values()}
    out = pd.DataFrame(index=table.index)
    by_field = {target: column for column, target in source.columns.items()}
    end_field = layer.temporal.end if layer.temporal else None
    for spec in layer.fields:
        if spec.name in source.constants:
            raw = pd.Series([source.constants[spec.name]] * len(table), index=table.index, dtype=object)
        elif spec.name in by_field:
            raw = table[by_field[spec.name]]
        else:
            raw = pd.Series([None] * len(table), index=table.index, dtype=object)
        if spec.name in joined:  # joined tables arrive after collect, which emptied the source's own
            raw = _without_placeholders(raw, nulls, source.values.get(spec.name))
        coded = _coded_field(raw, spec, source.values[spec.name]) if spec.name in source.values else None
        if coded is not None:
            raw, typed, outside, missing = coded
        else:
            if spec.name in source.values:
                raw = _mapped(raw, source.values[spec.name])
            typed = _typed(raw, spec, source, city, is_end=spec.name == end_field)
        problems.add(typed.failed, spec.name, typed.reason, raw)
        values = typed.values
        if spec.type in ("date", "datetime"):
            _implausible_dates(values, spec, city, now, problems, raw)
        if spec.allowed is not None:
            if coded is None:
                outside = values.notna() & ~values.isin(spec.allowed)
            problems.add(outside, spec.name, f"not one of the allowed values {spec.allowed}", raw)
        if spec.required:
            if coded is None:
                missing = values.isna()
            problems.add(missing & ~typed.failed, spec.name, "required value is missing")
        out[spec.name] = values
    if layer.temporal and layer.temporal.end:
        start, end = out[layer.temporal.start], out[layer.temporal.end]
        backwards = start.notna() & end.notna() & (end < start)
        problems.add(
            backwards,
            layer.temporal.end,
            "ends before it starts",
            end[backwards].astype(str) + " < " + start[backwards].astype(str),
        )
    return out


MULTI = {
    "MultiPoint": (0, shapely.multipoints),
    "MultiLineString": (1, shapely.multilinestrings),
    "MultiPolygon": (3, shapely.multipolygons),
}
TYPE_ID = {"Point": 0, "LineString": 1, "Polygon": 3, "MultiPoint": 4, "MultiLineString": 5, "MultiPolygon": 6}


def geometries(
    layer: LayerSpec, source: SourceSpec, frame: RawFrame, city: City, geocoder, problems: Problems
) -> tuple[np.ndarray, int, list[str] | None]:
    """(geometries in EPSG:4326, how many were repaired, canonical addresses of geocoded rows)."""
    table = frame.table
    result = table[GEOMETRY].to_numpy(dtype=object).copy()
    deferred = None  # (rows, x, y) of plain WKT points in the source CRS, made after the reprojection
    crs = frame.crs
    how = source.geometry
    if how and how.wkt:
        column = table[how.wkt]
        # Arrow texts as collected from a CSV (`_arrow_columns`), else the cells as Python objects
        texts = pa.array(column.array) if column.dtype == ARROW_TEXT else column.to_numpy(dtype=object)
        parsed, plain, x, y = parse_wkt_points(texts)
        # blank or not only matters where nothing parsed: a few cells, not a million distinct texts
        unreadable = shapely.is_missing(parsed) & ~plain
        failed = np.flatnonzero(unreadable)
        cells = texts[failed] if isinstance(texts, np.ndarray) else texts.take(pa.array(failed)).to_pylist()
        unreadable[failed] = ~coerce.blank(pd.Series(cells, dtype=object)).to_numpy()
        unreadable = pd.Series(unreadable, index=table.index)
        problems.step()
        for index in unreadable[unreadable].index:
            text = table.at[index, how.wkt]
            problems.add_row(index, how.wkt, wkt_problem(text), str(text))
        take = shapely.is_missing(result) & ~unreadable.to_numpy()
        if how.x:  # coordinates fill the rows still without geometry: the points are made now
            parsed[plain] = shapely.points(x, y)
        else:  # plain points need no repair: each is made once, in EPSG:4326, after the rest is reprojected
            later = take & plain
            deferred = (np.flatnonzero(later), x[later[plain]], y[later[plain]])
            take &= ~plain
        result[take] = parsed[take]
        # the texts (a million distinct strings) are read: the reprojection below peaks with two
        # geometries per record, so nothing else of the kind is kept alive through it
        del texts, parsed, x, y
        frame.table = table = table.drop(columns=[how.wkt])
    if how and how.x:
        x = pd.to_numeric(coerce._numeric_text(table[how.x]), errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(coerce._numeric_text(table[how.y]), errors="coerce").to_numpy(dtype=float)
        points = points_from_xy(x, y, how.axis_order == "northing_easting")
        take = shapely.is_missing(result)
        result[take] = points[take]
    empty = shapely.is_empty(result)
    problems.add(pd.Series(empty, index=table.index), "geometry", "empty geometry")
    result[empty] = None
    # judged as delivered: reprojection turns a zero-area polygon into a valid sliver
    result, repaired, refused = repair(result, layer.geometry_type)
    problems.step()
    for position in np.flatnonzero(refused != None):  # noqa: E711 - elementwise on an object array
        problems.add_row(table.index[position], "geometry", refused[position])
    result = to_wgs84(result, crs)
    if deferred is not None:
        result[deferred[0]] = points_to_wgs84(deferred[1], deferred[2], crs)
        del deferred
    addresses: list[str] | None = None
    if how and how.address and geocoder is not None:
        result, addresses = _geocode(table, how.address, result, geocoder, problems)
    missing = pd.Series(shapely.is_missing(result), index=table.index)
    already = pd.Series(table.index.isin(problems.bad), index=table.index)
    problems.add(missing & ~already, "geometry", "no geometry: neither coordinates nor a known address")
    kinds = shapely.get_type_id(result)
    if layer.geometry_type in MULTI:  # single parts promoted to Multi in one call
        part, make = MULTI[layer.geometry_type]
        single = np.flatnonzero(kinds == part)
        if len(single):
            result[single] = make(result[single], indices=np.arange(len(single)))
            kinds[single] = TYPE_ID[layer.geometry_type]
    problems.step()
    for i in np.flatnonzero((kinds != TYPE_ID[layer.geometry_type]) & (kinds != -1)):
        fitted, why = fit_type(result[i], layer.geometry_type)
        if why:
            problems.add_row(table.index[i], "geometry", why)
        result[i] = fitted
    outside = ~shapely.is_missing(result) & ~within_box(result, city.extent)
    texts = shapely.to_wkt(result[outside], rounding_precision=-1)
    problems.step()
    for position, bounds, text in zip(np.flatnonzero(outside), shapely.bounds(result[outside]), texts, strict=True):
        problems.add_row(table.index[position], "geometry", beyond_extent(bounds, city.extent), text[:80])
    return result, int(repaired.sum()), addresses


def _coordinate(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def beyond_extent(bounds: np.ndarray, extent: tuple[float, float, float, float]) -> str:
    """Why a geometry is outside the city, naming each bound it crosses: a person who sees
    `x 23.31 is east of 23.2` or `y 3335093 is north of 52.45` sees the wrong CRS or the swapped axes."""
    minx, miny, maxx, maxy = bounds
    west, south, east, north = extent
    crossed = [
        f"x {_coordinate(minx)} is west of {_coordinate(west)}" if minx < west else None,
        f"x {_coordinate(maxx)} is east of {_coordinate(east)}" if maxx > east else None,
        f"y {_coordinate(miny)} is south of {_coordinate(south)}" if miny < south else None,
        f"y {_coordinate(maxy)} is north of {_coordinate(north)}" if maxy > north else None,
    ]
    named = ", ".join(c for c in crossed if c) or "not a finite coordinate"
    return f"outside the city extent: {named} (wrong CRS or swapped X/Y?)"


def _geocode(table: pd.DataFrame, column: str, result: np.ndarray, geocoder, problems: Problems):
    """Geometry for the rows that have none yet, from their address; only those rows are visited."""
    addresses: list[str | None] = [None] * len(table)
    texts = table[column].to_numpy(dtype=object)
    buildings = table[BUILDING].to_numpy(dtype=object)
    problems.step()
    for position in np.flatnonzero(shapely.is_missing(result)):
        building, text = buildings[position], texts[position]
        if building is None or isinstance(building, float):
            if not isinstance(text, str) or not text.strip():
                continue
            matches, reasons = geocoder.match_text_once(text)  # registers repeat addresses
        else:
            payload = geocoder.lookup(building)
            matches = [(building, payload)] if payload is not None else []
            reasons = [] if matches else [f"не найден в адресном реестре: {text}"]
        if not matches:
            problems.add_row(
                table.index[position],
                column,
                "; ".join(reasons) or "address not found in the address register",
                str(text),
            )
            continue
        points = [payload[0] for _, payload in matches]
        result[position] = points[0] if len(points) == 1 else shapely.MultiPoint(points).centroid
        addresses[position] = matches[0][1][1]
    return result, addresses


def normalise(
    layer: LayerSpec,
    source: SourceSpec,
    frame: RawFrame,
    city: City,
    geocoder=None,
    now: dt.datetime | None = None,
    problems: Problems | None = None,
) -> tuple[gpd.GeoDataFrame, list[Reject], int]:
    """(published rows of this source, rejects, repaired geometry count); `now` defaults to the clock.
    `problems`: one for every chunk of a source (`collect_chunks`); the rejects are then only the reader's
    of this chunk, those of its rows are taken from `problems` once every chunk is in."""
    now = now or dt.datetime.now(dt.UTC)
    chunked = problems is not None
    if problems is None:
        problems = Problems(frame.source, frame.table[ROW])
    else:
        problems.chunk(frame.table[ROW])
    values = attributes(layer, source, frame, city, problems, now)
    # typed: of the raw cells only what the geometry is made of stays (the build's peak is ahead)
    how = source.geometry
    spatial = [how.wkt, how.x, how.y, how.address] if how else []
    keep = [c for c in frame.table.columns if c in (*spatial, ROW, GEOMETRY, BUILDING)]
    frame.table = frame.table[keep]
    shapes, repaired, addresses = geometries(layer, source, frame, city, geocoder, problems)
    if addresses is not None and source.geometry and source.geometry.address in source.columns:
        # a geocoded record carries the register's spelling of its address, not the clerk's
        address_field = source.columns[source.geometry.address]
        canonical = pd.Series(addresses, index=values.index)
        values[address_field] = canonical.where(canonical.notna(), values[address_field])
    values[ROW] = frame.table[ROW]
    # the rejected rows left out before the frame is built, not copied out of it afterwards
    kept = ~values.index.isin(problems.bad)
    values = values[kept]
    published = gpd.GeoDataFrame(values, geometry=gpd.GeoSeries(shapes[kept], index=values.index), crs="EPSG:4326")
    return published, frame.rejects if chunked else frame.rejects + problems.rejects(), repaired
