"""`python -m pipelines` as an operator runs it: one line per failed layer with the real cause, and a run whose
process was killed is marked failed by the next start instead of staying STARTED forever."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from layers.settings import REPO_ROOT
from pipelines.local_runs import PID_TAG
from tests.conftest import city_paths, path_environment

DEADLINE_SECONDS = 120


def cli_environment(base: Path) -> dict[str, str]:
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, **path_environment(city_paths(base)), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def pipelines(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_killed_run_is_marked_failed_by_the_next_start(tmp_path):
    env = cli_environment(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    home = env["DAGSTER_HOME"]
    deadline = time.monotonic() + DEADLINE_SECONDS
    with dg.DagsterInstance.from_config(home) as instance:
        while True:  # until the run is executing, then kill it as the kernel's OOM killer would
            runs = instance.get_runs(filters=dg.RunsFilter(tags={PID_TAG: str(process.pid)}))
            if runs and runs[0].status == dg.DagsterRunStatus.STARTED:
                break
            assert process.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "no run started"
            time.sleep(0.05)  # polling for the run to start
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        [killed] = runs
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.STARTED

    again = pipelines(env, "reference_job", cwd=tmp_path)

    assert f"run {killed.run_id} (all_layers) of process {process.pid}" in again.stdout, again.stdout + again.stderr
    assert "died unfinished: marked failed" in again.stdout
    with dg.DagsterInstance.from_config(home) as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_file_system_failure_prints_the_os_error_for_each_layer(tmp_path):
    env = cli_environment(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the published folder's parent should be\n")
    env["GEOPORTAL_PUBLISHED_DIR"] = str(blocker / "published")

    result = pipelines(env, "reference_job", cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    failures = result.stdout.split("Not published", 1)[-1]
    [line] = [line for line in failures.splitlines() if line.strip().startswith("addresses")]
    assert "Not a directory" in line or "File exists" in line, result.stdout
    assert "DagsterExecutionStepExecutionError" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_an_unexpected_error_in_a_layer_is_summarised_by_its_cause():
    """What the CLI printed before: `DagsterExecutionStepExecutionError: Error occurred while executing op`."""
    from pipelines.__main__ import _summary

    @dg.asset(name="addresses")
    def failing():
        raise OSError(28, "No space left on device", "/data/published/addresses.gpkg")

    @dg.asset(name="outages", deps=[failing])
    def downstream():
        return None

    result = dg.materialize([failing, downstream], raise_on_error=False)
    _, failures = _summary(result)
    assert failures == [
        "  addresses: OSError: [Errno 28] No space left on device: '/data/published/addresses.gpkg'",
        "  outages: not run, a layer it depends on failed",
    ]
