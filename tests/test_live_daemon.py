"""The live portal as `python3 dev.py run` starts it: the real `dagster-daemon`, the Dagster UI and the OGC API
server under dev.py's supervisor, on a temporary instance and data folders. Files are delivered through the inbox
the README's way and must reach `/items` and the vector tiles; bad deliveries end in quarantine with their reason
without holding back the good ones; Ctrl-C (SIGTERM) leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import httpx
import mapbox_vector_tile
import pytest

from layers.settings import REPO_ROOT, PathSettings
from tests.conftest import path_environment
from tests.server_fixtures import free_port, key_entries
from tests.test_inbox import DISTRICT, DISTRICTS_YAML

SAMPLE = REPO_ROOT / "data" / "sample" / "irkutsk"
NEW_CLOSURE = "ПД-2026-999"
RENAMED_PRECINCT = "Участок доставки через папку inbox"
DEEP_WZDX = b'{"type": "FeatureCollection", "features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEADLINE_SECONDS = 150  # generous: CI machines are shared; a pass takes seconds per step
GRACE_SECONDS = 3  # the incomplete Shapefile is quarantined this long after it arrived


@dataclass
class Portal:
    paths: PathSettings
    home: Path
    server: str
    ui: str
    log: Path
    supervisor: subprocess.Popen
    children: dict[str, int]

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))


def wait_for(what: str, check: Callable[[], object], portal: Portal | None = None, seconds: float = DEADLINE_SECONDS):
    """Poll `check` until it returns something truthy; fail naming `what` (with the portal's log) at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = check()
        except (httpx.TransportError, OSError):
            result = None
        if result:
            return result
        if portal and portal.supervisor.poll() is not None:
            pytest.fail(
                f"the portal stopped while waiting for: {what}\n--- portal log (tail) ---\n{portal.log_text()[-6000:]}"
            )
        if time.monotonic() > deadline:
            tail = portal.log_text()[-6000:] if portal else ""
            pytest.fail(f"not within {seconds}s: {what}\n--- portal log (tail) ---\n{tail}")
        time.sleep(0.25)  # polling interval, not a synchronisation


def deliver(paths: PathSettings, domain: str, name: str, content: bytes) -> None:
    """As the README says: write `name.part` in inbox/<domain>/, then rename it."""
    folder = paths.inbox_dir / domain
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.part").write_bytes(content)
    (folder / f"{name}.part").rename(folder / name)


def closures_with_a_new_row(closure_id: str = NEW_CLOSURE) -> bytes:
    lines = (SAMPLE / "closures" / "municipal_closures.csv").read_bytes().decode("cp1251").rstrip("\n").split("\n")
    row = lines[1].split(";")
    row[0], row[1] = closure_id, "ул. Новая"
    return ("\n".join([*lines, ";".join(row)]) + "\n").encode("cp1251")


def precincts_with_a_new_name() -> bytes:
    collection = json.loads((SAMPLE / "zones" / "police_precincts.geojson").read_text(encoding="utf-8"))
    collection["features"][0]["properties"]["name"] = RENAMED_PRECINCT
    return json.dumps(collection, ensure_ascii=False).encode("utf-8")


def items(portal: Portal, layer: str) -> list[dict]:
    response = httpx.get(f"{portal.server}/collections/{layer}/items", params={"limit": 10000, "f": "json"}, timeout=30)
    return response.json()["features"] if response.status_code == 200 else []


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def in_tile(portal: Portal, layer: str, feature: dict, z: int = 14) -> bool:
    lon, lat = feature["geometry"]["coordinates"][0]
    x, y = tile_of(lon, lat, z)
    response = httpx.get(f"{portal.server}/tiles/{layer}/{z}/{x}/{y}.pbf", timeout=30)
    if response.status_code != 200 or not response.content:
        return False
    decoded = mapbox_vector_tile.decode(response.content)
    return any(f["properties"].get("closure_id") == NEW_CLOSURE for f in decoded.get(layer, {}).get("features", []))


def quarantined(paths: PathSettings, domain: str) -> str:
    folder = paths.quarantine_dir / domain
    return "\n".join(p.read_text(encoding="utf-8") for p in folder.glob("*.reason.txt")) if folder.is_dir() else ""


def inbox(paths: PathSettings, domain: str) -> list[str]:
    folder = paths.inbox_dir / domain
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# What the operators' webhook received while the portal ran (the alert sensors run in the daemon).
ALERTS: list[dict] = []


class _Webhook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's hook name
        ALERTS.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def portal_environment(base: Path) -> tuple[PathSettings, Path, dict[str, str]]:
    catalog = base / "layers"
    shutil.copytree(REPO_ROOT / "layers", catalog, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    paths = PathSettings(
        catalog_dir=catalog,
        published_dir=base / "published",
        rejects_dir=base / "rejects",
        live_dir=base / "live",
        inbox_dir=base / "inbox",
        archive_dir=base / "archive",
        quarantine_dir=base / "quarantine",
    )
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")  # a copied instance config, as another city
    env = {
        **os.environ,
        **path_environment(paths),
        "GEOPORTAL_CATALOG_DIR": str(catalog),
        "DAGSTER_HOME": str(home),
        "GEOPORTAL_SERVER_HOST": "127.0.0.1",
        "GEOPORTAL_SERVER_PORT": str(free_port()),
        "GEOPORTAL_UI_PORT": str(free_port()),
        "GEOPORTAL_SERVER_API_KEYS": key_entries(),
        "GEOPORTAL_SERVER_CACHE_DIR": str(base / "tile_cache"),
        "GEOPORTAL_INBOX_SHAPEFILE_GRACE_SECONDS": str(GRACE_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GEOPORTAL_SERVER_PUBLIC_URL", None)
    return paths, home, env


SUPERVISOR = "import dev, sys; env = dev.environment(); sys.exit(dev.supervise(dev.live_services(env), env))"


@pytest.fixture(scope="module")
def portal(tmp_path_factory) -> Iterator[Portal]:
    base = tmp_path_factory.mktemp("live")
    paths, home, env = portal_environment(base)
    published = subprocess.run(
        [sys.executable, "-m", "pipelines"], cwd=base, env=env, capture_output=True, text=True, timeout=300
    )
    assert published.returncode == 0, published.stdout + published.stderr
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    env["GEOPORTAL_ALERTS_WEBHOOK_URL"] = f"http://127.0.0.1:{webhook.server_address[1]}/hook"
    log = base / "portal.log"
    with open(log, "wb") as handle:
        supervisor = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR], cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    running = Portal(
        paths=paths,
        home=home,
        server=f"http://127.0.0.1:{env['GEOPORTAL_SERVER_PORT']}",
        ui=f"http://127.0.0.1:{env['GEOPORTAL_UI_PORT']}",
        log=log,
        supervisor=supervisor,
        children={},
    )
    started = wait_for(
        "the supervisor starts daemon, ui and server",
        lambda: (
            dict(re.findall(r"started (\w+) \(pid (\d+)\)", running.log_text())).keys() >= {"daemon", "ui", "server"}
        ),
        running,
        seconds=30,
    )
    assert started
    running.children = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", running.log_text())}
    try:
        yield running
    finally:
        webhook.shutdown()
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(timeout=60)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                for pid in running.children.values():
                    with_suppressed_lookup(os.killpg, pid, signal.SIGKILL)


def with_suppressed_lookup(function, *args) -> None:
    with contextlib.suppress(ProcessLookupError):
        function(*args)


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_deliveries_reach_items_and_tiles_and_bad_ones_end_in_quarantine(portal: Portal):
    paths = portal.paths
    deliver(paths, "outages", "notices.txt", bytes(range(256)) * 64)  # binary, not a notices table
    wait_for(
        "a first tick quarantines the binary notices", lambda: "column(s)" in quarantined(paths, "outages"), portal
    )
    # The daemon's code location is loaded now: a layer added to the catalog is unknown to it for a minute.
    (paths.catalog_dir / "districts.yaml").write_text(DISTRICTS_YAML, encoding="utf-8")
    # One batch, seen by the same tick: a good closure, a good precinct set, a file for the unloaded layer,
    # and two unusable files.
    deliver(paths, "closures", "wzdx_feed.geojson", DEEP_WZDX)  # a reader's RecursionError on the old code
    for suffix in (".shp", ".dbf", ".prj"):  # no .shx
        name = f"election_districts{suffix}"
        deliver(paths, "zones", name, (SAMPLE / "zones" / name).read_bytes())
    deliver(paths, "zones", "districts.7.geojson", json.dumps(DISTRICT).encode())  # a file of a file set
    deliver(paths, "zones", "police_precincts.geojson", precincts_with_a_new_name())
    deliver(paths, "closures", "municipal_closures.csv", closures_with_a_new_row())

    new = wait_for(
        f"{NEW_CLOSURE} served in /collections/road_closures/items",
        lambda: [f for f in items(portal, "road_closures") if f["properties"]["closure_id"] == NEW_CLOSURE],
        portal,
    )
    wait_for(f"{NEW_CLOSURE} in a vector tile", lambda: in_tile(portal, "road_closures", new[0]), portal)
    wait_for(
        "the renamed precinct served",
        lambda: any(f["properties"].get("name") == RENAMED_PRECINCT for f in items(portal, "police_precincts")),
        portal,
    )
    wait_for(
        "the good deliveries archived",
        lambda: inbox(paths, "closures") == [] and inbox(paths, "zones") == ["districts.7.geojson"],
        portal,
    )
    assert "nested too deeply" in quarantined(paths, "closures")
    assert "incomplete Shapefile election_districts: missing .shx" in quarantined(paths, "zones")
    assert inbox(paths, "outages") == []
    # No run can be requested for the layer the daemon has not loaded: the file waits, nothing is lost
    # (the daemon reloads the code location every minute; the next tick after that publishes it).
    assert inbox(paths, "zones") == ["districts.7.geojson"]
    assert "layers ['districts'] are not loaded yet" in portal.log_text()

    def inbox_runs_finished():
        # the layers are served as soon as they are published; the run itself still re-tags the layers built on
        # them (conflicts, change log) before it ends
        with portal.instance() as instance:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "inbox_sensor"}))
            return runs if runs and all(run.is_finished for run in runs) else None

    runs = wait_for("the inbox runs finished", inbox_runs_finished, portal)
    assert {run.job_name for run in runs} == {"inbox_job"}
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [(r.run_id, r.status) for r in runs]
    assert [run.tags["geoportal/deliveries"] for run in runs] == [
        "closures/municipal_closures.csv, zones/police_precincts.geojson"
    ]
    assert "lacking a specified target" not in portal.log_text()
    # the instance is the copied dagster.yaml's home, not the working directory's
    assert (portal.home / "history" / "runs.db").is_file()


def executing_sensor_run(instance: dg.DagsterInstance) -> tuple[dg.DagsterRun, int] | None:
    """A run of the inbox sensor that is executing, and the pid of its process (from its own engine event)."""
    started = [dg.DagsterRunStatus.STARTED]
    for run in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "inbox_sensor"}, statuses=started)):
        for entry in instance.all_logs(run.run_id):
            message = entry.dagster_event.message if entry.dagster_event else entry.user_message
            found = re.search(r"Started process for run \(pid: (\d+)\)", message or "")
            if found:
                return run, int(found.group(1))
    return None


def test_operators_are_told_by_the_sensors_the_daemon_runs(portal: Portal):
    """The alert sensors are on by default and run in the daemon: the conflicts found when the portal's layers
    were first published reach the operators' webhook, with the layer and the reason."""
    told = wait_for(
        "a conflict alert at the webhook", lambda: [a for a in ALERTS if a.get("kind") == "conflict"], portal
    )
    assert told[0]["layer"] == "conflicts"
    assert "conflict" in told[0]["reason"] and told[0]["subject"].startswith("[geoportal] conflicts")


def test_a_run_killed_under_the_daemon_is_marked_failed(portal: Portal):
    """Killed with -9 (the kernel's OOM killer), a run must not stay STARTED: the code server that launched it
    marks it failed (Dagster's DefaultRunLauncher offers no worker health check to run monitoring)."""
    deliver(portal.paths, "closures", "municipal_closures.csv", closures_with_a_new_row("ПД-2026-998"))
    with portal.instance() as instance:
        run, pid = wait_for("a sensor run executing", lambda: executing_sensor_run(instance), portal)
        os.kill(pid, signal.SIGKILL)
        wait_for(
            "the killed run marked failed",
            lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            portal,
            seconds=60,
        )


def test_the_ui_answers_and_sigterm_stops_every_process(portal: Portal):
    assert httpx.get(f"{portal.ui}/server_info", timeout=30).status_code == 200
    assert httpx.get(f"{portal.server}/", timeout=30).status_code == 200
    assert all(group_alive(pid) for pid in portal.children.values())
    portal.supervisor.send_signal(signal.SIGTERM)  # what Ctrl-C and systemd's stop do
    assert portal.supervisor.wait(timeout=60) == 0
    leftovers = wait_for(
        "every child process group gone",
        lambda: not any(group_alive(pid) for pid in portal.children.values()),
        portal,
        seconds=5,
    )
    assert leftovers
