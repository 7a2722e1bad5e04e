"""Run a job of the catalog in-process against the Dagster instance and print what was published.

    python -m pipelines [job]          (default: all_layers)

Runs are recorded in the instance of $DAGSTER_HOME, so they show up in the Dagster UI.
"""

from __future__ import annotations

import os
import sys

import dagster as dg

from layers.settings import get_paths
from pipelines.conflicts import RULES_JOB
from pipelines.definitions import defs
from pipelines.jobs import ALL_LAYERS_JOB
from pipelines.local_runs import fail_dead_runs, process_tags
from pipelines.raster import RASTER_JOB

# Dagster wraps an exception raised in a step in these; the operator needs the exception inside.
WRAPPERS = {"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"}


def _cause(error) -> str:
    """The first line of the innermost error: `OSError: [Errno 28] No space left on device: '…'`, never only
    `DagsterExecutionStepExecutionError`."""
    while error.cls_name in WRAPPERS and error.cause is not None:
        error = error.cause
    lines = error.message.strip().splitlines()
    return lines[0] if lines else error.cls_name or "failed"


def _summary(result: dg.ExecuteInProcessResult) -> tuple[list[str], list[str]]:
    lines, failures = [], []
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            meta = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            name = materialization.asset_key.to_user_string()
            if "published" in meta:
                lines.append(
                    f"  {name:24} published {meta['published']:>6}   rejected {meta['rejected']:>4}"
                    f"   repaired {meta['repaired']:>3}"
                )
            else:
                lines.append(f"  {name:24} {meta.get('path', '')}")
        elif event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            message = _cause(error) if error else "failed"
            message = message.split("Failure: ", 1)[-1]
            # the layer's own messages start with the layer's id already
            named = message.startswith(f"{event.step_key}: ")
            failures.append(f"  {message}" if named else f"  {event.step_key}: {message}")
    # a step whose upstream failed leaves no event, only a log line: it is the step that never finished
    finished = {e.step_key for e in result.all_events if e.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")}
    for node in result.job_def.nodes_in_topological_order:
        if node.name not in finished:
            failures.append(f"  {node.name}: not run, a layer it depends on failed")
    return lines, failures


def main(argv: list[str]) -> int:
    try:
        return run(argv)
    except Exception as error:  # noqa: BLE001 - the operator gets one line, the traceback says nothing to them
        print(f"python -m pipelines: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def run(argv: list[str]) -> int:
    job_name = argv[0] if argv else ALL_LAYERS_JOB
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    for note in fail_dead_runs(instance):
        print(f"Note: {note}")
    succeeded = run_job(job_name, instance)
    # The raster follows the layers, from whatever they published: a failed layer does not hold it back.
    if job_name == ALL_LAYERS_JOB and defs.get_repository_def().has_job(RASTER_JOB):
        succeeded = run_job(RASTER_JOB, instance) and succeeded
    # so are the conflicts, from what the layers published
    if job_name == ALL_LAYERS_JOB and defs.get_repository_def().has_job(RULES_JOB):
        succeeded = run_job(RULES_JOB, instance) and succeeded
    paths = get_paths()
    print(f"GeoPackages: {paths.published_dir}\nRejected records: {paths.rejects_dir}")
    return 0 if succeeded else 1


def run_job(job_name: str, instance: dg.DagsterInstance) -> bool:
    job = defs.resolve_job_def(job_name)
    # Failures are summarised below in one line each; the console logger would repeat them with
    # Dagster's stack traces, which say nothing to an operator (the Dagster UI keeps them all).
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    # host and pid: the next start marks this run failed should this process die without finishing it
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet, tags=process_tags())
    lines, failures = _summary(result)
    print(f"\nJob {job_name}: {'succeeded' if result.success else 'finished with failures'} (run {result.run_id})")
    print("\n".join(lines))
    if failures:
        print("Not published (the previous GeoPackage, if any, stays in place):")
        print("\n".join(failures))
    return result.success


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
