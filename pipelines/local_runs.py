"""Runs of `python -m pipelines` carry their host and process id, so a run whose process died is marked failed."""

from __future__ import annotations

import os
import socket

import dagster as dg

HOST_TAG = "geoportal/host"
PID_TAG = "geoportal/pid"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def process_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every unfinished run started by a process of this host that no longer exists (killed
    with -9, out of memory): in-process runs have no run worker for Dagster's run monitoring to watch.
    Returns one line per run so marked."""
    notes = []
    host = socket.gethostname()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED, tags={HOST_TAG: host})):
        pid = int(run.tags.get(PID_TAG, "0"))
        if pid == os.getpid() or (pid and _alive(pid)):
            continue
        note = f"run {run.run_id} ({run.job_name}) of process {pid} on {host} died unfinished: marked failed"
        instance.report_run_failed(run, note)
        notes.append(note)
    return notes
