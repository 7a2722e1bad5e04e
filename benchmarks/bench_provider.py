"""Our GeoPackage provider against pygeoapi's stock SQLiteGPKG provider on one 1M-point GeoPackage.

    .venv/bin/python benchmarks/bench_provider.py [--features 1000000] [--repeat 20] [--rebuild]

The file and a Debian-python venv for the stock provider are built once into `benchmarks/out/`.
Both providers are constructed per request, as pygeoapi does, and timed on the same queries in the
same run: the stock one in a subprocess, because it needs SQLite extension loading (mod_spatialite).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "benchmarks" / "out"
TABLE = "repairs"
EXTENT = (103.95, 52.15, 104.55, 52.45)  # Irkutsk, lon/lat
PUBLIC = ["permit_id", "network", "work_kind", "status", "address", "contractor", "start_time", "end_time"]
DEBIAN_PYTHON = Path("/usr/bin/python3")
SPATIALITE = Path("/usr/lib/x86_64-linux-gnu/mod_spatialite.so")
STOCK_VENV = OUT / "stock-venv"
PYGEOAPI_VERSION = "0.21.0"
SEED = 20261124
BUDGET_SECONDS = 90  # per scenario and provider: the stock deep page takes seconds each


# ---------------------------------------------------------------------- the data set


def build_dataset(path: Path, features: int) -> None:
    """Random repair permits inside the city, published by the pipeline's own publisher with the
    catalog's `repairs` spec: the same GeoPackage 1.2, fids, R-tree and id/time indexes as served."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from assets.publish import publish_geopackage, stable_fid
    from layers.catalog import load_catalog

    spec = load_catalog()[TABLE]
    rng = np.random.default_rng(SEED)
    ids = [f"P-{i:07d}" for i in range(features)]
    minutes = rng.integers(0, 365 * 24 * 60, features)
    start = pd.Timestamp("2026-01-01T00:00:00Z") + pd.to_timedelta(minutes, unit="min")
    end = pd.Series(start + pd.to_timedelta(rng.integers(60, 30 * 24 * 60, features), unit="min"))
    end[rng.random(features) < 0.2] = pd.NaT  # open-ended permits
    frame = gpd.GeoDataFrame(
        {
            "fid": np.array([stable_fid(TABLE, i) for i in ids], dtype="int64"),
            "permit_id": ids,
            "network": rng.choice(["heat", "water", "sewer", "power", "gas", "telecom"], features),
            "work_kind": rng.choice(["planned", "emergency"], features),
            "status": rng.choice(["issued", "active", "completed", "suspended"], features),
            "address": [f"ул. Ленина, {i % 500 + 1}" for i in range(features)],
            "contractor": rng.choice(["Иркутскэнерго", "Водоканал", "Горсвет", None], features),
            "start_time": start,
            "end_time": end,
            "contractor_phone": [f"+7 3952 {i % 1000000:06d}" for i in range(features)],
            "notes": None,
        },
        geometry=shapely.points(
            rng.uniform(EXTENT[0], EXTENT[2], features), rng.uniform(EXTENT[1], EXTENT[3], features)
        ),
        crs="EPSG:4326",
    )
    for extra in (f.name for f in spec.fields if f.name not in frame):  # fields added to the catalog later
        frame[extra] = None
    publish_geopackage(frame, spec, path)


# ---------------------------------------------------------------------- scenarios


def sample_fids(path: Path, count: int) -> list[int]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(f"SELECT fid FROM {TABLE} ORDER BY random() LIMIT ?", (count,)).fetchall()
    finally:
        connection.close()
    return [fid for (fid,) in rows]


def scenarios(repeat: int, fids: list[int]) -> list[dict]:
    """The same query arguments for both providers; random ones so no answer is cached."""
    rng = random.Random(SEED)
    small = []
    for _ in range(repeat):
        x, y = rng.uniform(EXTENT[0], EXTENT[2] - 0.01), rng.uniform(EXTENT[1], EXTENT[3] - 0.01)
        small.append({"bbox": [x, y, x + 0.01, y + 0.01], "limit": 10})
    windows = []
    for _ in range(repeat):
        day = rng.randint(1, 350)
        first = time.strftime("%Y-%m-%d", time.gmtime(1767225600 + day * 86400))
        last = time.strftime("%Y-%m-%d", time.gmtime(1767225600 + (day + 6) * 86400))
        windows.append({"datetime_": f"{first}/{last}", "limit": 10})
    return [
        {"name": "small bbox (0.01°, limit 10)", "queries": small},
        {"name": "datetime 7-day window (limit 10)", "queries": windows, "stock_note": "stock ignores datetime"},
        {"name": "first page (limit 10)", "queries": [{"limit": 10}] * repeat},
        {"name": "first page (limit 1000)", "queries": [{"limit": 1000}] * repeat},
        {
            "name": "offset 900k, cold (limit 10)",
            "queries": [{"offset": 900000 + 10 * rng.randint(0, 5000), "limit": 10} for _ in range(repeat)],
            "cold": True,
        },
        {
            "name": "offset 900k, paging on (limit 10)",
            "queries": [{"offset": 900000 + 10 * i, "limit": 10} for i in range(repeat)],
        },
        {"name": "item by id", "method": "get", "queries": [{"identifier": fid} for fid in fids[:repeat]]},
    ]


# ---------------------------------------------------------------------- runners

STOCK_RUNNER = r"""
import json, sys, time
from pygeoapi.provider.sqlite import SQLiteGPKGProvider
job = json.load(sys.stdin)
definition = {"name": "SQLiteGPKG", "type": "feature", "data": job["path"], "id_field": "fid", "table": job["table"]}
results = []
for scenario in job["scenarios"]:
    times, constructs, errors, first_ids, started = [], [], 0, None, time.perf_counter()
    for query in scenario["queries"]:
        if times and time.perf_counter() - started > job["budget"] and len(times) >= 3:
            break
        t0 = time.perf_counter()
        try:
            provider = SQLiteGPKGProvider(definition)  # pygeoapi builds one per request
            t1 = time.perf_counter()
            if scenario.get("method") == "get":
                result = {"features": [provider.get(**query)]}
            else:
                result = provider.query(**query)
        except Exception:
            errors += 1
            continue
        times.append((time.perf_counter() - t0) * 1000)
        constructs.append((t1 - t0) * 1000)
        if first_ids is None:
            first_ids = [f["id"] for f in result["features"]]
    results.append({"times": times, "constructs": constructs, "errors": errors, "first_ids": first_ids})
json.dump(results, sys.stdout)
"""


def run_ours(path: Path, plan: list[dict]) -> list[dict]:
    from server.features import paging as provider_paging
    from server.features.provider import GeoPackageProvider

    definition = {
        "name": "server.features.provider.GeoPackageProvider",
        "type": "feature",
        "data": str(path),
        "table": TABLE,
        "id_field": "fid",
        "time_field": "start_time",
        "time_end_field": "end_time",
        "properties": PUBLIC,
    }
    GeoPackageProvider(definition).query(limit=1)  # metadata read once per file version, like a server warm-up
    results = []
    for scenario in plan:
        times, errors, first_ids, started = [], 0, None, time.perf_counter()
        for query in scenario["queries"]:
            if times and time.perf_counter() - started > BUDGET_SECONDS and len(times) >= 3:
                break
            if scenario.get("cold"):
                provider_paging.clear()  # no checkpoint or count from an earlier request helps
            t0 = time.perf_counter()
            try:
                provider = GeoPackageProvider(definition)
                if scenario.get("method") == "get":
                    result = {"features": [provider.get(**query)]}
                else:
                    result = provider.query(**query)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                print(f"  ours failed on {query}: {exc!r}", file=sys.stderr)
                errors += 1
                continue
            times.append((time.perf_counter() - t0) * 1000)
            if first_ids is None:
                first_ids = [f["id"] for f in result["features"]]
        results.append({"times": times, "errors": errors, "first_ids": first_ids})
    return results


def ensure_stock_venv() -> Path | None:
    """Debian's python3 (extension loading on) + mod_spatialite + pygeoapi, in benchmarks/out/."""
    python = STOCK_VENV / "bin" / "python"
    if python.exists():
        return python
    if not DEBIAN_PYTHON.exists() or not SPATIALITE.exists():
        print(
            "  the stock provider needs Debian's python3 and libsqlite3-mod-spatialite:\n"
            "    apt-get update && apt-get install -y python3 python3-venv libsqlite3-mod-spatialite"
        )
        return None
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--system-site-packages", STOCK_VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", f"pygeoapi=={PYGEOAPI_VERSION}"], check=True)
    return python


def run_stock(python: Path, path: Path, plan: list[dict]) -> list[dict]:
    job = {"path": str(path), "table": TABLE, "budget": BUDGET_SECONDS, "scenarios": plan}
    done = subprocess.run(
        [python, "-c", STOCK_RUNNER], input=json.dumps(job), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def stock_runs_here() -> str:
    """Say whether the stock provider can run in this Python (it needs sqlite3 extension loading)."""
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        return "no: this Python's sqlite3 was built without extension loading (no SpatiaLite)"
    return "yes: this Python's sqlite3 can load extensions"


# ---------------------------------------------------------------------- report


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def report(plan: list[dict], ours: list[dict], stock: list[dict] | None) -> list[dict]:
    rows = []
    header = (
        f"{'scenario':36s} {'n':>3s} {'ours med':>9s} {'ours p95':>9s} "
        f"{'stock med':>10s} {'stock p95':>10s} {'ratio':>7s}  errors  notes"
    )
    print(header)
    print("-" * len(header))
    for index, scenario in enumerate(plan):
        mine = ours[index]
        theirs = stock[index] if stock else None
        row = {
            "scenario": scenario["name"],
            "ours_median_ms": statistics.median(mine["times"]),
            "ours_p95_ms": percentile(mine["times"], 0.95),
            "ours_n": len(mine["times"]),
            "ours_errors": mine["errors"],
        }
        notes = []
        if theirs and theirs["times"]:
            row |= {
                "stock_median_ms": statistics.median(theirs["times"]),
                "stock_p95_ms": percentile(theirs["times"], 0.95),
                "stock_construct_median_ms": statistics.median(theirs["constructs"]),
                "stock_n": len(theirs["times"]),
                "stock_errors": theirs["errors"],
            }
            row["ratio"] = row["stock_median_ms"] / row["ours_median_ms"]
            if scenario.get("stock_note"):
                notes.append(scenario["stock_note"])
            elif theirs["first_ids"] == mine["first_ids"]:
                notes.append("same features")
            else:
                notes.append("DIFFERENT features")
        rows.append(row)
        stock_cells = f"{'-':>10s} {'-':>10s} {'-':>7s}"
        if "stock_median_ms" in row:
            ratio = f"{row['ratio']:6.0f}x" if row["ratio"] >= 10 else f"{row['ratio']:6.2f}x"
            stock_cells = f"{row['stock_median_ms']:10.1f} {row['stock_p95_ms']:10.1f} {ratio}"
        errors = f"{row['ours_errors']}/{row.get('stock_errors', '-')}"
        print(
            f"{row['scenario']:36s} {row['ours_n']:3d} {row['ours_median_ms']:9.1f} {row['ours_p95_ms']:9.1f} "
            f"{stock_cells}  {errors:6s}  {', '.join(notes)}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true", help="write the GeoPackage again")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{TABLE}_{args.features}.gpkg"
    if args.rebuild or not path.exists():
        print(f"building {path} ({args.features:,} points) ...", flush=True)
        started = time.perf_counter()
        build_dataset(path, args.features)
        print(f"  done in {time.perf_counter() - started:.0f} s")
    plan = scenarios(args.repeat, sample_fids(path, args.repeat))

    print(f"stock SQLiteGPKG provider in this Python ({sys.executable}): {stock_runs_here()}")
    python = ensure_stock_venv()
    if python is not None:
        print(f"stock provider runs under {DEBIAN_PYTHON} + {SPATIALITE.name} ({python})", flush=True)
    # scenario by scenario, stock then ours, so a busy moment on the machine hits both alike
    ours, stock = [], [] if python is not None else None
    for scenario in plan:
        print(f"  {scenario['name']} ...", flush=True)
        if stock is not None:
            stock.extend(run_stock(python, path, [scenario]))
        ours.extend(run_ours(path, [scenario]))

    print(f"\n{args.features:,} features; ms per request (provider constructed per request, as pygeoapi does)")
    rows = report(plan, ours, stock)
    if stock:
        constructs = [c for s in stock for c in s["constructs"]]
        median = statistics.median(constructs)
        print(f"\nstock constructor alone (opens the file, loads SpatiaLite): median {median:.1f} ms")
    print("ours also computes numberMatched on every request (cached per file version and filter); stock never does")
    (OUT / "bench_provider.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
