"""Run a job of the catalog in-process against the Dagster instance and print what was published.

    python -m pipelines [job]          (default: all_layers)

Runs are recorded in the instance of $DAGSTER_HOME, so they show up in the Dagster UI.
"""

from __future__ import annotations

import os
import sys

import dagster as dg

from layers.settings import get_paths
from pipelines.definitions import defs
from pipelines.jobs import ALL_LAYERS_JOB


def _summary(result: dg.ExecuteInProcessResult) -> tuple[list[str], list[str]]:
    lines, failures = [], []
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            meta = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            lines.append(f"  {materialization.asset_key.to_user_string():24} published {meta.get('published', '?'):>6}"
                         f"   rejected {meta.get('rejected', '?'):>4}   repaired {meta.get('repaired', '?'):>3}")
        elif event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            failures.append(f"  {event.step_key}: {error.message.strip().splitlines()[0] if error else 'failed'}")
    return lines, failures


def main(argv: list[str]) -> int:
    job_name = argv[0] if argv else ALL_LAYERS_JOB
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    job = defs.get_job_def(job_name)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    lines, failures = _summary(result)
    paths = get_paths()
    print(f"\nJob {job_name}: {'succeeded' if result.success else 'finished with failures'} (run {result.run_id})")
    print("\n".join(lines))
    if failures:
        print("Not published (the previous GeoPackage, if any, stays in place):")
        print("\n".join(failures))
    print(f"GeoPackages: {paths.published_dir}\nRejected records: {paths.rejects_dir}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
