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


def test_a_request_checks_the_published_files_once(published_city):
    """Each check is a stat per published file on the event loop, and each stat hands the GIL over to the request
    threads: a public items request used to check twice (the early answers, then the access dispatcher)."""
    import httpx

    app = create_app(paths=published_city)
    live = app.state.live
    checks = []
    signature = live._signature
    live._signature = lambda: checks.append(1) or signature()

    async def ask() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            statuses = []
            for query in ({"limit": 3}, {"limit": 3, "bbox": "104.2,52.2,104.4,52.4"}):
                checks.clear()
                statuses.append((await client.get("/collections/road_closures/items", params=query)).status_code)
                assert len(checks) == 1, query
            return statuses

    assert asyncio.run(ask()) == [200, 200]


def test_the_files_a_requests_check_found_are_the_ones_on_disk_after_a_publication(published_city, tmp_path):
    """An instant page takes its file's identity from the check its request made (`file_versions`) instead of a stat
    of its own: after a layer is published again by rename, the next check must name the new file."""
    import shutil

    from server.published.files import file_identity
    from tests.conftest import city_paths

    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    app = create_app(paths=paths)
    live = app.state.live
    layer = str(paths.published_path("repairs"))
    asyncio.run(live.current())
    before = live.file_versions()[layer]
    assert before == file_identity(layer)
    staged = paths.published_dir / "repairs.gpkg.new"
    shutil.copyfile(layer, staged)
    staged.replace(layer)  # as the pipeline publishes: a new inode under the same name
    asyncio.run(live.current())
    after = live.file_versions()[layer]
    assert after == file_identity(layer) and after != before
    assert live.file_versions() is live.file_versions()  # made once per change, not per request


def test_a_started_worker_leaves_its_long_lived_objects_out_of_full_collections(published_city):
    """A full collection walks every tracked object with the GIL held: over a started worker's ~110k objects (imports,
    catalog, the built API) it paused the event loop and every request thread for 60–270 ms, a p99 of its own. And a
    young collection comes after YOUNG_COLLECTION_AFTER new containers, not every two or three small bboxes."""
    import gc

    from server.memory import YOUNG_COLLECTION_AFTER

    app = create_app(paths=published_city)
    before = gc.get_threshold()

    async def started() -> tuple[int, int, int]:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count(), len(gc.get_objects()), gc.get_threshold()[0]

    try:
        frozen, collected, young = asyncio.run(started())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert frozen > 50_000 and collected < frozen / 5, (frozen, collected)
    assert young == YOUNG_COLLECTION_AFTER
