"""Freshness of the live portal: seconds from a file landing in the inbox to its record in `/items` and in a tile.

    .venv/bin/python benchmarks/bench_freshness.py [--deliveries 20]

Runs the real `dagster-daemon` and `python -m server` under dev.py's supervisor (the UI is left out: it takes
no part in the path) on a temporary instance and data folders, after publishing the sample city. Then, one at
a time, delivers the municipal closures CSV (cp1251) with one new closure the README's way (`.part`, rename)
and polls until that closure is served. Each delivery is split by step from the instance's own records:

- detect:  file renamed → run created by the inbox sensor's tick
- launch:  run created → run started (queue, run worker process start-up and imports)
- build:   step start → last publication check (read, validate, normalise the layer)
- publish: last check → materialization (the GeoPackage written and swapped in)
- finish:  materialization → run finished (in parallel with the next two)
- server:  materialization → the closure served in /items (polling every 0.1 s)
- tile:    served in /items → in the vector tile of its z14 tile

Results: table on stdout and benchmarks/out/bench_freshness.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import httpx
import mapbox_vector_tile

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample" / "irkutsk"
OUT = REPO / "benchmarks" / "out"
LAYER = "road_closures"
DEADLINE_SECONDS = 180
POLL_SECONDS = 0.1
SUPERVISOR = (
    "import dev, sys; env = dev.environment(); services = dev.live_services(env); services.pop('ui'); "
    "sys.exit(dev.supervise(services, env))"
)
STEPS = ["detect", "launch", "build", "publish", "finish", "server", "tile"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(base: Path) -> dict[str, str]:
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    folders = ["published", "rejects", "live", "inbox", "archive", "quarantine"]
    env = {f"GEOPORTAL_{name.upper()}_DIR": str(base / name) for name in folders}
    return {
        **os.environ,
        **env,
        "DAGSTER_HOME": str(home),
        "GEOPORTAL_SERVER_HOST": "127.0.0.1",
        "GEOPORTAL_SERVER_PORT": str(free_port()),
        "GEOPORTAL_SERVER_CACHE_DIR": str(base / "tile_cache"),
        "PYTHONUNBUFFERED": "1",
    }


def closures_with(closure_id: str) -> bytes:
    lines = (SAMPLE / "closures" / "municipal_closures.csv").read_bytes().decode("cp1251").rstrip("\n").split("\n")
    row = lines[1].split(";")
    row[0] = closure_id
    return ("\n".join([*lines, ";".join(row)]) + "\n").encode("cp1251")


def deliver(inbox: Path, content: bytes) -> float:
    folder = inbox / "closures"
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / "municipal_closures.csv.part"
    part.write_bytes(content)
    part.rename(folder / "municipal_closures.csv")
    return time.time()


def poll(what: str, check, supervisor: subprocess.Popen):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        if supervisor.poll() is not None:
            sys.exit(f"the portal stopped while waiting for {what}")
        if time.monotonic() > deadline:
            sys.exit(f"not within {DEADLINE_SECONDS} s: {what}")
        time.sleep(POLL_SECONDS)


def served(server: str, closure_id: str) -> dict | None:
    response = httpx.get(f"{server}/collections/{LAYER}/items", params={"limit": 10000, "f": "json"}, timeout=30)
    matches = [f for f in response.json()["features"] if f["properties"]["closure_id"] == closure_id]
    return matches[0] if matches else None


def in_tile(server: str, feature: dict, closure_id: str, z: int = 14) -> bool:
    lon, lat = feature["geometry"]["coordinates"][0]
    x = int((lon + 180) / 360 * 2**z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
    response = httpx.get(f"{server}/tiles/{LAYER}/{z}/{x}/{y}.pbf", timeout=30)
    if response.status_code != 200 or not response.content:
        return False
    features = mapbox_vector_tile.decode(response.content).get(LAYER, {}).get("features", [])
    return any(f["properties"].get("closure_id") == closure_id for f in features)


def sensor_run(instance: dg.DagsterInstance, since: float):
    """The first run the inbox sensor created after `since`, once it has finished."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/sensor_name": "inbox_sensor"}), limit=5)
    created = sorted((r for r in records if r.create_timestamp.timestamp() >= since), key=lambda r: r.create_timestamp)
    return created[0] if created and created[0].end_time else None


def run_steps(instance: dg.DagsterInstance, record) -> tuple[dict[str, float], float]:
    """The run split by step; and when the layer was materialized (published)."""
    times: dict[str, float] = {}
    checks = []
    for entry in instance.all_logs(record.dagster_run.run_id):
        event = entry.dagster_event
        if event is None or event.step_key != LAYER:  # the run may rebuild layers built on closures too
            continue
        if event.event_type_value == "STEP_START":
            times["step_start"] = entry.timestamp
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            checks.append(entry.timestamp)
        elif event.event_type_value == "ASSET_MATERIALIZATION":
            times["materialized"] = entry.timestamp
    created = record.create_timestamp.timestamp()
    checked = max(checks) if checks else times["step_start"]
    steps = {
        "detect": created,
        "launch": record.start_time - created,
        "build": checked - times["step_start"],
        "publish": times["materialized"] - checked,
        "finish": record.end_time - times["materialized"],
    }
    return steps, times["materialized"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench_freshness_"))
    env = environment(base)
    server = f"http://127.0.0.1:{env['GEOPORTAL_SERVER_PORT']}"
    print(f"publishing the sample city into {base} ...", flush=True)
    subprocess.run([sys.executable, "-m", "pipelines"], cwd=REPO, env=env, check=True, capture_output=True)
    log = open(base / "portal.log", "wb")  # noqa: SIM115 - written by the portal until it stops
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    rows = []
    try:
        poll("the server", lambda: httpx.get(server + "/", timeout=2).status_code == 200, supervisor)
        # a first delivery, not measured, waits for the daemon and its code server to be up
        warmup = deliver(Path(env["GEOPORTAL_INBOX_DIR"]), closures_with("ПД-WARMUP"))
        poll("the warm-up delivery", lambda: served(server, "ПД-WARMUP"), supervisor)
        print(f"daemon ready {time.time() - warmup:.1f} s after the warm-up delivery", flush=True)
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            for number in range(args.deliveries):
                closure_id = f"ПД-BENCH-{number:03d}"
                delivered = deliver(Path(env["GEOPORTAL_INBOX_DIR"]), closures_with(closure_id))
                feature = poll(closure_id, lambda cid=closure_id: served(server, cid), supervisor)
                at_items = time.time()
                poll(f"{closure_id} in a tile", lambda f=feature, cid=closure_id: in_tile(server, f, cid), supervisor)
                at_tile = time.time()
                record = poll("the sensor's run", lambda d=delivered: sensor_run(instance, d), supervisor)
                steps, published = run_steps(instance, record)
                steps |= {
                    "detect": steps["detect"] - delivered,
                    "server": at_items - published,
                    "tile": at_tile - at_items,
                }
                row = {"closure": closure_id, **steps, "to_items": at_items - delivered, "to_tile": at_tile - delivered}
                # a scheduled run reading the live copy may publish it before the sensor's run ends: not measured
                row["by_schedule"] = published > at_items
                rows.append(row)
                print(
                    f"{closure_id}: items {row['to_items']:5.1f} s, tile {row['to_tile']:5.1f} s   "
                    + "  ".join(f"{s} {steps[s]:.2f}" for s in STEPS),
                    flush=True,
                )
                # the archive step of this delivery happens on the next tick; wait for it so ticks do not overlap
                poll(
                    "the inbox emptied",
                    lambda: not any((Path(env["GEOPORTAL_INBOX_DIR"]) / "closures").iterdir()),
                    supervisor,
                )
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)
        log.close()
    measured = [r for r in rows if not r["by_schedule"]]
    summary = {
        key: {"p50": statistics.median(r[key] for r in measured), "max": max(r[key] for r in measured)}
        for key in [*STEPS, "to_items", "to_tile"]
    }
    print(f"\n{len(measured)} deliveries through the real daemon (seconds; {len(rows) - len(measured)} left out:")
    print("published first by a scheduled run)")
    print(f"{'step':10} {'p50':>6} {'max':>6}")
    for key, values in summary.items():
        print(f"{key:10} {values['p50']:6.2f} {values['max']:6.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_freshness.json").write_text(json.dumps({"summary": summary, "deliveries": rows}, indent=2))
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
