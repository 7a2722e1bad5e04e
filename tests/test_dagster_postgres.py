"""Dagster on PostgreSQL (dagster.postgres.yaml): `python -m pipelines` records its run, the run's events and the
materializations in the database named by DAGSTER_POSTGRES_URL, and nothing in SQLite under DAGSTER_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg
import yaml

from layers.settings import REPO_ROOT
from tests import pg
from tests.conftest import city_paths, path_environment

postgres_cluster, postgres_url = pg.postgres_cluster, pg.postgres_url  # the fixtures this module uses

PROFILE = REPO_ROOT / "dagster.postgres.yaml"


def dagster_url(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, with which dagster-postgres's NOTIFY fails; the
    profile's URL names psycopg2 (README, "Deployment")."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def postgres_instance_environment(base: Path, url: str) -> dict[str, str]:
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(PROFILE, home / "dagster.yaml")
    return {
        **os.environ,
        **path_environment(city_paths(base)),
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_url(url),
        "DAGSTER_MAX_CONCURRENT_RUNS": "3",
        "PYTHONUNBUFFERED": "1",
    }


def test_profile_keeps_the_default_profiles_limits() -> None:
    """The PostgreSQL profile differs from dagster.yaml in storage and where the limits come from, not in what
    they are: the same tag limits, the same monitoring, the same op concurrency."""
    default = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    postgres = yaml.safe_load(PROFILE.read_text())
    assert (
        postgres["run_coordinator"]["config"]["tag_concurrency_limits"]
        == (default["concurrency"]["runs"]["tag_concurrency_limits"])
    )
    assert postgres["run_monitoring"] == default["run_monitoring"]
    assert (
        postgres["concurrency"]["default_op_concurrency_limit"]
        == default["concurrency"]["default_op_concurrency_limit"]
    )
    assert postgres["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}


def test_a_run_and_its_materializations_are_recorded_in_postgresql(tmp_path: Path, postgres_url: str) -> None:
    env = postgres_instance_environment(tmp_path, postgres_url)

    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "reference_job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(postgres_url) as connection:
        runs = connection.execute("SELECT run_id, pipeline_name, status FROM runs").fetchall()
        materialized = connection.execute(
            "SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchall()
    assert [(name, status) for _, name, status in runs] == [("reference_job", "SUCCESS")]
    assert ('["addresses"]',) in materialized
    # nothing went to the SQLite storage the default profile would have used
    assert not (Path(env["DAGSTER_HOME"]) / "storage" / "runs.db").exists()
    assert not list(Path(env["DAGSTER_HOME"]).glob("history/runs*.db"))

    # and Dagster itself (UI, daemon, sensors) reads them back through the same profile
    os.environ["DAGSTER_POSTGRES_URL"], previous = dagster_url(postgres_url), os.environ.get("DAGSTER_POSTGRES_URL")
    os.environ["DAGSTER_MAX_CONCURRENT_RUNS"] = "3"
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            [run] = instance.get_runs()
            event = instance.get_latest_materialization_event(dg.AssetKey("addresses"))
            coordinator_limit = instance.run_coordinator.get_run_queue_config().max_concurrent_runs
    finally:
        os.environ.pop("DAGSTER_MAX_CONCURRENT_RUNS")
        if previous is None:
            os.environ.pop("DAGSTER_POSTGRES_URL")
        else:
            os.environ["DAGSTER_POSTGRES_URL"] = previous
    assert run.run_id == runs[0][0] and run.status == dg.DagsterRunStatus.SUCCESS
    assert event is not None and event.run_id == run.run_id
    assert event.asset_materialization.metadata["published"].value > 0
    assert coordinator_limit == 3


def test_dev_links_the_postgres_profile_when_a_database_is_named(
    tmp_path: Path, postgres_url: str, monkeypatch
) -> None:
    import dev

    home = tmp_path / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_url(postgres_url))
    monkeypatch.delenv("DAGSTER_MAX_CONCURRENT_RUNS", raising=False)

    env = dev.environment()

    assert (home / "dagster.yaml").resolve() == PROFILE
    assert env["DAGSTER_MAX_CONCURRENT_RUNS"] == "2"
    monkeypatch.setenv("DAGSTER_MAX_CONCURRENT_RUNS", env["DAGSTER_MAX_CONCURRENT_RUNS"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
