"""A layer built chunk by chunk (`build_layer(chunk_rows=...)`) is the layer built whole: the same frame
(rows, index, column types), the same rejects in the same order, counts, warnings and CRS notes, on every
layer of the sample city, with chunks of one record and CSV pieces of a few hundred bytes."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

import assets.sources.csv_pieces as csv_pieces
from assets.ingest import build_layer, publish_layer
from assets.normalize import collect_chunks
from assets.responsibility import is_event_layer
from assets.sources import open_source
from layers.catalog import load_catalog
from tests.conftest import SAMPLE_MOMENT, city_paths

CATALOG = load_catalog()
NOW = dt.datetime.fromisoformat(SAMPLE_MOMENT)
# the address register and the zones first: event layers geocode against them and are tagged by them
ORDER = sorted(
    (spec for spec in CATALOG.values() if spec.sources),  # derived layers (conflicts) are built elsewhere
    key=lambda spec: (bool(spec.geocode_layers), is_event_layer(spec), spec.id),
)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    paths = city_paths(tmp_path_factory.mktemp("chunked"))
    for spec in ORDER:
        publish_layer(build_layer(spec, CATALOG, paths, now=NOW, chunk_rows=None), paths)
    return paths


@pytest.mark.parametrize("spec", ORDER, ids=lambda spec: spec.id)
@pytest.mark.parametrize("chunk_rows", [1, 7])
def test_a_layer_built_in_chunks_is_the_layer_built_whole(city, spec, chunk_rows, monkeypatch):
    whole = build_layer(spec, CATALOG, city, now=NOW, chunk_rows=None)
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 300)  # a CSV's chunks end where its pieces do
    chunked = build_layer(spec, CATALOG, city, now=NOW, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(chunked.frame, whole.frame, check_exact=True)
    assert chunked.rejects == whole.rejects
    assert chunked.counts == whole.counts
    assert chunked.warnings == whole.warnings
    assert (chunked.source_crs, chunked.unjoined) == (whole.source_crs, whole.unjoined)


def test_the_sample_register_is_read_in_several_chunks(city, monkeypatch):
    """The comparison above compares chunks, not one table twice: the repairs CSV, whose rows include
    rejected ones, comes in many chunks that add up to the whole (in a column without any text in a
    chunk, its empty cells are None rather than NaN: both are the empty cell to every step after)."""
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 300)
    source = next(s for s in CATALOG["repairs"].sources if s.format == "csv")
    path = city.source_path(source.path)
    whole = next(collect_chunks(open_source(source, path, source.path), source))
    chunks = list(collect_chunks(open_source(source, path, source.path), source, rows=7))
    assert len(chunks) > 5
    starts = [sum(len(c.table) for c in chunks[:i]) for i in range(len(chunks))]
    assert [c.table.index[0] for c in chunks] == starts
    joined = pd.concat([c.table for c in chunks])
    pd.testing.assert_frame_equal(joined, whole.table, check_exact=True, check_dtype=False)
    assert [r for c in chunks for r in c.rejects] == whole.rejects
    assert sum(c.read for c in chunks) == whole.read


def test_rows_the_reader_rejects_keep_their_place_among_the_chunks(city, tmp_path, monkeypatch):
    """Broken rows in the middle and at the very end of the repairs CSV (an open quote, a wrong width,
    bytes that are not cp1251 text, a repeated id): every reject is listed where reading it whole lists it."""
    sample = tmp_path / "sample"
    shutil.copytree(city.sample_dir, sample)
    permits = sample / "repairs" / "permits.csv"
    lines = permits.read_bytes().split(b"\r\n")
    broken = [b'X-1;"open;a;b', b"X-2;too;few", b"X-3;\x98\x98;" + lines[5].split(b";", 2)[2], lines[7]]
    lines[40:40] = broken[:2]
    lines[100:100] = broken[2:]
    permits.write_bytes(b"\r\n".join([*lines, *broken]))
    paths = city.model_copy(update={"sample_dir": sample})
    spec = CATALOG["repairs"]
    whole = build_layer(spec, CATALOG, paths, now=NOW, chunk_rows=None)
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 300)
    chunked = build_layer(spec, CATALOG, paths, now=NOW, chunk_rows=1)
    reasons = {r.reason.split(":")[0] for r in whole.rejects}
    assert {"unbalanced quotes", "expected 11 columns, found 3 (a stray delimiter or quote?)"} <= reasons
    assert any(r.reason.startswith("duplicate permit_id") for r in whole.rejects)
    assert chunked.rejects == whole.rejects
    pd.testing.assert_frame_equal(chunked.frame, whole.frame, check_exact=True)
    assert chunked.counts == whole.counts


def test_the_build_leaves_the_garbage_collector_as_it_found_it(city, tmp_path):
    """The build pauses Python's cyclic collector (it walked a million geometries again and again): it is
    back on afterwards, also when a source is unusable, and stays off for a caller that had turned it off."""
    import gc

    from assets.records import SourceError

    spec = CATALOG["repairs"]
    assert gc.isenabled()
    build = build_layer(spec, CATALOG, city, now=NOW)
    assert gc.isenabled()
    publish_layer(build, city.model_copy(update={"published_dir": tmp_path / "published"}))
    assert gc.isenabled()
    nowhere = city.model_copy(update={"sample_dir": tmp_path / "empty", "live_dir": tmp_path / "empty"})
    with pytest.raises(SourceError):
        build_layer(spec, CATALOG, nowhere, now=NOW)
    assert gc.isenabled()
    gc.disable()
    try:
        build_layer(spec, CATALOG, city, now=NOW)
        assert not gc.isenabled()
    finally:
        gc.enable()
