"""Typed models of the layer catalog (`layers/*.yaml`) and the city file (`layers/_city.yaml`)."""

from __future__ import annotations

import datetime as dt
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import pyproj
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from layers.catalog_yaml import CatalogError, read_yaml
from layers.domains import DOMAINS

CATALOG_DIR = Path(__file__).resolve().parent
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")

FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
GeometryType = Literal["Point", "LineString", "MultiLineString", "MultiPolygon"]
# coordination: layers derived from the others by rules (conflicts), not read from files
Domain = Literal[tuple(DOMAINS)]  # declared once, in layers/domains.py
SourceFormat = Literal["csv", "xlsx", "shapefile", "geojson", "geopackage", "json", "wzdx", "notices"]
GLOB_CHARACTERS = frozenset("*?[")
# Cells that only say "no value" in the registers cities export; a city replaces the list with
# `nulls:` in _city.yaml, a source with its own `nulls:` (compared trimmed, case-insensitively).
DEFAULT_NULLS = ("Не заполнено", "Незаполнено", "н/д", "нет данных", "-", "—", "N/A", "NULL", "#N/A")


class Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: a silently ignored key is a silently wrong layer.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(Strict):
    ru: str
    en: str


class DateWindow(Strict):
    """Plausible dates: a value before `earliest` or more than `latest_years_ahead` years after today
    is a typing or export accident (01.01.1900 is Excel's zero, 2206 a mistyped 2026) and is rejected.
    In _city.yaml it is the city-wide default; on a date/datetime field, what it names overrides it."""

    earliest: dt.date | None = None
    latest_years_ahead: int | None = Field(default=None, ge=0)

    def over(self, default: DateWindow) -> DateWindow:
        """This window with the keys it does not name taken from `default`."""
        return default.model_copy(update=self.model_dump(exclude_unset=True))

    def latest(self, today: dt.date) -> dt.date | None:
        if self.latest_years_ahead is None:
            return None
        year = today.year + self.latest_years_ahead
        return today.replace(year=year, day=28) if (today.month, today.day) == (2, 29) else today.replace(year=year)


class FieldSpec(Strict):
    name: str
    type: FieldType
    title: Text
    required: bool = False
    allowed: list[str] | None = None
    internal: bool = False
    dates: DateWindow | None = None  # date/datetime fields: override the city's plausible window
    # what a stored value reads as, for people: {value: {ru: …, en: …}}; popups and legends show these
    labels: dict[str, Text] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value) or value in {"fid", "geom"}:
            raise ValueError(f"{value!r} is not a usable field name (lower-case identifier, not fid/geom)")
        return value

    @model_validator(mode="after")
    def _dates_on_dates(self) -> FieldSpec:
        if self.dates is not None and self.type not in ("date", "datetime"):
            raise ValueError(f"dates: only a date or datetime field has a plausible window, {self.name} is {self.type}")
        return self

    @model_validator(mode="after")
    def _labels_of_allowed(self) -> FieldSpec:
        strays = sorted(set(self.labels) - set(self.allowed)) if self.allowed is not None else []
        if strays:
            raise ValueError(f"labels of {self.name}: {strays} are not among its allowed values")
        return self


class Temporal(Strict):
    start: str
    end: str | None = None


class GeometrySource(Strict):
    """Where a record's geometry comes from; the first that yields a geometry wins."""

    wkt: str | None = None
    x: str | None = None
    y: str | None = None
    # Russian surveyors write X = northing, Y = easting: say which column holds what.
    axis_order: Literal["easting_northing", "northing_easting"] = "easting_northing"
    address: str | None = None
    geocode: str | None = None  # layer id of the address register to match `address` against
    # json sources: a GeoJSON geometry object at a dotted path, or a flat coordinate array
    # ([lat, lng, lat, lng…] or [lng, lat…]) at a path, read as the declared kind
    geojson: str | None = None
    coordinates: str | None = None
    kind: Literal["point", "line", "polygon"] | None = None
    coordinate_order: Literal["lon_lat", "lat_lon"] = "lon_lat"

    @model_validator(mode="after")
    def _complete(self) -> GeometrySource:
        if (self.x is None) != (self.y is None):
            raise ValueError("x and y go together")
        if (self.coordinates is None) != (self.kind is None):
            raise ValueError("coordinates and kind go together (kind: point, line or polygon)")
        if self.address and not self.geocode:
            raise ValueError("address needs geocode: <address register layer id>")
        return self


class JoinSpec(Strict):
    """An attribute table joined to the source records (deputies to districts, officers to precincts)."""

    path: str
    format: Literal["csv", "xlsx"]
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str | None = None
    match: dict[str, str]  # {field of the layer: column of the joined table} (not "on": YAML reads it as true)
    columns: dict[str, str]  # {column of the joined table: field of the layer}


class SourceSpec(Strict):
    # Relative to the sample/live folders. A glob (`zones/districts.*.geojson`) reads every match,
    # sorted, as this one source; when the live folder has any match, only the live files are read.
    path: str
    format: SourceFormat
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str | None = None  # xlsx: the sheet (default: the first)
    layer: str | None = None  # geopackage: the layer (default: the first)
    # The CRS of the coordinates: a city id from _city.yaml (`msk38-3`), `EPSG:2263`,
    # `http://www.opengis.net/def/crs/EPSG/0/2263` or `urn:ogc:def:crs:EPSG::2263`. Without it the
    # file says (Shapefile .prj, GeoJSON `crs` member or RFC 7946 CRS84, GeoPackage srs), and a file
    # that cannot say (CSV, XLSX, JSON) is EPSG:4326. When both say and disagree, the catalog wins
    # with a warning naming both.
    crs: str | None = None
    date_format: str = "%d.%m.%Y"
    # Placeholders that mean "empty" (`Не заполнено`, `н/д`); None takes _city.yaml's `nulls`, [] none.
    # Applied before typing, so a placeholder in an integer or date column is an empty value, not a
    # reject; a cell named in `values:` for its field keeps that mapping.
    nulls: list[str] | None = None
    source_field: str | None = None  # a string field that gets each record's file (useful with a glob)
    columns: dict[str, str] = Field(default_factory=dict)  # {source column: layer field}
    values: dict[str, dict[str, str]] = Field(default_factory=dict)  # {field: {source value: value}}
    constants: dict[str, Any] = Field(default_factory=dict)  # {field: value for every record}
    geometry: GeometrySource | None = None
    select: dict[str, str] = Field(default_factory=dict)  # keep only records whose field equals value
    joins: list[JoinSpec] = Field(default_factory=list)
    records: str | None = None  # json: dotted path to the array of records (default: the document is one)
    # json/wzdx: a list value is a JSON text cell unless named here: {source column: separator}
    join_lists: dict[str, str] = Field(default_factory=dict)
    # An event feed (closures, outages) is empty when nothing is happening: no volume hold when it
    # goes from some records to none.
    may_be_empty: bool = False

    @property
    def is_file_set(self) -> bool:
        return bool(GLOB_CHARACTERS & set(self.path))

    @property
    def used_columns(self) -> list[str]:
        """Every source column (or dotted path) the catalog reads: mapped, selected on, or holding
        the geometry; each must exist in the file."""
        how = self.geometry
        where = [how.wkt, how.x, how.y, how.address, how.geojson, how.coordinates] if how else []
        return list(dict.fromkeys([*self.columns, *self.select, *(c for c in where if c)]))


class StyleHints(Strict):
    color: str = "#3b82f6"
    by: str | None = None  # field whose value picks the colour
    colors: dict[str, str] = Field(default_factory=dict)
    dashed: dict[str, list[str]] = Field(default_factory=dict)  # {field: values drawn dashed}
    width: float = 2.0
    radius: float = 5.0
    opacity: float = 0.8
    label: str | None = None
    min_zoom: int = 0


class Severity(Strict):
    """How much a feature of this layer weighs in the disruption-load raster."""

    by: str | None = None  # field whose value picks the weight
    weights: dict[str, float] = Field(default_factory=dict)
    default: float = 1.0
    radius_m: float = 50.0  # area of influence around the feature


# after Strict, Text and FieldSpec, which the coordination models build on (a cycle catalog.py closes here)
from layers.coordination import ConflictRule, Responsibility, rule_problems, with_carried_fields  # noqa: E402


class LayerSpec(Strict):
    id: str
    title: Text
    description: Text
    domain: Domain
    geometry_type: GeometryType
    id_field: str
    fields: list[FieldSpec]
    temporal: Temporal | None = None
    access: Literal["public", "internal"] = "public"
    sources: list[SourceSpec] = Field(default_factory=list)  # none only for a layer derived by `rules`
    style: StyleHints = Field(default_factory=StyleHints)
    zone_topology: bool = False  # check a zone set for overlaps and gaps
    # zone_topology: overlaps and gaps up to this many m² (equal-area) are digitising noise
    topology_tolerance_m2: float = Field(default=1.0, ge=0)
    # volume check: a publication losing more than this share of the previous one is held
    max_loss: float = Field(default=0.5, ge=0, le=1)
    severity: Severity | None = None  # counted in the disruption-load raster while active
    freshness_minutes: int | None = None
    schedule: str | None = None  # cron in city time; by default the domain's cadence (layers/domains.py)
    # a zone layer that answers for events: each event layer carries these fields of the zones it touches
    responsibility: Responsibility | None = None
    # a layer derived from the event layers by these rules (conflicts) instead of read from files
    rules: list[ConflictRule] = Field(default_factory=list)
    parties: dict[str, str] = Field(default_factory=dict)  # rules: {layer: field naming its responsible organisation}

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        # five fields of digits and */,- : a typo fails when the catalog loads, not when Dagster loads the code
        if value is not None and not re.fullmatch(r"[\d*/,\-]+( [\d*/,\-]+){4}", " ".join(value.split())):
            raise ValueError(f"{value!r} is not a cron expression of five fields (minute hour day month weekday)")
        return None if value is None else " ".join(value.split())

    @model_validator(mode="after")
    def _consistent(self) -> LayerSpec:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in fields: {names}")
        known = set(names)
        if self.id_field not in known:
            raise ValueError(f"id_field {self.id_field!r} is not among the fields")
        for key in [self.temporal.start, self.temporal.end] if self.temporal else []:
            if key is not None and key not in known:
                raise ValueError(f"temporal field {key!r} is not among the fields")
            if key is not None and self.field(key).type not in ("date", "datetime"):
                raise ValueError(f"temporal field {key!r} must be a date or datetime")
        if self.severity and self.severity.by and self.severity.by not in known:
            raise ValueError(f"severity.by {self.severity.by!r} is not among the fields")
        if self.severity and not self.temporal:
            raise ValueError("severity needs temporal fields: the raster counts features while they are active")
        for number, source in enumerate(self.sources):
            targets = set(source.columns.values()) | set(source.constants) | set(source.values)
            if source.source_field is not None:
                if source.source_field in known and self.field(source.source_field).type != "string":
                    raise ValueError(f"sources[{number}].source_field {source.source_field!r} must be a string field")
                targets.add(source.source_field)
            for join in source.joins:
                targets |= set(join.columns.values())
            unknown = targets - known
            if unknown:
                raise ValueError(f"sources[{number}] maps to unknown fields {sorted(unknown)}")
        return self

    @model_validator(mode="after")
    def _derived_or_read(self) -> LayerSpec:
        if self.rules and self.sources:
            raise ValueError("a layer derived by rules reads no sources")
        if not self.rules and not self.sources:
            raise ValueError("sources: at least one (or rules: for a derived layer)")
        if self.responsibility and self.domain != "zones":
            raise ValueError(f"responsibility: only a zones layer answers for events, not a {self.domain} layer")
        if self.responsibility:
            unknown = sorted(set(self.responsibility.fields) - {f.name for f in self.fields})
            if unknown:
                raise ValueError(f"responsibility.fields: {unknown} are not among the fields")
        return self

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    @property
    def public_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if not f.internal]

    @property
    def geocode_layers(self) -> set[str]:
        return {s.geometry.geocode for s in self.sources if s.geometry and s.geometry.geocode}


class City(Strict):
    name: Text
    timezone: str
    extent: tuple[float, float, float, float]  # west, south, east, north in lon/lat
    crs: dict[str, CrsDefinition] = Field(default_factory=dict)  # local systems by id, by parameters
    nulls: list[str] = Field(default_factory=lambda: list(DEFAULT_NULLS))  # city-wide placeholders
    dates: DateWindow = DateWindow(earliest=dt.date(1990, 1, 1), latest_years_ahead=15)

    @model_validator(mode="after")
    def _complete_dates(self) -> City:
        # a city that names only one bound keeps the other one's default, like a field does
        default = DateWindow(earliest=dt.date(1990, 1, 1), latest_years_ahead=15)
        object.__setattr__(self, "dates", self.dates.over(default))
        return self

    def nulls_for(self, source: SourceSpec) -> list[str]:
        """The placeholders of a source: its own `nulls`, else the city's."""
        return self.nulls if source.nulls is None else source.nulls

    def date_window(self, field: FieldSpec) -> DateWindow:
        return field.dates.over(self.dates) if field.dates is not None else self.dates

    def resolve_crs(self, ref: str) -> pyproj.CRS:
        """A CRS id of this city (`msk38-3`) or anything pyproj reads: `EPSG:2263`, an OGC URI
        (`http://www.opengis.net/def/crs/EPSG/0/2263`) or URN (`urn:ogc:def:crs:EPSG::2263`)."""
        if ref in self.crs:
            return self.crs[ref].pyproj
        return pyproj.CRS.from_user_input(ref)


class CrsDefinition(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))
    title: str
    proj4: str

    @field_validator("proj4")
    @classmethod
    def _parses(cls, value: str) -> str:
        pyproj.CRS.from_proj4(" ".join(value.split()))  # fail when the file loads, not in a job
        return " ".join(value.split())

    @cached_property
    def pyproj(self) -> pyproj.CRS:
        return pyproj.CRS.from_proj4(self.proj4)


City.model_rebuild()


def _explain(path: Path, exc: ValidationError) -> CatalogError:
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors())
    return CatalogError(f"{path}: {problems}")


def load_city(catalog_dir: Path = CATALOG_DIR) -> City:
    path = catalog_dir / "_city.yaml"
    try:
        return City.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise _explain(path, exc) from None


def load_layer(path: Path, city: City) -> LayerSpec:
    data = read_yaml(path)
    if "id" in data:
        raise CatalogError(f"{path}: id: the layer id is the file name, do not repeat it")
    if not IDENTIFIER.match(path.stem):
        raise CatalogError(f"{path}: the file name must be a lower-case identifier (it is the layer id)")
    try:
        spec = LayerSpec.model_validate({"id": path.stem, **data})
    except ValidationError as exc:
        raise _explain(path, exc) from None
    for number, source in enumerate(spec.sources):
        if source.crs is None:
            continue
        try:
            city.resolve_crs(source.crs)
        except pyproj.exceptions.CRSError:
            raise CatalogError(
                f"{path}: sources.{number}.crs: unknown CRS {source.crs!r} (use an id from _city.yaml "
                f"{sorted(city.crs)}, an authority code like EPSG:2263 or its OGC URI, or leave it out "
                "to take the file's own)"
            ) from None
    return spec


class Catalog(dict[str, LayerSpec]):
    """All layers by id, in file-name order, plus the city they belong to."""

    def __init__(self, layers: dict[str, LayerSpec], city: City, directory: Path):
        super().__init__(layers)
        self.city = city
        self.directory = directory

    def public(self) -> list[LayerSpec]:
        return [spec for spec in self.values() if spec.access == "public"]


def load_catalog(catalog_dir: Path | str = CATALOG_DIR) -> Catalog:
    directory = Path(catalog_dir)
    city = load_city(directory)
    layers = {
        path.stem: load_layer(path, city) for path in sorted(directory.glob("*.yaml")) if not path.name.startswith("_")
    }
    for spec in layers.values():
        missing = spec.geocode_layers - set(layers)
        if missing:
            raise CatalogError(
                f"{directory / (spec.id + '.yaml')}: geocode layer(s) {sorted(missing)} not in the catalog"
            )
    layers, carried = with_carried_fields(layers)
    for layer_id, problem in carried:
        raise CatalogError(f"{directory / (layer_id + '.yaml')}: {problem}")
    for spec in layers.values():
        for problem in rule_problems(spec, layers) if spec.rules else []:
            raise CatalogError(f"{directory / (spec.id + '.yaml')}: {problem}")
    return Catalog(layers, city, directory)


@lru_cache(maxsize=4)
def cached_catalog(catalog_dir: str) -> Catalog:
    """The catalog of a directory, loaded once per process (pygeoapi builds providers per request)."""
    return load_catalog(catalog_dir)
