"""dev.py's live portal: the instance lives in DAGSTER_HOME whatever the working directory, and the supervisor
stops every child process group (grandchildren too) on SIGTERM or when one of its services exits."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

import dev
from layers.settings import REPO_ROOT

DEADLINE_SECONDS = 30


@dg.asset
def probe() -> None:
    return None


# A service that starts a grandchild in its own process group, as dagster-daemon starts its code server.
SERVICE = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"


def supervisor(services: dict[str, list[str]], log: Path) -> subprocess.Popen:
    code = f"import dev, os, sys; sys.exit(dev.supervise({services!r}, dict(os.environ), stop_seconds=10))"
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT)


def started(log: Path, names: set[str]) -> dict[str, int]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", log.read_text())}
        if set(found) >= names:
            return found
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)  # polling for the supervisor's start lines


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_sigterm_stops_every_service_and_its_children(tmp_path):
    process = supervisor(
        {"one": [sys.executable, "-c", SERVICE], "two": [sys.executable, "-c", SERVICE]}, tmp_path / "log"
    )
    children = started(tmp_path / "log", {"one", "two"})
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not all(len(group_members(pid)) == 2 for pid in children.values()):  # service + its grandchild
        assert time.monotonic() < deadline
        time.sleep(0.05)  # polling for the grandchildren to start

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=DEADLINE_SECONDS) == 0
    assert {pid: group_members(pid) for pid in children.values()} == {pid: [] for pid in children.values()}


def test_when_one_service_exits_the_others_are_stopped(tmp_path):
    services = {"steady": [sys.executable, "-c", SERVICE], "failing": [sys.executable, "-c", "raise SystemExit(3)"]}
    process = supervisor(services, tmp_path / "log")
    assert process.wait(timeout=DEADLINE_SECONDS) == 3
    log = (tmp_path / "log").read_text()
    assert "failing exited with code 3: stopping the others" in log
    steady = int(re.search(r"started steady \(pid (\d+)\)", log).group(1))
    assert group_members(steady) == []


def test_live_services_share_the_instance_and_run_the_daemon_ui_and_server():
    services = dev.live_services({"GEOPORTAL_UI_PORT": "3999"})
    assert services["daemon"][-3:] == ["run", "-m", "pipelines"]
    assert services["ui"][-6:] == ["-m", "pipelines", "-h", "127.0.0.1", "-p", "3999"]
    assert services["server"][-2:] == ["-m", "server"]


def test_a_home_without_config_gets_the_repository_one_and_keeps_its_storage_inside(tmp_path, monkeypatch):
    """dagster.yaml once named storage folders relative to the working directory: a second city's runs ended up
    in the repository's .dagster/."""
    home = tmp_path / "city2" / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    env = dev.environment()
    assert env["DAGSTER_HOME"] == str(home)
    assert (home / "dagster.yaml").resolve() == REPO_ROOT / "dagster.yaml"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([probe], instance=instance).success
    assert (home / "history" / "runs.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city2"]  # nothing in the working directory


def test_the_instance_config_names_no_storage_folder():
    assert "base_dir" not in (REPO_ROOT / "dagster.yaml").read_text(encoding="utf-8")
