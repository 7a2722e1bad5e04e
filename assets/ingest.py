"""One layer from its declared sources to a publishable frame: read, join, normalise, deduplicate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from assets.geocode import AddressIndex
from assets.joins import apply_joins, joined_columns
from assets.normalize import ROW, collect, normalise
from assets.publish import publish_geopackage, stable_fids, write_rejects
from assets.records import Counts, Reject, SourceError
from assets.responsibility import published_zones, tag_zones
from assets.source_crs import source_crs
from assets.sources import open_source
from layers.catalog import Catalog, LayerSpec, SourceSpec
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


def source_files(spec: LayerSpec, paths: PathSettings) -> Iterator[tuple[SourceSpec, Path, str]]:
    """(source, file, how messages name the file) for each file of each source: its one file, or
    every match of its glob, sorted; a glob that matches nothing is a missing file."""
    for source in spec.sources:
        if not source.is_file_set:
            yield source, paths.source_path(source.path), source.path
            continue
        found = paths.source_files(source.path)
        if not found:
            folders = f"{paths.live_dir}, {paths.sample_dir}"
            raise SourceError(source.path, f"file not found: no file matches the pattern (looked in {folders})")
        for path, relative in found:
            yield source, path, relative


def build_layer(spec: LayerSpec, catalog: Catalog, paths: PathSettings, now: dt.datetime | None = None) -> LayerBuild:
    """Raises SourceError when a source file as a whole is unusable: publishing the layer without
    one of its sources would silently drop that source's features from the map. `now` (default:
    the clock) places the plausible-date window."""
    geocoders = {layer: address_index(layer, catalog, paths) for layer in spec.geocode_layers}
    label = lambda relative: relative  # noqa: E731 - messages name files as the catalog does
    frames, rejects, warnings, counts, unjoined, crs_used = [], [], [], Counts(), 0, []
    for source, path, file_label in source_files(spec, paths):
        table = open_source(source, path, file_label)
        raw = collect(table, source, catalog.city.nulls_for(source))
        used = source_crs(source, table.crs, catalog.city, file_label)
        raw.crs = used.crs
        crs_used.append(f"{file_label}: {used.label}")
        warnings += raw.warnings + ([used.warning] if used.warning else [])
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
        constants = {**source.constants, source.source_field: file_label} if source.source_field else source.constants
        effective = source.model_copy(update={"columns": joined_columns(source), "select": {}, "constants": constants})
        geocoder = geocoders.get(source.geometry.geocode) if source.geometry and source.geometry.geocode else None
        published, source_rejects, repaired = normalise(spec, effective, raw, catalog.city, geocoder, now)
        counts.read += raw.read
        counts.repaired += repaired
        counts.by_source[source.path] = counts.by_source.get(source.path, 0) + len(published)
        published["_source"] = file_label
        frames.append(published)
        rejects += source_rejects
        del raw, published  # the raw table is the build's largest object: gone before the next source
    # one source (the usual case) is not copied: at a million rows a concat costs 100+ MB at the peak
    frame = (frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)) if frames else gpd.GeoDataFrame()
    del frames  # the dropping of duplicates below copies the frame: the one before it is gone with it
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
    frame, duplicate_rejects = _first_of_each_id(frame, spec)
    rejects += duplicate_rejects
    # the zones as published now: a zone layer that changes is upstream, so it re-runs this one
    zones, zone_warnings = published_zones(spec, catalog, paths)
    warnings += zone_warnings
    if zones and len(frame):
        frame = tag_zones(frame, zones)
    frame.insert(0, "fid", stable_fids(spec.id, frame[spec.id_field]))
    counts.published = len(frame)
    counts.rejected = len({(r.source, r.record) for r in rejects})
    return LayerBuild(spec, frame, rejects, counts, warnings, crs_used, unjoined)


def _first_of_each_id(frame: gpd.GeoDataFrame, spec: LayerSpec) -> tuple[gpd.GeoDataFrame, list[Reject]]:
    duplicated = frame[spec.id_field].duplicated(keep="first")
    if not duplicated.any():
        return frame, []
    # the first rows of the duplicated ids only, not a second copy of the whole layer
    twice = frame[spec.id_field].isin(frame.loc[duplicated, spec.id_field])
    first_seen = frame[twice & ~duplicated].set_index(spec.id_field)
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
    """The GeoPackage first, then its rejects: a rejects file always describes a publication that
    happened. Raises PublicationError (file and OS error) when the file system refuses either."""
    target = paths.published_path(build.spec.id)
    publish_geopackage(build.frame, build.spec, target, build.counts.by_source)
    write_rejects(build.rejects, paths.rejects_path(build.spec.id))
    return target
