"""The inbox sensor tick by tick on a real instance: each delivery is judged alone, nothing leaves the inbox
before the run that publishes it exists, incomplete Shapefiles are quarantined after a grace period."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from assets.inbox import match_source
from layers.catalog import load_catalog
from layers.settings import REPO_ROOT, PathSettings
from pipelines.factory import layer_asset, layer_assets
from pipelines.jobs import domain_jobs
from pipelines.resources import GeoportalResource
from pipelines.sensors import inbox_sensor
from tests.conftest import city_paths
from tests.test_bad_input import GOOD_POINT, HEADER, make_city, works_city

SAMPLE = REPO_ROOT / "data" / "sample" / "irkutsk"
# A WZDx feed nested 100 000 arrays deep: json.loads raises RecursionError, not a SourceError.
DEEP_WZDX = b'{"type": "FeatureCollection", "features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def tick(paths: PathSettings, instance, cursor: str | None = None, definitions=None):
    context = dg.build_sensor_context(
        cursor=cursor,
        instance=instance,
        resources={"geoportal": GeoportalResource.of(paths)},
        definitions=definitions,
    )
    return list(inbox_sensor(context)), context.cursor


def deliver(paths: PathSettings, domain: str, name: str, content: bytes) -> Path:
    folder = paths.inbox_dir / domain
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.part").write_bytes(content)
    return (folder / f"{name}.part").rename(folder / name)  # deliveries arrive by rename


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def reasons(paths: PathSettings, domain: str) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (paths.quarantine_dir / domain).glob("*.reason.txt"))


def test_a_delivery_leaves_the_inbox_only_with_the_run_that_publishes_it(tmp_path, instance):
    paths = works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}"])
    delivered = "\n".join([HEADER, f"W-9;Водопровод;05.11.2026;;{GOOD_POINT}"]).encode("cp1251")
    deliver(paths, "repairs", "works.csv", delivered)

    first, cursor = tick(paths, instance)
    assert [r.asset_selection for r in first] == [[dg.AssetKey("works")]]
    assert (paths.live_dir / "works.csv").read_bytes() == delivered
    assert names(paths.inbox_dir / "repairs") == ["works.csv"]  # no run yet: it stays

    # The request was lost (no run was created): the next tick asks again, under the same key.
    again, cursor = tick(paths, instance, cursor)
    assert [r.run_key for r in again] == [first[0].run_key]
    assert names(paths.inbox_dir / "repairs") == ["works.csv"]

    # The run the daemon would start for that request, recorded in the instance with its key.
    catalog = load_catalog(paths.catalog_dir)
    run = dg.materialize(
        [layer_asset(catalog["works"])],
        instance=instance,
        resources={"geoportal": GeoportalResource.of(paths)},
        tags={**first[0].tags, "dagster/run_key": first[0].run_key},
    )
    assert run.success
    done, cursor = tick(paths, instance, cursor)
    assert done == []
    assert names(paths.inbox_dir / "repairs") == []
    assert len(list((paths.archive_dir / "repairs").glob("*works.csv"))) == 1
    assert json.loads(cursor) == {"works.csv": hashlib.sha256(b".csv" + delivered).hexdigest()}

    deliver(paths, "repairs", "works.csv", delivered)  # the same content again: archived, no run
    assert tick(paths, instance, cursor)[0] == []
    assert len(list((paths.archive_dir / "repairs").glob("*works.csv"))) == 2


def test_one_unreadable_file_is_quarantined_and_the_others_go_on(tmp_path, instance):
    """A reader failing with something other than SourceError (RecursionError here) once ended every tick."""
    paths = city_paths(tmp_path)
    deliver(paths, "closures", "wzdx_feed.geojson", DEEP_WZDX)
    deliver(paths, "outages", "notices.txt", bytes(range(256)) * 64)  # binary, not a notices table
    deliver(paths, "closures", "municipal_closures.csv", (SAMPLE / "closures" / "municipal_closures.csv").read_bytes())
    deliver(paths, "zones", "police_precincts.geojson", (SAMPLE / "zones" / "police_precincts.geojson").read_bytes())

    requests, _ = tick(paths, instance)

    # one run for both good deliveries: the run worker's start-up is paid once
    [request] = requests
    assert request.tags["geoportal/deliveries"] == "closures/municipal_closures.csv, zones/police_precincts.geojson"
    assert set(request.asset_selection) >= {dg.AssetKey("police_precincts"), dg.AssetKey("road_closures")}
    assert "wzdx_feed.geojson" in reasons(paths, "closures")
    assert "nested too deeply" in reasons(paths, "closures")
    assert "notices.txt: column(s)" in reasons(paths, "outages")
    assert names(paths.inbox_dir / "outages") == []
    kept = [p for p in (paths.quarantine_dir / "closures").iterdir() if not p.name.endswith(".reason.txt")]
    assert [p.read_bytes() for p in kept] == [DEEP_WZDX]  # quarantined as delivered
    assert names(paths.inbox_dir / "closures") == ["municipal_closures.csv"]  # until its run exists


def test_an_incomplete_shapefile_waits_then_is_quarantined_naming_the_missing_part(tmp_path, instance):
    paths = city_paths(tmp_path)
    for suffix in (".shp", ".dbf", ".prj"):
        name = f"election_districts{suffix}"
        deliver(paths, "zones", name, (SAMPLE / "zones" / name).read_bytes())

    assert tick(paths, instance)[0] == []  # within the grace period: the .shx may still be on its way
    assert len(names(paths.inbox_dir / "zones")) == 3

    an_hour_ago = time.time() - 3600
    for path in (paths.inbox_dir / "zones").iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert tick(paths, instance)[0] == []
    assert names(paths.inbox_dir / "zones") == []
    assert "incomplete Shapefile election_districts: missing .shx" in reasons(paths, "zones")


def test_a_complete_shapefile_is_staged_with_all_its_parts(tmp_path, instance):
    paths = city_paths(tmp_path)
    for suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
        name = f"election_districts{suffix}"
        deliver(paths, "zones", name, (SAMPLE / "zones" / name).read_bytes())
    requests, _ = tick(paths, instance)
    [request] = requests
    assert dg.AssetKey("election_districts") in request.asset_selection
    assert names(paths.live_dir / "zones") == sorted(
        f"election_districts{s}" for s in (".cpg", ".dbf", ".prj", ".shp", ".shx")
    )


DISTRICTS_YAML = """
title: {ru: Округа, en: Districts}
description: {ru: Набор файлов, en: A file set}
domain: zones
geometry_type: MultiPolygon
id_field: district
fields:
  - {name: district, type: integer, required: true, title: {ru: Номер, en: Number}}
sources:
  - path: zones/districts.*.geojson
    format: geojson
    columns: {NO: district}
"""
DISTRICT = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"NO": 7},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[104.28, 52.28], [104.29, 52.28], [104.29, 52.29], [104.28, 52.28]]],
            },
        }
    ],
}


def test_a_file_of_a_file_set_is_matched_by_its_glob_and_staged_under_its_own_name(tmp_path, instance):
    paths = make_city(tmp_path, {"districts": DISTRICTS_YAML})
    deliver(paths, "zones", "districts.7.geojson", json.dumps(DISTRICT).encode())
    deliver(paths, "zones", "precincts.geojson", json.dumps(DISTRICT).encode())
    requests, _ = tick(paths, instance)
    assert [r.asset_selection for r in requests] == [[dg.AssetKey("districts")]]
    assert (paths.live_dir / "zones" / "districts.7.geojson").is_file()
    assert "no source of domain 'zones' is called 'precincts.geojson'" in reasons(paths, "zones")


def test_exact_source_names_win_over_globs():
    catalog = load_catalog()
    source = catalog["road_closures"].sources[1]
    table = {"*.csv": ("glob", {"a"}), source.path.rsplit("/", 1)[-1]: (source, {"road_closures"})}
    assert match_source("municipal_closures.csv", table) == (source, {"road_closures"})
    assert match_source("other.csv", table) == ("glob", {"a"})
    assert match_source("other.txt", table) == (None, set())


def test_a_layer_the_running_code_location_does_not_know_yet_leaves_the_file_in_the_inbox(tmp_path, instance):
    """Added to the catalog after the daemon loaded it: no run can be requested until a reload."""
    paths = works_city(tmp_path, [])
    deliver(
        paths, "repairs", "works.csv", "\n".join([HEADER, f"W-9;Водопровод;05.11.2026;;{GOOD_POINT}"]).encode("cp1251")
    )
    repository = load_catalog()  # the repository's layers, without "works"
    loaded_before = dg.Definitions(
        assets=layer_assets(repository),
        jobs=domain_jobs(repository),
        sensors=[inbox_sensor],
        resources={"geoportal": GeoportalResource.of(paths)},
    )
    assert tick(paths, instance, definitions=loaded_before)[0] == []
    assert names(paths.inbox_dir / "repairs") == ["works.csv"]
    assert not (paths.live_dir / "works.csv").exists()


def test_what_cannot_be_used_is_quarantined_with_its_reason_and_files_being_written_are_left(tmp_path, instance):
    paths = works_city(tmp_path, [])
    deliver(paths, "repairs", "works.csv", b"")
    deliver(paths, "repairs", "unknown.csv", b"a;b\n1;2\n")
    (paths.inbox_dir / "repairs" / "still-writing.csv.part").write_bytes(b"...")
    assert tick(paths, instance)[0] == []
    assert "works.csv: the file is empty" in reasons(paths, "repairs")
    assert "no source of domain 'repairs' is called 'unknown.csv'" in reasons(paths, "repairs")
    assert names(paths.inbox_dir / "repairs") == ["still-writing.csv.part"]


def test_a_run_that_failed_before_it_started_is_requested_again(tmp_path, instance, monkeypatch):
    """The run's process could not load the code (a code error, since fixed): archiving the delivery then would
    leave it unpublished until the next scheduled run."""
    paths = works_city(tmp_path, [])
    deliver(
        paths, "repairs", "works.csv", "\n".join([HEADER, f"W-9;Водопровод;05.11.2026;;{GOOD_POINT}"]).encode("cp1251")
    )
    [first], cursor = tick(paths, instance)
    run = dg.DagsterRun(
        job_name="inbox_job", run_id=str(uuid.uuid4()), tags={**first.tags, "dagster/run_key": first.run_key}
    )
    instance.add_run(run)
    assert tick(paths, instance, cursor)[0] == []  # queued: its run may still start
    instance.report_run_failed(run, "the run's process could not load the code location")

    assert tick(paths, instance, cursor)[0] == []  # within the retry delay
    monkeypatch.setenv("GEOPORTAL_INBOX_RETRY_SECONDS", "0")
    [again], cursor = tick(paths, instance, cursor)
    assert again.run_key != first.run_key
    assert again.asset_selection == first.asset_selection
    assert names(paths.inbox_dir / "repairs") == ["works.csv"]
