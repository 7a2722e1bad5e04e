"""Fuzz the real server from its OpenAPI document at benchmark scale (≥ 10,000 requests), as each access level.

    .venv/bin/python benchmarks/bench_fuzz.py                 # 40 examples per operation and mode: ≈ 11,000 requests
    .venv/bin/python benchmarks/bench_fuzz.py --examples 10   # smaller

Publishes the bundled sample city into benchmarks/out/fuzz/, starts `python -m server` on a free loopback port
with a public-level and a staff key, runs tests/openapi_fuzz.py's harness without a key, with the public-level
key and with the staff key, and writes benchmarks/out/fuzz.json (counts per status, every response >= 500).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SAMPLE_MOMENT, city_paths, resource_for  # noqa: E402
from tests.openapi_fuzz import available, fuzz  # noqa: E402
from tests.server_fixtures import STAFF_KEY, VISITOR_KEY, start_server, stop_server  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


def publish_sample_city(base: Path):
    import dagster as dg

    from layers.catalog import load_catalog
    from pipelines.factory import layer_assets
    from pipelines.raster import PRODUCT, disruption_load_asset

    paths = city_paths(base)
    if not paths.published_path("repairs").exists():
        catalog = load_catalog()
        result = dg.materialize(
            [*layer_assets(catalog), disruption_load_asset(catalog)],
            resources={"geoportal": resource_for(paths)},
            run_config={"ops": {PRODUCT: {"config": {"at": SAMPLE_MOMENT}}}},
        )
        assert result.success
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=40, help="examples per operation and generation mode")
    args = parser.parse_args()
    if not available():
        sys.exit("the OGC API Features OpenAPI copy in ../shared/data/ogcapi-features is missing")
    paths = publish_sample_city(OUT / "fuzz" / "city")
    server = start_server(paths, OUT / "fuzz" / "server.log")
    report = {}
    try:
        for caller, headers in [("no key", {}), ("public key", {"X-API-Key": VISITOR_KEY}),
                                ("staff key", {"X-API-Key": STAFF_KEY})]:  # fmt: skip
            result = fuzz(server.url, args.examples, headers=headers)
            print(f"{caller:10}  {result.summary()}", flush=True)
            report[caller] = {"summary": result.summary(), "statuses": dict(result.statuses),
                              "server_errors": result.server_errors}  # fmt: skip
    finally:
        stop_server(server)
    total = sum(sum(r["statuses"].values()) for r in report.values())
    errors = sum(len(r["server_errors"]) for r in report.values())
    print(f"total       {total} requests, {errors} responses >= 500")
    (OUT / "fuzz.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
