"""A large layer's fids hashed by a child process (`assets.fids.FidsBeside`) are the fids `stable_fids` gives, in
order, whatever happens to the child: it runs, it is killed midway, it cannot start; and no child outlives a build
that stops early."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest

import assets.fids as fids_module
from assets.fids import FidsBeside, stable_fid, stable_fids


def _ids(count: int, seed: int) -> list[object]:
    draw = random.Random(seed)
    alphabet = "ОРабв-/ №0123456789xyzß"
    texts = ["".join(draw.choice(alphabet) for _ in range(draw.randint(1, 14))) for _ in range(count)]
    return [draw.randint(0, 10**9) if n % 7 == 0 else text for n, text in enumerate(texts)]  # ids of either type


def _chunks(ids: list[object], size: int) -> list[list[object]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]


@pytest.fixture
def small_layers_beside(monkeypatch):
    monkeypatch.setattr(fids_module, "BESIDE_ROWS", 1_000)  # a child from the first thousand ids on


def test_the_child_hashes_what_stable_fids_hashes(small_layers_beside):
    ids = _ids(20_000, seed=1)
    with FidsBeside("repairs") as beside:
        for chunk in _chunks(ids, 3_000):
            beside.add(np.array(chunk, dtype=object))
        assert beside.child is not None and beside.child.poll() is None, "hashed by a child process"
        got = beside.result()
        assert not beside.failed and beside.child.returncode == 0, "the child's answer, not the fallback's"
    assert got.dtype == np.int64
    assert np.array_equal(got, stable_fids("repairs", ids))
    assert got[5] == stable_fid("repairs", ids[5])


def test_a_child_killed_midway_changes_nothing(small_layers_beside):
    ids = _ids(12_000, seed=2)
    chunks = _chunks(ids, 2_000)
    with FidsBeside("road_closures") as beside:
        beside.add(chunks[0])
        os.kill(beside.child.pid, signal.SIGKILL)  # out of memory, an operator's kill -9
        beside.child.wait()
        for chunk in chunks[1:]:
            beside.add(chunk)
        got = beside.result()
    assert np.array_equal(got, stable_fids("road_closures", ids))


def test_no_child_to_be_had_changes_nothing(small_layers_beside, monkeypatch):
    monkeypatch.setattr(fids_module.sys, "executable", "/nonexistent/python")
    ids = _ids(5_000, seed=3)
    with FidsBeside("outages") as beside:
        for chunk in _chunks(ids, 1_500):
            beside.add(chunk)
        assert beside.child is None
        got = beside.result()
    assert np.array_equal(got, stable_fids("outages", ids))


def test_a_small_layer_needs_no_child():
    with FidsBeside("repairs") as beside:
        beside.add(["R-1", "R-2"])
        assert beside.child is None
        assert beside.result().tolist() == [stable_fid("repairs", "R-1"), stable_fid("repairs", "R-2")]


def test_a_build_that_stops_early_leaves_no_child(small_layers_beside):
    with pytest.raises(RuntimeError, match="the next chunk is unreadable"), FidsBeside("repairs") as beside:
        beside.add(_ids(2_000, seed=4))
        child = beside.child
        raise RuntimeError("the next chunk is unreadable")
    assert child.poll() is not None
