"""Property-based requests generated from the server's own OpenAPI document (schemathesis + hypothesis), offline.

The document references OGC building blocks on schemas.opengis.net and friends; on a closed network they are
inlined from the local copy in `../shared/data/ogcapi-features/` (OGC API Features Part 1), so nothing is
fetched. Shared by tests/test_server_fuzz.py (CI size) and benchmarks/bench_fuzz.py (≥ 10,000 requests).
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from layers.settings import REPO_ROOT

OGC_FEATURES = REPO_ROOT.parent / "shared" / "data" / "ogcapi-features" / "spec" / "core" / "openapi"
FEATURES_YAML = "https://schemas.opengis.net/ogcapi/features/part1/1.0/openapi/ogcapi-features-1.yaml"
PREFIX = "ogcf_"  # names of the inlined OGC components inside our document
# Other building blocks the document names, and their equivalent in the OGC API Features Part 1 copy.
SUBSTITUTES = {
    "https://schemas.opengis.net/ogcapi/processes/part1/1.0/openapi/responses/NotFound.yaml": "responses/NotFound",
    "https://schemas.opengis.net/ogcapi/processes/part1/1.0/openapi/schemas/exception.yaml": "schemas/exception",
    "https://schemas.opengis.net/ogcapi/tiles/part1/1.0/openapi/ogcapi-tiles-1.yaml#/components/schemas/link": (
        "schemas/link"
    ),
    "https://geojson.org/schema/Geometry.json": "schemas/geometryGeoJSON",
}
# OGC API Records' sortby parameter is not in the local copy; this is its definition (a comma-separated list).
SORTBY = "https://raw.githubusercontent.com/opengeospatial/ogcapi-records/master/core/openapi/parameters/sortby.yaml"
SORTBY_PARAMETER = {
    "name": "sortby",
    "in": "query",
    "required": False,
    "style": "form",
    "explode": False,
    "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "[+|-]?[A-Za-z_].*"}},
}


def available() -> bool:
    return (OGC_FEATURES / "ogcapi-features-1.yaml").exists()


def _rewrite(node: Any, rename: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str) and node["$ref"] in rename:
            target = rename[node["$ref"]]
            return copy.deepcopy(target) if isinstance(target, dict) else {"$ref": target}
        return {key: _rewrite(value, rename) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite(value, rename) for value in node]
    return node


def offline_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with every external reference resolved from the local OGC copy; fails on any left over."""
    features = yaml.safe_load((OGC_FEATURES / "ogcapi-features-1.yaml").read_text(encoding="utf-8"))
    components = features["components"]
    local = {
        f"#/components/{kind}/{name}": f"#/components/{kind}/{PREFIX}{name}"
        for kind, entries in components.items()
        for name in entries
    }
    inlined = _rewrite(components, local)
    rename: dict[str, Any] = {FEATURES_YAML + ref: target for ref, target in local.items()}
    rename.update({url: f"#/components/{kind_name.replace('/', f'/{PREFIX}', 1)}" for url, kind_name in
                   SUBSTITUTES.items()})  # fmt: skip
    rename[SORTBY] = SORTBY_PARAMETER
    result = _rewrite(document, rename)
    for kind, entries in inlined.items():
        result.setdefault("components", {}).setdefault(kind, {}).update(
            {f"{PREFIX}{name}": value for name, value in entries.items()}
        )
    left = sorted({ref for ref in _refs(result) if not ref.startswith("#")})
    if left:
        raise ValueError(f"external references without a local copy: {left}")
    return result


def _refs(node: Any):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@dataclass
class FuzzResult:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # "500 GET /path?query" for each response >= 500

    def summary(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        by_class = Counter(f"{status // 100}xx" for status in self.statuses.elements())
        return (
            f"{self.requests} requests in {self.seconds:.1f} s ({rate:.0f}/s), "
            f"{dict(sorted(by_class.items()))}, {len(self.server_errors)} responses >= 500"
        )


def fuzz(base_url: str, examples: int, headers: dict[str, str] | None = None, seed: int = 0) -> FuzzResult:
    """Up to `examples` generated requests per operation and generation mode (valid and invalid input), against
    the server at `base_url` with its OpenAPI document as that caller sees it."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from schemathesis import GenerationMode

    session = requests.Session()
    session.headers.update(headers or {})
    document = session.get(f"{base_url}/openapi", params={"f": "json"}, timeout=60).json()
    schema = schemathesis.openapi.from_dict(offline_openapi(document))
    result = FuzzResult()
    started = time.monotonic()
    for operation in (outcome.ok() for outcome in schema.get_all_operations()):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis_seed(seed)
            @settings(
                max_examples=examples,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def send(case) -> None:
                response = case.call(base_url=base_url, session=session, timeout=60, allow_redirects=False)
                result.requests += 1
                result.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    url = response.request.url.removeprefix(base_url)
                    result.server_errors.append(f"{response.status_code} {case.method} {url} {response.text[:200]}")

            try:
                send()
            except Exception as exc:  # noqa: BLE001 - hypothesis could not generate for this operation/mode
                if "Unsatisfiable" not in type(exc).__name__ and "InvalidArgument" not in type(exc).__name__:
                    raise
    result.seconds = time.monotonic() - started
    return result


def write_report(result: FuzzResult, path: Path) -> None:
    path.write_text(json.dumps({"summary": result.summary(), "server_errors": result.server_errors}, indent=1))
