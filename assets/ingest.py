"""One layer from its declared sources to a publishable frame: read, join, normalise, deduplicate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from assets.fids import FidsBeside
from assets.geocode import AddressIndex
from assets.joins import apply_joins, joined_columns
from assets.normalize import ROW, Problems, collect_chunks, normalise
from assets.publish import publish_geopackage, write_rejects
from assets.records import Counts, Reject, SourceError
from assets.responsibility import published_zones, tag_zones
from assets.source_crs import source_crs
from assets.sources import open_source
from layers.catalog import Catalog, LayerSpec, SourceSpec
from layers.settings import PathSettings
from server.memory import collect_young, collector_paused, release_free_memory


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


# Records normalised at a time: the raw cells (a million distinct texts: ids, WKT, phone numbers) of one
# chunk are alive at once, not those of the whole source. Sources with joins are built whole.
CHUNK_ROWS = 100_000


def build_layer(
    spec: LayerSpec,
    catalog: Catalog,
    paths: PathSettings,
    now: dt.datetime | None = None,
    chunk_rows: int | None = CHUNK_ROWS,
) -> LayerBuild:
    """Raises SourceError when a source file as a whole is unusable: publishing the layer without
    one of its sources would silently drop that source's features from the map. `now` (default:
    the clock) places the plausible-date window. A source is read and normalised `chunk_rows` records
    at a time (None: whole), with the same outcome."""
    with collector_paused(), FidsBeside(spec.id) as fids:
        return _build_layer(spec, catalog, paths, now, chunk_rows, fids)


def _build_layer(
    spec: LayerSpec,
    catalog: Catalog,
    paths: PathSettings,
    now: dt.datetime | None,
    chunk_rows: int | None,
    fids: FidsBeside,
) -> LayerBuild:
    now = now or dt.datetime.now(dt.UTC)  # one window for every chunk
    geocoders = None
    label = lambda relative: relative  # noqa: E731 - messages name files as the catalog does
    sources, rejects, warnings, counts, unjoined, crs_used = [], [], [], Counts(), 0, []
    for source, path, file_label in source_files(spec, paths):
        table = open_source(source, path, file_label)
        if geocoders is None:  # after the first source is open: a CSV's reader process starts up meanwhile
            try:
                geocoders = {layer: address_index(layer, catalog, paths) for layer in spec.geocode_layers}
            except BaseException:
                table.close()  # its reader stops now, not when the collector finds it
                raise
        constants = {**source.constants, source.source_field: file_label} if source.source_field else source.constants
        effective = source.model_copy(update={"columns": joined_columns(source), "select": {}, "constants": constants})
        geocoder = geocoders.get(source.geometry.geocode) if source.geometry and source.geometry.geocode else None
        problems = Problems(table.source)
        used, unusable, selected_before = None, None, 0
        pieces, reader_rejects, join_rejects, source_warnings = [], [], [], []
        rows = None if source.joins else chunk_rows  # a join is judged on the whole table
        for raw in collect_chunks(table, source, catalog.city.nulls_for(source), rows):
            if used is None and unusable is None:
                try:
                    used = source_crs(source, table.crs, catalog.city, file_label)
                except SourceError as error:
                    unusable = error  # raised once the file is read, as when it was read whole
            source_warnings += raw.warnings
            if unusable is not None:
                continue
            raw.crs = used.crs
            selected = len(raw.table)
            if source.select:
                mask = pd.Series(True, index=raw.table.index)
                for column, wanted in source.select.items():
                    mask &= raw.table[column].astype(str) == wanted
                raw.table = raw.table[mask]
                raw.table.index = pd.RangeIndex(selected_before, selected_before + len(raw.table))
                selected_before += len(raw.table)
                counts.skipped += selected - len(raw.table)
                raw.read -= selected - len(raw.table)
            if source.joins:
                raw.table, outcome = apply_joins(raw.table, source, paths.source_path, label)
                join_rejects += outcome.rejects
                unjoined += outcome.unmatched_records
            published, chunk_rejects, repaired = normalise(spec, effective, raw, catalog.city, geocoder, now, problems)
            fids.add(published[spec.id_field].to_numpy(dtype=object))  # hashed beside while the next chunk is read
            counts.read += raw.read
            counts.repaired += repaired
            reader_rejects += chunk_rejects
            pieces.append(published)
            del raw, published  # the raw table is the build's largest object: gone before the next chunk
            collect_young()  # the chunk's own cycles, if any: the collector is paused for the build
            release_free_memory()  # glibc keeps a chunk's freed memory in its arenas (the read-ahead thread has one)
        if unusable is not None:
            raise unusable
        crs_used.append(f"{file_label}: {used.label}")
        warnings += source_warnings + ([used.warning] if used.warning else [])
        published_count = sum(len(piece) for piece in pieces)
        counts.by_source[source.path] = counts.by_source.get(source.path, 0) + published_count
        for piece in pieces:
            piece["_source"] = file_label
        sources.append(pieces)
        rejects += join_rejects + reader_rejects + problems.rejects()
        del pieces
    hashed = fids.result()  # the fid of every published row of every chunk, in order; its child gone before the peak
    # the duplicates leave each chunk before the chunks are joined: a copy of the whole layer without them
    # would cost 100+ MB at the peak, at a million rows
    kinds = [_column_kinds(pieces) for pieces in sources]
    duplicate_rejects, duplicated = _first_of_each_id(sources, spec)
    if duplicated is not None:
        hashed = hashed[~duplicated]
        start = 0
        for pieces in sources:
            for i, piece in enumerate(pieces):
                drop = duplicated[start : start + len(piece)]
                start += len(piece)
                if drop.any():
                    pieces[i] = piece[~drop]  # the chunk with them goes now
                del piece
    frames = [_chunks_joined(pieces, kind) for pieces, kind in zip(sources, kinds, strict=True)]
    del sources
    # one source (the usual case) is not copied again
    frame = (frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)) if frames else gpd.GeoDataFrame()
    del frames
    if duplicated is not None:
        frame.index = pd.RangeIndex(len(frame))
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
    rejects += duplicate_rejects
    # the zones as published now: a zone layer that changes is upstream, so it re-runs this one
    zones, zone_warnings = published_zones(spec, catalog, paths)
    warnings += zone_warnings
    if zones and len(frame):
        frame = tag_zones(frame, zones)
    if len(hashed) != len(frame):
        raise AssertionError(f"{len(hashed)} fids for {len(frame)} features")
    frame.insert(0, "fid", hashed)
    counts.published = len(frame)
    counts.rejected = len({(r.source, r.record) for r in rejects})
    release_free_memory()  # the chunks joined: what they held is free, before publishing adds its own
    return LayerBuild(spec, frame, rejects, counts, warnings, crs_used, unjoined)


def _column_kinds(pieces: list[gpd.GeoDataFrame]) -> dict[str, pd.StringDtype]:
    """The text type of each column that is text in some chunk and not in every one (pandas infers a
    column's type per chunk: one without any text is of objects); normalised whole, it is text."""
    kinds: dict[str, set] = {}
    for piece in (piece for piece in pieces if len(piece)):
        for column in piece.columns:
            kinds.setdefault(column, set()).add(piece[column].dtype)
    text = {column: [k for k in found if isinstance(k, pd.StringDtype)] for column, found in kinds.items()}
    return {column: text[column][0] for column, found in kinds.items() if len(found) > 1 and len(text[column]) == 1}


def _chunks_joined(pieces: list[gpd.GeoDataFrame], kinds: dict[str, pd.StringDtype]) -> gpd.GeoDataFrame:
    """A source's published chunks as one frame, as normalising it whole gives it: same index (the rows'
    positions), same column types (`kinds`: see `_column_kinds`)."""
    if len(pieces) == 1:
        return pieces[0]
    full = [piece for piece in pieces if len(piece)] or pieces[:1]
    joined = pd.concat(full) if len(full) > 1 else full[0]
    for column, kind in kinds.items():
        joined[column] = joined[column].astype(kind)
    return joined


def _first_of_each_id(sources: list[list[gpd.GeoDataFrame]], spec: LayerSpec) -> tuple[list[Reject], np.ndarray | None]:
    """(a reject for each record whose id an earlier record of the layer has, in layer order; which rows
    of the layer they are, None for none). Only the ids, sources and record numbers are joined for it."""
    pieces = [piece for chunks in sources for piece in chunks]
    if not pieces:
        return [], None
    ids = pd.concat([piece[spec.id_field] for piece in pieces], ignore_index=True)
    duplicated = ids.duplicated(keep="first")
    if not duplicated.any():
        return [], None
    # the rows of the duplicated ids only, each piece's taken alone: not a second copy of the whole layer
    twice = ids.isin(ids[duplicated]).to_numpy()
    ends = np.cumsum([len(piece) for piece in pieces])
    involved = pd.concat(
        [
            piece[[spec.id_field, "_source", ROW]].iloc[np.flatnonzero(twice[end - len(piece) : end])]
            for piece, end in zip(pieces, ends, strict=True)
        ],
        ignore_index=True,
    )
    again = duplicated[twice].to_numpy()
    first, later = involved[~again], involved[again]
    # where each repeated id was first seen, found for all at once; the cells as a row of the table gives them
    seen = pd.Index(first[spec.id_field]).get_indexer(later[spec.id_field])
    first_cells = first.to_numpy(dtype=object)
    rejects = [
        Reject(
            source,
            str(record),
            spec.id_field,
            f"duplicate {spec.id_field} {key!r}: first seen in {first_cells[at, 1]} {first_cells[at, 2]}",
            str(key),
        )
        for (key, source, record), at in zip(later.to_numpy(dtype=object), seen, strict=True)
    ]
    return rejects, duplicated.to_numpy()


def publish_layer(build: LayerBuild, paths: PathSettings) -> Path:
    """The GeoPackage first, then its rejects: a rejects file always describes a publication that
    happened. Raises PublicationError (file and OS error) when the file system refuses either."""
    target = paths.published_path(build.spec.id)
    with collector_paused():
        publish_geopackage(build.frame, build.spec, target, build.counts.by_source)
        write_rejects(build.rejects, paths.rejects_path(build.spec.id))
    return target
