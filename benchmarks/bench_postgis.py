"""The PostGIS store's costs against the GeoPackage store in the same run, on a throw-away cluster (tests/pg.py).

    .venv/bin/python benchmarks/bench_postgis.py [--features 100000] [--signatures 2000]

Measures: publishing N points as a GeoPackage vs to PostGIS (staging, indexes, swap), a republication (the previous
version kept), one server's local copy of the new version, and `signature()` (asked on every request) of each store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "benchmarks" / "out"


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--signatures", type=int, default=2000)
    args = parser.parse_args()

    from assets.publish import publish_geopackage
    from assets.stores.postgis import publish_postgis
    from layers.catalog import load_catalog
    from server.published.postgis_store import PostGISStore
    from server.published.store import GeoPackageStore
    from tests.conftest import city_paths
    from tests.pg import Cluster, missing_reason
    from tests.test_postgis_publish import small_frame

    reason = missing_reason()
    if reason:
        sys.exit(reason)
    catalog = load_catalog()
    spec = catalog["addresses"]
    frame = small_frame(spec, [f"a{n}" for n in range(args.features)])
    cluster = Cluster()
    folder = Path(tempfile.mkdtemp(prefix="bench-postgis-"))
    cluster.start()
    try:
        url = cluster.create_database("bench")
        paths = city_paths(folder)
        figures = {
            "features": args.features,
            "geopackage_publish_s": _timed(
                lambda: publish_geopackage(frame, spec, paths.published_path(spec.id), to_store=False)
            ),
            "postgis_publish_s": _timed(lambda: publish_postgis(frame, spec, url)),
            "postgis_republish_s": _timed(lambda: publish_postgis(frame, spec, url)),
        }
        stores = {
            "postgis": PostGISStore(catalog, paths, url, folder / "cache"),
            "geopackage": GeoPackageStore(catalog, paths),
        }
        figures["server_local_copy_s"] = _timed(stores["postgis"].extents)
        for name, store in stores.items():
            store.signature()
            seconds = _timed(lambda store=store: [store.signature() for _ in range(args.signatures)])
            figures[f"{name}_signature_us"] = seconds / args.signatures * 1e6
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "postgis.json").write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"{key:28} {value:,.2f}" if isinstance(value, float) else f"{key:28} {value:,}")


if __name__ == "__main__":
    main()
