"""One layer from its declared sources to a publishable frame: read, join, normalise, deduplicate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from assets.geocode import AddressIndex
from assets.joins import apply_joins, joined_columns
from assets.normalize import ROW, collect, normalise
from assets.publish import publish_geopackage, stable_fid, write_rejects
from assets.records import Counts, Reject, SourceError
from assets.sources import open_source
from layers.catalog import Catalog, LayerSpec
from layers.settings import PathSettings


@dataclass
class LayerBuild:
    spec: LayerSpec
    frame: gpd.GeoDataFrame
    rejects: list[Reject]
    counts: Counts
    warnings: list[str] = field(default_factory=list)
    source_crs: list[str] = field(default_factory=list)
    unjoined: int = 0

    @property
    def bbox(self) -> list[float] | None:
        return [round(v, 6) for v in self.frame.total_bounds] if len(self.frame) else None


def address_index(layer_id: str, catalog: Catalog, paths: PathSettings) -> AddressIndex:
    """The published address register as a geocoder; its layer must have `street` and `house`."""
    path = paths.published_path(layer_id)
    if not path.exists():
        raise SourceError(f"{layer_id}.gpkg", f"the address register layer {layer_id!r} is not published yet")
    register = pyogrio.read_dataframe(path, columns=["street", "house", "full_address"])
    return AddressIndex(
        (street, house, (geometry, full or f"{street}, {house}"))
        for street, house, full, geometry in zip(
            register.street, register.house, register.full_address, register.geometry, strict=True
        )
    )


def build_layer(spec: LayerSpec, catalog: Catalog, paths: PathSettings) -> LayerBuild:
    """Raises SourceError when a source file as a whole is unusable: publishing the layer without
    one of its sources would silently drop that source's features from the map."""
    geocoders = {layer: address_index(layer, catalog, paths) for layer in spec.geocode_layers}
    label = lambda relative: relative  # noqa: E731 - messages name files as the catalog does
    frames, rejects, warnings, counts, unjoined = [], [], [], Counts(), 0
    for source in spec.sources:
        table = open_source(source, paths.source_path(source.path), label(source.path))
        raw = collect(table, source)
        warnings += raw.warnings
        selected = len(raw.table)
        if source.select:
            mask = pd.Series(True, index=raw.table.index)
            for column, wanted in source.select.items():
                mask &= raw.table[column].astype(str) == wanted
            raw.table = raw.table[mask].reset_index(drop=True)
            counts.skipped += selected - len(raw.table)
            raw.read -= selected - len(raw.table)
        if source.joins:
            raw.table, outcome = apply_joins(raw.table, source, paths.source_path, label)
            rejects += outcome.rejects
            unjoined += outcome.unmatched_records
        effective = source.model_copy(update={"columns": joined_columns(source), "select": {}})
        geocoder = geocoders.get(source.geometry.geocode) if source.geometry and source.geometry.geocode else None
        published, source_rejects, repaired = normalise(spec, effective, raw, catalog.city, geocoder)
        counts.read += raw.read
        counts.repaired += repaired
        counts.by_source[source.path] = len(published)
        published["_source"] = source.path
        frames.append(published)
        rejects += source_rejects
    frame = pd.concat(frames, ignore_index=True) if frames else gpd.GeoDataFrame()
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
    frame, duplicate_rejects = _first_of_each_id(frame, spec)
    rejects += duplicate_rejects
    frame.insert(0, "fid", [stable_fid(spec.id, value) for value in frame[spec.id_field]])
    counts.published = len(frame)
    counts.rejected = len({(r.source, r.record) for r in rejects})
    return LayerBuild(spec, frame, rejects, counts, warnings, sorted({s.crs for s in spec.sources}), unjoined)


def _first_of_each_id(frame: gpd.GeoDataFrame, spec: LayerSpec) -> tuple[gpd.GeoDataFrame, list[Reject]]:
    duplicated = frame[spec.id_field].duplicated(keep="first")
    first_seen = frame[~duplicated].set_index(spec.id_field)
    rejects = [
        Reject(
            row["_source"],
            str(row[ROW]),
            spec.id_field,
            f"duplicate {spec.id_field} {row[spec.id_field]!r}: first seen in "
            f"{first_seen.at[row[spec.id_field], '_source']} {first_seen.at[row[spec.id_field], ROW]}",
            str(row[spec.id_field]),
        )
        for _, row in frame[duplicated].iterrows()
    ]
    return frame[~duplicated].reset_index(drop=True), rejects


def publish_layer(build: LayerBuild, paths: PathSettings) -> Path:
    write_rejects(build.rejects, paths.rejects_path(build.spec.id))
    return publish_geopackage(build.frame, build.spec, paths.published_path(build.spec.id))
