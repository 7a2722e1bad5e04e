"""Typed models of the layer catalog (`layers/*.yaml`) and the city file (`layers/_city.yaml`)."""

from __future__ import annotations

import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import pyproj
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CATALOG_DIR = Path(__file__).resolve().parent
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")

FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
GeometryType = Literal["Point", "LineString", "MultiLineString", "MultiPolygon"]
Domain = Literal["repairs", "closures", "outages", "zones", "reference"]
SourceFormat = Literal["csv", "xlsx", "shapefile", "geojson", "json", "wzdx", "notices"]


class CatalogError(ValueError):
    """A catalog file is unreadable or invalid; the message names the file and the key."""


class Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: a silently ignored key is a silently wrong layer.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(Strict):
    ru: str
    en: str


class FieldSpec(Strict):
    name: str
    type: FieldType
    title: Text
    required: bool = False
    allowed: list[str] | None = None
    internal: bool = False

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value) or value in {"fid", "geom"}:
            raise ValueError(f"{value!r} is not a usable field name (lower-case identifier, not fid/geom)")
        return value


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
    path: str
    format: SourceFormat
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str | None = None
    crs: str = "EPSG:4326"
    date_format: str = "%d.%m.%Y"
    columns: dict[str, str] = Field(default_factory=dict)  # {source column: layer field}
    values: dict[str, dict[str, str]] = Field(default_factory=dict)  # {field: {source value: value}}
    constants: dict[str, Any] = Field(default_factory=dict)  # {field: value for every record}
    geometry: GeometrySource | None = None
    select: dict[str, str] = Field(default_factory=dict)  # keep only records whose field equals value
    joins: list[JoinSpec] = Field(default_factory=list)
    records: str | None = None  # json: dotted path to the array of records (default: the document is one)
    # json/wzdx: a list value is a JSON text cell unless named here: {source column: separator}
    join_lists: dict[str, str] = Field(default_factory=dict)


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
    sources: list[SourceSpec]
    style: StyleHints = Field(default_factory=StyleHints)
    zone_topology: bool = False  # check a zone set for overlaps and gaps
    severity: Severity | None = None  # counted in the disruption-load raster while active
    freshness_minutes: int | None = None
    schedule: str | None = None  # cron; by default the domain's cadence

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
            for join in source.joins:
                targets |= set(join.columns.values())
            unknown = targets - known
            if unknown:
                raise ValueError(f"sources[{number}] maps to unknown fields {sorted(unknown)}")
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
    extent: tuple[float, float, float, float]
    crs: dict[str, CrsDefinition]

    def resolve_crs(self, ref: str) -> pyproj.CRS:
        """A CRS id of this city (`msk38-3`) or any authority code pyproj knows (`EPSG:4326`)."""
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


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. In YAML 1.1 a Shapefile column called NO, or a key
    called on, silently becomes a boolean."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506 - safe loader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    return data


def _explain(path: Path, exc: ValidationError) -> CatalogError:
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors())
    return CatalogError(f"{path}: {problems}")


def load_city(catalog_dir: Path = CATALOG_DIR) -> City:
    path = catalog_dir / "_city.yaml"
    try:
        return City.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise _explain(path, exc) from None


def load_layer(path: Path, city: City) -> LayerSpec:
    data = _read_yaml(path)
    if "id" in data:
        raise CatalogError(f"{path}: id: the layer id is the file name, do not repeat it")
    if not IDENTIFIER.match(path.stem):
        raise CatalogError(f"{path}: the file name must be a lower-case identifier (it is the layer id)")
    try:
        spec = LayerSpec.model_validate({"id": path.stem, **data})
    except ValidationError as exc:
        raise _explain(path, exc) from None
    for number, source in enumerate(spec.sources):
        try:
            city.resolve_crs(source.crs)
        except pyproj.exceptions.CRSError:
            raise CatalogError(
                f"{path}: sources.{number}.crs: unknown CRS {source.crs!r} "
                f"(use an id from _city.yaml {sorted(city.crs)} or an authority code like EPSG:4326)"
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
    return Catalog(layers, city, directory)


@lru_cache(maxsize=4)
def cached_catalog(catalog_dir: str) -> Catalog:
    """The catalog of a directory, loaded once per process (pygeoapi builds providers per request)."""
    return load_catalog(catalog_dir)
