"""The served configuration is rebuilt when a published file changes, and only then."""

from __future__ import annotations

import asyncio

from server.app import create_app
from server.published.store import GeoPackageStore


def test_site_is_not_rebuilt_while_nothing_changes(published_city):
    app = create_app(paths=published_city)
    live = app.state.live
    assert "disruption_load" in GeoPackageStore(app.state.catalog, published_city).watched_files()
    first, second = asyncio.run(live.current()), asyncio.run(live.current())
    assert first is second is live.site, "a request must not pay for rebuilding the API"
