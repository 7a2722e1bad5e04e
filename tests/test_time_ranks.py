"""Counts from a time column's ranks equal SQLite's own counts, ties, ends and NULLs included."""

from __future__ import annotations

import random
import sqlite3

import pytest

from server.features.time_ranks import TimeRanks, read_ranks


@pytest.fixture
def connection() -> sqlite3.Connection:
    rng = random.Random(7)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE repairs (fid INTEGER PRIMARY KEY, start_time TEXT)")
    days = [
        f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00.000Z"
        for _ in range(3000)
    ]
    days += ["2026-06-01T00:00:00.000Z"] * 200 + [None] * 300  # a run of ties longer than a sample, and open ends
    db.executemany("INSERT INTO repairs (start_time) VALUES (?)", [(d,) for d in days])
    db.execute("CREATE INDEX repairs_start ON repairs (start_time)")
    return db


def test_ranked_counts_equal_sqlite_counts(connection: sqlite3.Connection) -> None:
    ranks = TimeRanks()
    ranks._ranks.put(("v1", "repairs", "start_time"), read_ranks(connection, "repairs", "start_time", sample=16))
    probes = ["2025-12-31T00:00:00.000Z", "2026-06-01T00:00:00.000Z", "2026-06-01T00:00:00.001Z", "2027-01-01"]
    rng = random.Random(3)
    probes += [f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:30:00.000Z" for _ in range(200)]
    probes += [
        v for (v,) in connection.execute("SELECT start_time FROM repairs WHERE fid % 97 = 0 AND start_time IS NOT NULL")
    ]
    for value in probes:
        for operator in (">", "<"):
            expected = connection.execute(f"SELECT count(*) FROM repairs WHERE start_time {operator} ?", (value,))
            got = ranks.count(connection, "v1", "repairs", "start_time", operator, value)
            assert got == expected.fetchone()[0], (operator, value)


def test_a_column_holding_numbers_is_not_ranked() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE repairs (fid INTEGER PRIMARY KEY, start_time DATETIME)")  # NUMERIC affinity, as GPKG
    db.executemany("INSERT INTO repairs (start_time) VALUES (?)", [("2026-01-02T00:00:00.000Z",), ("20260101",)])
    assert read_ranks(db, "repairs", "start_time") is None
    assert TimeRanks().count(db, "v2", "repairs", "start_time", ">", "2026-01-01") is None


def test_given_the_file_the_ranks_are_read_off_the_request(connection: sqlite3.Connection, tmp_path) -> None:
    """The first count of a file version is None (the provider counts in SQL) while a thread reads the ranks (~1 s on
    1M features, which a request used to wait for); the counts after come from them."""
    from server.features.connections import POOL

    path = str(tmp_path / "repairs.gpkg")
    connection.commit()  # the fixture inserted in a transaction
    connection.execute("VACUUM INTO ?", (path,))
    ranks = TimeRanks()
    value = "2026-06-01T00:00:00.000Z"
    with POOL.connection(path) as (on_file, version):
        first = ranks.count(on_file, (version, "repairs"), "repairs", "start_time", ">", value, path)
        assert ranks.wait_for_reads(60)
        counted = ranks.count(on_file, (version, "repairs"), "repairs", "start_time", ">", value, path)
        expected = on_file.execute("SELECT count(*) FROM repairs WHERE start_time > ?", (value,)).fetchone()[0]
    assert first is None
    assert counted == expected > 0


def test_ranks_are_read_in_their_turn_not_beside_a_box_index_build(connection: sqlite3.Connection, tmp_path) -> None:
    """The ranks kept (a thousand texts) are not read while a tile box index build holds the turn (its rows alive
    at once would keep their arenas resident, server.memory.LARGE_BUILDS); counted in SQL meanwhile, then ranked."""
    from server.features.connections import POOL
    from server.memory import LARGE_BUILDS

    path = str(tmp_path / "repairs.gpkg")
    connection.commit()
    connection.execute("VACUUM INTO ?", (path,))
    ranks = TimeRanks()
    value = "2026-06-01T00:00:00.000Z"
    with POOL.connection(path) as (on_file, version):
        with LARGE_BUILDS.turn():
            assert ranks.count(on_file, (version, "repairs"), "repairs", "start_time", ">", value, path) is None
            assert not ranks.wait_for_reads(1.0)  # 3,500 values: read in milliseconds, were it not waiting
        assert ranks.wait_for_reads(60)
        assert ranks.count(on_file, (version, "repairs"), "repairs", "start_time", ">", value, path) is not None
