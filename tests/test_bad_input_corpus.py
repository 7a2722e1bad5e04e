"""The bad-input corpus: every delivery is accounted for. Per case, the records the file holds (counted
by the case's author) equal the records published plus the distinct records rejected, or the whole
file fails with one line naming it and nothing is published; no other exception ever escapes."""

from __future__ import annotations

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
