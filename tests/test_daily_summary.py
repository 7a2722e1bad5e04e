"""The daily summary: the Dagster asset at the sample's moment writes HTML, PDF and a map under data/reports/<date>/;
pdftoppm turns the PDF into an image that holds a map, pdftotext finds the counts the features API and an independent
computation give; staff get it at /reports/, the public does not; the schedule is 07:00 city time, on by default."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyogrio
import pytest
from PIL import Image

from assets.summary_report import DOMAIN_COLORS
from layers.catalog import load_catalog
from layers.domains import DOMAINS
from pipelines.summary import SUMMARY, summary_definitions
from tests.conftest import SAMPLE_MOMENT, city_paths, resource_for
from tests.server_fixtures import STAFF_KEY, VISITOR_KEY, start_server, stop_server

DAY = "2026-11-24"  # SAMPLE_MOMENT in Irkutsk
EVENT_DOMAINS = ("repairs", "closures", "outages")
needs_poppler = pytest.mark.skipif(not shutil.which("pdftoppm"), reason="pdftoppm/pdftotext (poppler-utils) absent")


@pytest.fixture(scope="module")
def reported(published_city, tmp_path_factory):
    """A copy of the published sample, the summary asset run on it at the sample's moment, the server over it."""
    paths = city_paths(tmp_path_factory.mktemp("summary"))
    shutil.copytree(published_city.published_dir, paths.published_dir)
    definitions = summary_definitions(load_catalog())
    result = dg.materialize(
        list(definitions.assets),
        resources={"geoportal": resource_for(paths)},
        run_config={"ops": {SUMMARY: {"config": {"at": SAMPLE_MOMENT}}}},
    )
    assert result.success
    server = start_server(paths, tmp_path_factory.mktemp("summary-server") / "server.log")
    yield paths, result, server
    stop_server(server)


def active_counts(server) -> dict[str, int]:
    """Active at the moment per domain, as the features API counts it (`datetime` = the moment)."""
    counts = dict.fromkeys(EVENT_DOMAINS, 0)
    with server.client(STAFF_KEY) as client:
        for spec in load_catalog().values():
            if spec.domain in EVENT_DOMAINS and spec.temporal and spec.sources:
                answer = client.get(
                    f"/collections/{spec.id}/items", params={"datetime": SAMPLE_MOMENT, "limit": 1, "f": "json"}
                )
                counts[spec.domain] += answer.json()["numberMatched"]
    return counts


def instants(frame: pd.DataFrame, spec, name: str, timezone: str, end: bool) -> pd.Series:
    if spec.field(name).type == "date":
        local = pd.to_datetime(frame[name]).dt.tz_localize(timezone)
        return local + (pd.Timedelta(hours=24) - pd.Timedelta(milliseconds=1) if end else pd.Timedelta(0))
    return pd.to_datetime(frame[name], utc=True)


def started_and_ended(paths) -> dict[str, tuple[int, int]]:
    """(started, ended) in the day before the moment per domain, counted here with pandas: dates are local days."""
    moment = pd.Timestamp(SAMPLE_MOMENT)
    catalog = load_catalog()
    found = dict.fromkeys(EVENT_DOMAINS, (0, 0))
    for spec in catalog.values():
        if spec.domain not in EVENT_DOMAINS or not spec.temporal or not spec.sources:
            continue
        frame = pyogrio.read_dataframe(paths.published_path(spec.id), read_geometry=False)

        starts = instants(frame, spec, spec.temporal.start, catalog.city.timezone, end=False)
        ends = instants(frame, spec, spec.temporal.end, catalog.city.timezone, end=True)
        window = lambda s: ((s > moment - pd.Timedelta(days=1)) & (s <= moment)).sum()  # noqa: E731
        found[spec.domain] = (found[spec.domain][0] + window(starts), found[spec.domain][1] + window(ends))
    return found


def test_files_are_written_for_the_day(reported):
    paths, result, _ = reported
    folder = paths.reports_dir / DAY
    assert {p.name for p in folder.iterdir()} >= {"summary.html", "summary.pdf", "summary.png", "summary.json"}
    assert not list(folder.glob(".*.part")), "no temporary file is left"
    html = (folder / "summary.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "Сводка за 24.11.2026" in html
    preview = result.asset_materializations_for_node(SUMMARY)[0].metadata["preview"].value
    assert "![map](data:image/png;base64," in preview and "| repairs |" in preview


@needs_poppler
def test_pdf_has_a_map(reported, tmp_path: Path):
    paths, _, _ = reported
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "1", paths.reports_dir / DAY / "summary.pdf",
                    tmp_path / "page"], check=True)  # fmt: skip
    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("RGB")).astype(int)
    lower = page[page.shape[0] // 2 :]  # the map fills the lower half of page 1
    assert lower.std() > 10, "the map area is not uniform"
    assert len({tuple(p) for p in lower.reshape(-1, 3)[::7]}) > 50
    for domain in ("repairs", "outages"):
        colour = np.array([int(DOMAIN_COLORS[domain][i : i + 2], 16) for i in (1, 3, 5)])
        near = (np.abs(lower - colour).sum(axis=2) < 60).sum()
        assert near > 20, f"{domain} events are drawn in their colour"


@needs_poppler
def test_pdf_counts_are_the_api_and_an_independent_count(reported):
    paths, _, server = reported
    text = subprocess.run(
        ["pdftotext", "-layout", paths.reports_dir / DAY / "summary.pdf", "-"], check=True, capture_output=True
    ).stdout.decode("utf-8")
    active, window = active_counts(server), started_and_ended(paths)
    assert sum(active.values()) > 0 and any(new for new, _ in window.values())
    for domain in EVENT_DOMAINS:
        title = DOMAINS[domain]["title"]["ru"]
        row = re.search(rf"{re.escape(title)}\s+(\d+)\s+(\d+)\s+(\d+)", text)
        assert row, f"no row for {title} in:\n{text[:1500]}"
        assert tuple(int(n) for n in row.groups()) == (window[domain][0], active[domain], window[domain][1]), domain
    conflicts = pyogrio.read_dataframe(paths.published_path("conflicts"), read_geometry=False)
    overlap = re.search(r"Пересекающиеся раскопки\s+(\d+)", text)
    assert overlap and int(overlap.group(1)) == (conflicts.rule == "overlapping_excavations").sum()
    assert "По зонам" in text


def test_reports_are_for_staff_only(reported):
    paths, _, server = reported
    with server.client() as anonymous, server.client(VISITOR_KEY) as visitor, server.client(STAFF_KEY) as staff:
        for path in ("/reports/", f"/reports/{DAY}/summary.pdf"):
            assert anonymous.get(path).status_code == 404, path
            assert visitor.get(path).status_code == 403, path
        listing = staff.get("/reports/", params={"f": "json"}).json()["reports"]
        assert listing[0]["day"] == DAY and set(listing[0]["files"]) >= {"summary.pdf", "summary.html"}
        pdf = staff.get(f"/reports/{DAY}/summary.pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content == (paths.reports_dir / DAY / "summary.pdf").read_bytes()
        assert DAY in staff.get("/reports/").text
        assert staff.get("/reports/../published/repairs.gpkg").status_code == 404
        assert staff.get(f"/reports/{DAY}/other.txt").status_code == 404


def test_schedule_is_seven_in_the_city_and_on():
    definitions = summary_definitions(load_catalog())
    schedule = next(s for s in definitions.schedules if s.name == f"{SUMMARY}_schedule")
    assert schedule.cron_schedule == "0 7 * * *" and schedule.execution_timezone == "Asia/Irkutsk"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
