"""Property-based fuzzing of the real server from its own OpenAPI document: thousands of valid and invalid
requests, not one answered with a server error (benchmarks/bench_fuzz.py runs the same harness ≥ 10,000 times)."""

from __future__ import annotations

import pytest

from tests.openapi_fuzz import available, fuzz
from tests.server_fixtures import server  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(not available(), reason="the OGC API Features OpenAPI copy (../shared/data) is absent")
CI_REQUESTS = 2000
EXAMPLES_PER_OPERATION = 25  # × operations × (valid, invalid) ≈ 2,300 requests for the sample city


def test_no_generated_request_gets_a_server_error(server):  # noqa: F811
    result = fuzz(server.url, EXAMPLES_PER_OPERATION)
    print(result.summary())
    assert result.requests >= CI_REQUESTS, result.summary()
    assert result.server_errors == [], "\n".join(result.server_errors[:20])
    assert result.statuses[200] > 0 and any(400 <= s < 500 for s in result.statuses)
