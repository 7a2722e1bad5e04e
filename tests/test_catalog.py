"""The catalog's keys for any city, and its mistakes as one line naming file and place, from every entry point."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys

import pytest

from layers.catalog import DEFAULT_NULLS, CatalogError, load_catalog
from layers.settings import REPO_ROOT
from tests.any_city import NEW_YORK, make_city

POINTS_YAML = """
title: {ru: Точки, en: Points}
description: {ru: Тест, en: Test}
domain: reference
geometry_type: Point
id_field: point_id
fields:
  - {name: point_id, type: string, required: true, title: {ru: Код, en: Id}}
  - {name: seen, type: date, title: {ru: Дата, en: Date}}
  - {name: file, type: string, title: {ru: Файл, en: File}}
sources:
  - path: points.csv
    format: csv
    geometry: {x: X, y: Y}
"""


def points(tmp_path, extra: str = "", field_extra: str = "", city: str = NEW_YORK):
    layer = POINTS_YAML.replace("type: date,", f"type: date,{field_extra}") + extra
    return make_city(tmp_path, city, {"points": layer})


def test_a_city_needs_no_local_crs_nulls_or_dates(tmp_path):
    catalog = load_catalog(points(tmp_path).catalog_dir)
    city = catalog.city
    assert city.crs == {} and city.nulls == list(DEFAULT_NULLS)
    assert city.dates.earliest == dt.date(1990, 1, 1) and city.dates.latest_years_ahead == 15
    assert catalog["points"].sources[0].crs is None


def test_a_field_window_overrides_only_what_it_names(tmp_path):
    city_yaml = NEW_YORK + "dates: {earliest: 1980-01-01}\n"
    catalog = load_catalog(points(tmp_path, field_extra=" dates: {latest_years_ahead: 2},", city=city_yaml).catalog_dir)
    window = catalog.city.date_window(catalog["points"].field("seen"))
    assert (window.earliest, window.latest_years_ahead) == (dt.date(1980, 1, 1), 2)
    assert window.latest(dt.date(2028, 2, 29)) == dt.date(2030, 2, 28)


@pytest.mark.parametrize(
    ("extra", "field_extra", "message"),
    [
        ("    crs: EPSG:999999\n", "", r"sources\.0\.crs: unknown CRS 'EPSG:999999' \(use an id from _city\.yaml \[\]"),
        ("    source_field: seen\n", "", r"source_field 'seen' must be a string field"),
        ("    source_field: nowhere\n", "", r"maps to unknown fields \['nowhere'\]"),
        ("", " dates: {earliest: yesterday},", r"fields\.1\.dates\.earliest: Input should be a valid date"),
    ],
)
def test_catalog_mistakes_name_file_and_key(tmp_path, extra, field_extra, message):
    paths = points(tmp_path, extra, field_extra)
    with pytest.raises(CatalogError, match=rf"points\.yaml: .*{message}"):
        load_catalog(paths.catalog_dir)


def test_dates_on_a_text_field_is_refused(tmp_path):
    paths = points(tmp_path)
    path = paths.catalog_dir / "points.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "{name: file, type: string,", "{name: file, type: string, dates: {earliest: 2000-01-01},"
        ),
        encoding="utf-8",
    )
    with pytest.raises(CatalogError, match=r"fields\.2: Value error, dates: only a date or datetime field"):
        load_catalog(paths.catalog_dir)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("title: {ru: X, en: Y\nfoo: [1\n", "2:4", "expected ',' or '}', but got ':' (while parsing a flow mapping"),
        ("title: x\n  domain: zones\n", "2:9", "mapping values are not allowed here"),
        ('title: "x\n', "2:1", "found unexpected end of stream (while scanning a quoted scalar at line 1"),
    ],
)
def test_a_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path, text, where, what):
    paths = points(tmp_path)
    (paths.catalog_dir / "points.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(paths.catalog_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{paths.catalog_dir / 'points.yaml'}:{where}: YAML syntax error: {what}")


def broken_catalog(tmp_path):
    folder = tmp_path / "layers"
    shutil.copytree(REPO_ROOT / "layers", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "zz_broken.yaml").write_text("title: {ru: X, en: Y\nfoo: [1\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "pipelines"],
        [sys.executable, "-m", "server", "--port", "5999"],
        [str(REPO_ROOT / ".venv" / "bin" / "dagster"), "definitions", "validate", "-m", "pipelines"],
    ],
    ids=["python -m pipelines", "python -m server", "dagster definitions validate"],
)
def test_every_entry_point_prints_a_catalog_error_as_one_line_and_fails(tmp_path, command):
    if not os.path.exists(command[0]):
        pytest.skip(f"{command[0]} is not installed")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n", encoding="utf-8")
    environment = {
        **os.environ,
        "GEOPORTAL_CATALOG_DIR": str(broken_catalog(tmp_path)),
        "GEOPORTAL_PUBLISHED_DIR": str(tmp_path / "published"),
        "DAGSTER_HOME": str(home),
    }
    done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "Warning" not in line and "return callback" not in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].endswith(
        "zz_broken.yaml:2:4: YAML syntax error: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping at line 1, column 8)"
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_the_dagster_ui_shows_a_catalog_error_as_the_code_locations_load_error(tmp_path):
    """The UI's code server must not just exit (the UI would only say "gRPC server exited")."""
    import json
    import socket
    import time
    import urllib.request

    webserver = REPO_ROOT / ".venv" / "bin" / "dagster-webserver"
    if not webserver.exists():
        pytest.skip(f"{webserver} is not installed")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n", encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "GEOPORTAL_CATALOG_DIR": str(broken_catalog(tmp_path)), "DAGSTER_HOME": str(home)}
    command = [str(webserver), "-m", "pipelines", "-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    query = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename "
    query += "... on PythonError { errorChain { error { message } } } } } } } }"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)  # polling for the port to open, bounded by the deadline
        assert answer is not None, "the Dagster webserver did not answer"
        [entry] = answer["data"]["workspaceOrError"]["locationEntries"]
        chain = [link["error"]["message"] for link in entry["locationOrLoadError"]["errorChain"]]
        assert any("zz_broken.yaml:2:4: YAML syntax error" in message for message in chain), entry
    finally:
        process.terminate()
        process.wait(timeout=30)
