"""A published file's identity is looked up at most once per pass of the event loop (server/loop_pass.py): the
requests a worker answers in one pass share one stat per layer, and a publication is seen by the next pass."""

from __future__ import annotations

import asyncio
import os

import pytest
import uvloop

from server.loop_pass import PerPass
from server.tiles.backend import GeoPackageTiles


def counting():
    calls: list = []

    def look_up(key):
        calls.append(key)
        return (key, len(calls))

    return PerPass(look_up), calls


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_one_look_up_per_pass_of_the_loop_and_again_in_the_next(run):
    per_pass, calls = counting()

    async def main():
        first = [per_pass("repairs") for _ in range(5)]  # the requests of one pass
        assert calls == ["repairs"] and len(set(first)) == 1
        per_pass("outages")
        assert calls == ["repairs", "outages"]
        await asyncio.sleep(0)  # the next pass
        assert per_pass("repairs") == ("repairs", 3)
        assert calls == ["repairs", "outages", "repairs"]

    run(main())


def test_off_the_loop_every_call_looks_up():
    per_pass, calls = counting()
    assert per_pass("repairs") != per_pass("repairs")
    assert calls == ["repairs", "repairs"]


def test_a_replaced_file_is_seen_by_the_next_pass(tmp_path):
    path = tmp_path / "repairs.gpkg"
    path.write_bytes(b"first version")
    tiles = GeoPackageTiles(lambda layer_id: tmp_path / f"{layer_id}.gpkg")

    async def main():
        before = tiles.identity("repairs")
        replacement = tmp_path / "new.gpkg"
        replacement.write_bytes(b"the second version")
        os.replace(replacement, path)  # as the pipeline publishes
        assert tiles.identity("repairs") == before  # this pass: the stat it made
        await asyncio.sleep(0)
        after = tiles.identity("repairs")
        assert after != before and after[4] == len(b"the second version")  # type: ignore[index]

    uvloop.run(main())
