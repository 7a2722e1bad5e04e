"""Differential check of the ingest: two source trees build and publish the same city, and their
published layers, rejects, counts and warnings must be identical.

Run: `.venv/bin/python benchmarks/diff_ingest.py --old /tmp/oldmain [--city sample|synthetic] [--scale 0.1]`
where `--old` is an export of the reference commit (`git archive <rev> | tar -x -C /tmp/oldmain`).
Each tree runs in its own process (its own `assets` package on `sys.path`) into its own folder;
the comparison is of everything a user or the server sees: every column of every published row in
fid order (geometry as the GeoPackage blob), the GeoPackage's extent and metadata, the rejects CSV
byte for byte, and the build's counts and warnings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOW = "2026-12-01T12:00:00+00:00"  # one clock for both trees: the plausible-date window moves with it

WORKER = r"""
import datetime as dt, json, sys, traceback
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from assets.ingest import build_layer, publish_layer
from assets.responsibility import is_event_layer
from layers.catalog import load_catalog
from layers.settings import PathSettings

catalog_dir, sample_dir, out, now, wanted, chunk_rows = sys.argv[2:8]
out = Path(out)
paths = PathSettings(root=out, catalog_dir=catalog_dir, sample_dir=sample_dir, live_dir=out / "live",
                     published_dir=out / "published", rejects_dir=out / "rejects")
catalog = load_catalog(catalog_dir)
layers = [l for l in catalog.values() if not wanted or l.id in wanted.split(",")]
# the address register and the zones first: event layers geocode against them and are tagged by them
layers.sort(key=lambda l: (bool(l.geocode_layers), is_event_layer(l), l.id))
report = {}
for spec in layers:
    try:
        options = {"chunk_rows": int(chunk_rows)} if chunk_rows else {}  # the old tree may not have the setting
        build = build_layer(spec, catalog, paths, now=dt.datetime.fromisoformat(now), **options)
        publish_layer(build, paths)
        c = build.counts
        report[spec.id] = {"counts": [c.read, c.published, c.repaired, c.rejected, c.skipped, c.by_source],
                           "warnings": build.warnings, "crs": build.source_crs, "unjoined": build.unjoined,
                           "bbox": build.bbox}
    except Exception as error:  # noqa: BLE001 - a failure is an outcome to compare too
        report[spec.id] = {"error": f"{type(error).__name__}: {error}"}
(out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str))
"""


def run_tree(tree: Path, catalog: Path, sample: Path, out: Path, layers: str, chunk_rows: int | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "GEOPORTAL_STORE_URL": ""}
    subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(tree),
            str(catalog),
            str(sample),
            str(out),
            NOW,
            layers,
            str(chunk_rows or ""),
        ],
        check=True,
        env=env,
        cwd=tree,
    )
    return json.loads((out / "report.json").read_text())


def table_digest(path: Path, layer: str) -> tuple[str, list[tuple], dict]:
    """(hash of every row in fid order, the first rows, extent and metadata) of a published layer."""
    with sqlite3.connect(path) as db:
        layer = db.execute("SELECT table_name FROM gpkg_contents WHERE data_type = 'features'").fetchone()[0]
        rows = db.execute(f'SELECT * FROM "{layer}" ORDER BY fid')
        names = [d[0] for d in rows.description]
        digest, head = hashlib.sha256(), []
        for row in rows:
            digest.update(repr(row).encode())
            if len(head) < 3:
                head.append(row)
        contents = db.execute("SELECT min_x, min_y, max_x, max_y, srs_id FROM gpkg_contents").fetchall()
        meta = db.execute("SELECT metadata FROM gpkg_metadata").fetchall() if _has(db, "gpkg_metadata") else []
        columns = db.execute(f'PRAGMA table_info("{layer}")').fetchall()
        indexes = sorted(r[1] for r in db.execute(f'PRAGMA index_list("{layer}")'))
    return (
        digest.hexdigest(),
        head,
        {"names": names, "contents": contents, "metadata": meta, "columns": columns, "indexes": indexes},
    )


def _has(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None


def compare(old: Path, new: Path, old_report: dict, new_report: dict) -> list[str]:
    problems = []
    for layer in sorted(set(old_report) | set(new_report)):
        a, b = old_report.get(layer), new_report.get(layer)
        if a != b:
            problems.append(f"{layer}: build differs:\n  old {a}\n  new {b}")
        if a is None or b is None or "error" in a or "error" in b:
            continue
        gpkg_a, gpkg_b = old / "published" / f"{layer}.gpkg", new / "published" / f"{layer}.gpkg"
        da, db = table_digest(gpkg_a, layer), table_digest(gpkg_b, layer)
        if da[0] != db[0]:
            problems.append(f"{layer}: published rows differ; first rows\n  old {da[1]}\n  new {db[1]}")
        if da[2] != db[2]:
            problems.append(f"{layer}: GeoPackage structure differs:\n  old {da[2]}\n  new {db[2]}")
        ra, rb = (d / "rejects" / f"{layer}.csv" for d in (old, new))
        if ra.read_bytes() != rb.read_bytes():
            la, lb = ra.read_text("utf-8-sig").splitlines(), rb.read_text("utf-8-sig").splitlines()
            first = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), min(len(la), len(lb)))
            problems.append(
                f"{layer}: rejects differ ({len(la)} vs {len(lb)} lines), first at line {first + 1}:\n"
                f"  old {la[first] if first < len(la) else None}\n"
                f"  new {lb[first] if first < len(lb) else None}"
            )
        print(
            f"{layer}: {a['counts'][1]:,} published, {a['counts'][3]:,} rejected: "
            f"{'same' if not any(p.startswith(layer + ':') for p in problems) else 'DIFFERENT'}"
        )
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the reference source tree")
    parser.add_argument("--new", type=Path, default=REPO, help="the tree under test (default: this one)")
    parser.add_argument("--city", choices=["sample", "synthetic"], default="sample")
    parser.add_argument("--scale", type=float, default=0.1, help="of the synthetic city")
    parser.add_argument("--layers", default="", help="comma-separated subset (default: all)")
    parser.add_argument(
        "--chunk-rows", type=int, help="the new tree's build_layer(chunk_rows=...): records normalised at a time"
    )
    args = parser.parse_args()
    if args.city == "sample":
        catalog, sample = REPO / "layers", REPO / "data" / "sample" / "irkutsk"
    else:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from bench_ingest import CATALOG_DIR, CITY_DIR, CITY_YAML, write_catalog
        from synthetic_city import ensure_city

        ensure_city(CITY_DIR, args.scale, CITY_YAML)
        write_catalog()
        catalog, sample = CATALOG_DIR, CITY_DIR / f"scale_{args.scale:g}"
    with tempfile.TemporaryDirectory(prefix="diff_ingest_") as work:
        old, new = Path(work) / "old", Path(work) / "new"
        old_report = run_tree(args.old.resolve(), catalog, sample, old, args.layers)
        new_report = run_tree(args.new.resolve(), catalog, sample, new, args.layers, args.chunk_rows)
        problems = compare(old, new, old_report, new_report)
    print("\n".join(problems) if problems else "identical: published layers, rejects, counts and warnings")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
