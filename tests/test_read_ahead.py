"""After a publication, each server worker reads ahead what its `datetime=` windows are counted from
(server.ogcapi.read_ahead), so that the first visitors' windows of a new version are neither counted in SQL nor
kept waiting while it is read: measured before, with 2 workers on 1M repairs, p99 105 ms in the first 10 s of
random 7-day windows, 11-12 ms after."""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from server.app import create_app
from server.features.connections import POOL
from server.features.time_ranks import TIME_RANKS
from tests.conftest import city_paths

DEADLINE_SECONDS = 60


def held_ranks(path: str, table: str) -> tuple[object, bool]:
    """The file's current version, and whether the ranks of both its time columns are held for it."""
    with POOL.connection(path) as (_connection, version):
        key = (version, table)
        return version, all(TIME_RANKS._ranks.get((key, table, name)) for name in ("start_time", "end_time"))


def test_a_started_server_reads_each_new_versions_window_data_before_any_window_is_asked(published_city, tmp_path):
    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    path = str(paths.published_path("repairs"))
    app = create_app(paths=paths)

    async def wait_for_ranks(what: str) -> object:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            version, held = held_ranks(path, "repairs")
            if held:
                return version
            assert time.monotonic() < deadline, f"the ranks of {what} were not read ahead"
            await asyncio.sleep(0.05)  # polling interval: the server's thread reads them

    async def serve_without_requests() -> tuple[object, object]:
        async with app.router.lifespan_context(app):
            first = await wait_for_ranks("the version served at start")
            republished = path + ".next"
            shutil.copyfile(path, republished)
            os.replace(republished, path)  # a publication: the same layer, a new file version
            second = await wait_for_ranks("the republished version")
            return first, second

    first, second = asyncio.run(serve_without_requests())
    assert first != second


def test_a_key_is_read_once_at_a_time_and_is_free_again_when_its_read_is_done():
    """server.features.background, which the point indexes, time ranks and PostGIS sorted times read through: a
    second read of a key under way is not started (and says so), `join` waits for it, and the key is free after."""
    import threading

    from server.features.background import BackgroundReads

    reads, gate, done = BackgroundReads("test-reads"), threading.Event(), []
    assert reads.start("repairs", lambda: (gate.wait(DEADLINE_SECONDS), done.append("first")))
    assert not reads.start("repairs", lambda: done.append("second"))
    assert reads.running("repairs") and not reads.wait_for_reads(0.2)
    assert reads.start("closures", lambda: done.append("another key"))  # other keys are read meanwhile
    gate.set()
    reads.join("repairs")
    assert reads.wait_for_reads(DEADLINE_SECONDS) and not reads.running("repairs")
    assert sorted(done) == ["another key", "first"]
    assert reads.start("repairs", lambda: done.append("again")) and reads.wait_for_reads(DEADLINE_SECONDS)
    assert done[-1] == "again"
