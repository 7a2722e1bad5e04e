"""The rows of index pages kept per worker (server.features.row_cache): what is kept, for whom, and within its budget.
Pages read through it against the files are in tests/test_point_index.py (other versions, other fields)."""

from __future__ import annotations

from server.features.row_cache import RowCache, assembled, row_size
from tests.threads import run_at_once


def row(fid: int, text: str = "x" * 100) -> tuple:
    return (fid, b"\x00" * 21, text)


def test_kept_rows_are_given_back_by_fid_and_the_others_named_in_their_order():
    cache, owner = RowCache(2**20), object()
    cache.keep(owner, "select a", [row(3), row(7), row(9)])
    found, missing = cache.kept(owner, "select a", [1, 3, 5, 7, 8])
    assert found == {3: row(3), 7: row(7)} and missing == [1, 5, 8]
    assert cache.kept(owner, "select b", [3]) == ({}, [3])  # another statement's rows are not these
    assert cache.kept(object(), "select a", [3]) == ({}, [3])  # nor another version's


def test_a_page_is_assembled_in_its_fids_order_and_a_fid_without_a_row_has_none():
    kept = {5: row(5), 1: row(1)}
    read = [row(2), row(9)]
    assert assembled([1, 2, 5, 9], kept, read) == [row(1), row(2), row(5), row(9)]
    assert assembled([1, 4, 5], kept, []) == [row(1), row(5)]  # 4: no such row, as the statement gives none
    assert assembled([1, 3, 9], kept, [row(9)]) == [row(1), row(9)]


def test_the_rows_asked_longest_ago_give_way_within_the_budget():
    budget = sum(row_size(row(fid)) for fid in range(1, 11))
    cache, owner = RowCache(budget), object()
    cache.keep(owner, "s", [row(fid) for fid in range(1, 11)])
    assert len(cache) == 10 and cache.size == budget
    cache.kept(owner, "s", [1, 2])  # asked again: the last to give way
    cache.keep(owner, "s", [row(11), row(12), row(13)])
    assert len(cache) == 10 and cache.size <= budget
    found, missing = cache.kept(owner, "s", list(range(1, 14)))
    assert missing == [3, 4, 5] and set(found) == {1, 2, *range(6, 14)}
    cache.keep(owner, "s", [row(6, "y" * 100)])  # kept again: counted once, the newer row given
    assert cache.size == budget and cache.kept(owner, "s", [6])[0][6][2] == "y" * 100


def test_a_zero_budget_keeps_nothing():
    cache, owner = RowCache(0), object()
    cache.keep(owner, "s", [row(1)])
    assert len(cache) == 0 and cache.kept(owner, "s", [1]) == ({}, [1])


def test_a_version_held_by_its_rows_is_never_mistaken_for_a_later_object_at_its_address():
    cache = RowCache(2**20)
    cache.keep(object(), "s", [row(1)])  # the owner made for the call: alive while its row is kept
    for _ in range(1000):  # objects made afterwards get other addresses than the one held
        assert cache.kept(object(), "s", [1]) == ({}, [1])


def test_threads_keeping_and_asking_at_once_never_get_another_fids_row_and_end_within_the_budget():
    budget = 300 * row_size(row(0))
    cache, owner, failures = RowCache(budget), object(), []

    def work(seed: int) -> None:
        try:
            for step in range(20_000):
                fids = [(seed * 7919 + step * 31 + k * 17) % 2_000 for k in range(10)]
                found, missing = cache.kept(owner, "s", fids)
                if any(kept[0] != fid for fid, kept in found.items()) or set(found) & set(missing):
                    failures.append((fids, found, missing))
                cache.keep(owner, "s", [row(fid) for fid in missing])
        except Exception as error:  # noqa: BLE001 - any error is the failure this test looks for
            failures.append(error)

    run_at_once(work)
    assert not failures, failures[:3]
    assert 0 < len(cache) <= 300 and cache.size <= budget
