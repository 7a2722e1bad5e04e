"""The bad-input corpus: every delivery is accounted for. Per case, the records the file holds (counted
by the case's author) equal the records published plus the distinct records rejected, or the whole
file fails with one line naming it and nothing is published; no other exception ever escapes."""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg
import pyogrio
import pytest

from assets.ingest import build_layer, publish_layer
from assets.records import SourceError
from layers.catalog import load_catalog
from layers.settings import PathSettings
from pipelines.factory import layer_asset
from pipelines.resources import GeoportalResource
from tests.corpus import Case, csv_cases, feed_cases, json_cases, value_cases, vector_cases
from tests.test_bad_input import make_city

CASES: list[Case] = [*csv_cases.CASES, *value_cases.CASES, *vector_cases.CASES, *feed_cases.CASES, *json_cases.CASES]


def test_the_corpus_is_large_and_every_case_is_named_once():
    ids = [case.id for case in CASES]
    assert len(ids) >= 80 and len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]


def deliver(case: Case, tmp_path: Path) -> PathSettings:
    paths = make_city(tmp_path, case.layers)
    case.write(paths.sample_dir)
    catalog = load_catalog(paths.catalog_dir)
    for layer in case.prepare:  # the address register a notice is placed by
        publish_layer(build_layer(catalog[layer], catalog, paths), paths)
    return paths


def first_source(case: Case, paths: PathSettings) -> str:
    return case.names or load_catalog(paths.catalog_dir)[case.layer].sources[0].path


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_record_is_published_or_rejected(case: Case, tmp_path: Path):
    paths = deliver(case, tmp_path)
    catalog = load_catalog(paths.catalog_dir)
    spec = catalog[case.layer]
    try:
        build = build_layer(spec, catalog, paths)
    except SourceError as error:
        message = str(error)
        assert case.expect != "records", f"the good records were lost with the file: {message}"
        assert "\n" not in message.strip() and first_source(case, paths) in message, message
        assert case.reason in message
        assert not paths.published_path(spec.id).exists()
        return
    assert case.expect != "file", f"expected a one-line failure naming the file; got {build.counts}"
    joined = {join.path for source in spec.sources for join in source.joins}
    rejected = {(r.source, r.record) for r in build.rejects if r.source not in joined}
    orphans = {(r.source, r.record) for r in build.rejects if r.source in joined}
    published, skipped = len(build.frame), build.counts.skipped  # skipped: events of another layer (`select`)
    detail = sorted(f"{r.source} {r.record} {r.field}: {r.reason}" for r in build.rejects)
    assert published + len(rejected) + skipped == case.records, (published, len(rejected), skipped, detail)
    assert len(orphans) == case.orphans, detail
    assert all(r.reason.strip() for r in build.rejects)
    if case.published is not None:
        assert published == case.published, detail
    if case.reason:
        assert any(case.reason in r.reason or case.reason in r.field for r in build.rejects), detail
    publish_layer(build, paths)
    assert len(pyogrio.read_dataframe(paths.published_path(spec.id))) == published
    listed = rejects_file(paths, spec.id)
    assert len(listed) == len(build.rejects)
    # rejects stay data: no cell a spreadsheet would run as a formula (OWASP CSV injection)
    assert not [cell for row in listed for cell in row.values() if cell[:1] in FORMULA_START], listed


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def rejects_file(paths: PathSettings, layer: str) -> list[dict[str, str]]:
    path = paths.rejects_path(layer)
    if not path.exists():
        return []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


# Whole-file failures as an operator sees them: the real asset, the failure message one line.
AS_DEPLOYED = [
    "empty-file",
    "shp-without-shx",
    "geojson-nested-100k-deep",
    "wzdx-version-3",
    "xlsx-not-a-workbook",
    "notice-binary",
    "json-nested-100k-deep",
]


@pytest.mark.parametrize("case_id", AS_DEPLOYED)
def test_whole_file_failures_are_one_line_in_dagster(case_id: str, tmp_path: Path):
    case = next(c for c in CASES if c.id == case_id)
    paths = deliver(case, tmp_path)
    catalog = load_catalog(paths.catalog_dir)
    result = dg.materialize(
        [layer_asset(catalog[case.layer])],
        resources={"geoportal": GeoportalResource.of(paths)},
        raise_on_error=False,
    )
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if case.expect == "file" or failures:
        assert not result.success and len(failures) == 1
        data = failures[0].event_specific_data
        assert data.error.cls_name == "Failure", data.error.to_string()  # ours, not a traceback
        message = data.user_failure_data.description.strip()  # what the UI and the CLI show
        assert "\n" not in message and first_source(case, paths) in message, message
        assert message.startswith(f"{case.layer}: "), message
        assert not paths.published_path(case.layer).exists()
    else:
        assert result.success


# Record-level cases as an operator sees them: what the asset publishes and the rejects file it writes
# account for every record; a layer whose every record is rejected fails in one line, rejects written.
THROUGH_DAGSTER = [
    "unbalanced-quote",
    "formula-cells",
    "all-rows-rejected",
    "shp-truncated-mid-record",
    "wzdx-spot-zone-two-identical-points",
    "json-record-not-an-object",
    "notice-unknown-street",
    "xlsx-stale-dimension",
]


@pytest.mark.parametrize("case_id", THROUGH_DAGSTER)
def test_records_through_dagster_are_accounted(case_id: str, tmp_path: Path):
    case = next(c for c in CASES if c.id == case_id)
    paths = deliver(case, tmp_path)
    catalog = load_catalog(paths.catalog_dir)
    result = dg.materialize(
        [layer_asset(catalog[case.layer])],
        resources={"geoportal": GeoportalResource.of(paths)},
        raise_on_error=False,
    )
    rejected = {(r["source_file"], r["record"]) for r in rejects_file(paths, case.layer)}
    if result.success:
        (event,) = result.asset_materializations_for_node(case.layer)
        skipped = event.metadata["skipped_other_layers"].value
        published = len(pyogrio.read_dataframe(paths.published_path(case.layer)))
        assert published + len(rejected) + skipped == case.records
        assert case.published is None or published == case.published
    else:
        (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.event_specific_data.user_failure_data.description.strip()
        assert case.published == 0 and "\n" not in message and first_source(case, paths) in message, message
        assert len(rejected) == case.records and not paths.published_path(case.layer).exists()
