"""File sets: a source `path:` that is a glob reads every matching file as the same source, each
feature can record its file, and a delivered set replaces the sample's set as a whole."""

from __future__ import annotations

import shutil

import pytest

from assets.ingest import publish_layer
from assets.records import SourceError
from tests.any_city import SOFIA, build, make_city
from tests.conftest import SHARED_DATA

DISTRICTS = SHARED_DATA / "sofia" / "districts"
pytestmark = pytest.mark.skipif(not DISTRICTS.is_dir(), reason=f"real Sofia districts not found in {DISTRICTS}")

DISTRICTS_YAML = """
title: {ru: Районы, en: Districts}
description: {ru: Административные районы Софии, en: Administrative districts of Sofia}
domain: zones
geometry_type: MultiPolygon
id_field: number
fields:
  - {name: number, type: string, required: true, title: {ru: Номер, en: Number}}
  - {name: name, type: string, required: true, title: {ru: Название, en: Name}}
  - {name: name_latin, type: string, title: {ru: Латиницей, en: Latin name}}
  - {name: delivered_in, type: string, internal: true, title: {ru: Файл, en: File}}
sources:
  - path: zones/bg.sofia.*.geojson
    format: geojson
    source_field: delivered_in
    columns: {obns_num: number, obns_cyr: name, obns_lat: name_latin}
"""


def sofia(tmp_path):
    paths = make_city(tmp_path, SOFIA, {"districts": DISTRICTS_YAML})
    (paths.sample_dir / "zones").mkdir()
    for path in sorted(DISTRICTS.glob("*.geojson")):
        shutil.copy(path, paths.sample_dir / "zones" / path.name)
    return paths


def test_every_file_of_a_glob_is_read_and_each_feature_names_its_file(tmp_path):
    paths = sofia(tmp_path)
    result = build(paths, "districts")
    assert result.rejects == []
    by_name = dict(zip(result.frame.name, result.frame.delivered_in, strict=True))
    assert by_name == {
        "ИЗГРЕВ": "zones/bg.sofia.izgrev.geojson",
        "ОБОРИЩЕ": "zones/bg.sofia.oborishte.geojson",
        "СЕРДИКА": "zones/bg.sofia.serdika.geojson",
        "СРЕДЕЦ": "zones/bg.sofia.sredets.geojson",
    }
    assert result.counts.read == 4 and result.counts.by_source == {"zones/bg.sofia.*.geojson": 4}
    assert result.source_crs == [f"zones/{p.name}: EPSG:4326 (default)" for p in sorted(DISTRICTS.glob("*.geojson"))]
    assert publish_layer(result, paths).exists()


def test_a_delivered_set_replaces_the_samples_set(tmp_path):
    paths = sofia(tmp_path)
    live = paths.live_dir / "zones"
    live.mkdir(parents=True)
    shutil.copy(DISTRICTS / "bg.sofia.sredets.geojson", live / "bg.sofia.sredets.geojson")
    result = build(paths, "districts")
    assert list(result.frame.name) == ["СРЕДЕЦ"]
    assert list(result.frame.delivered_in) == ["zones/bg.sofia.sredets.geojson"]


def test_a_glob_matching_nothing_is_a_missing_file_naming_the_pattern(tmp_path):
    paths = make_city(tmp_path, SOFIA, {"districts": DISTRICTS_YAML})
    pattern = r"^zones/bg\.sofia\.\*\.geojson: file not found: no file matches the pattern"
    with pytest.raises(SourceError, match=pattern):
        build(paths, "districts")


def test_a_duplicate_id_across_files_names_both_files(tmp_path):
    paths = sofia(tmp_path)
    shutil.copy(DISTRICTS / "bg.sofia.izgrev.geojson", paths.sample_dir / "zones" / "bg.sofia.izgrev-copy.geojson")
    result = build(paths, "districts")
    assert len(result.frame) == 4
    [reject] = result.rejects
    assert reject.source == "zones/bg.sofia.izgrev.geojson"
    assert "first seen in zones/bg.sofia.izgrev-copy.geojson feature 1" in reject.reason
