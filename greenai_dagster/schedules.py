"""One Dagster schedule per sweep file (core/settings/sweep.py): a tick launches the sweep's experiments.

A tick asks for one `launch_experiment` run per model x benchmark, with the run config the
launchpad would send, so each experiment is created and validated exactly as one launched from
the UI (`jobs.register_experiment`); the coordinator sensor then runs its episodes. Names carry the
tick's scheduled time, so each tick makes new experiments and evaluating one tick twice asks for
the same runs (run_key = experiment name: Dagster launches each once). Schedules start stopped:
turning one on (UI Automation page, or `dagster schedule start`) is a deliberate act.
"""

from __future__ import annotations

from dagster import (
    DefaultScheduleStatus, RunRequest, ScheduleDefinition, ScheduleEvaluationContext, SkipReason, schedule,
)
from dagster._utils.schedules import is_valid_cron_string

from greenai_dagster.core.errors import EvaluationError
from greenai_dagster.core.settings.sweep import STAMP_FORMAT, Sweep, load_sweeps
from greenai_dagster.instance import EXPERIMENT_TAG, SOURCE_TAG
# one run config for every launch (jobs.py, generated from ExperimentConfig): a tick launches as the Launchpad does
from greenai_dagster.jobs import launch_experiment, launch_run_config

SWEEP_TAG = "greenai/sweep"


def tick_requests(sweep: Sweep, context: ScheduleEvaluationContext) -> list[RunRequest]:
    stamp = context.scheduled_execution_time.strftime(STAMP_FORMAT)
    return [RunRequest(run_key=config.name, run_config=launch_run_config(config),
                       tags={SWEEP_TAG: sweep.name, EXPERIMENT_TAG: config.name, SOURCE_TAG: "schedule"})
            for config in sweep.experiments(stamp=stamp, driver="sensor")]


def sweep_schedule(sweep: Sweep) -> ScheduleDefinition:
    if not is_valid_cron_string(sweep.cron):
        raise EvaluationError(f"sweep file '{sweep.path}': cron: '{sweep.cron}' is not a cron string Dagster accepts.",
                              "Use five fields, e.g. \"0 2 * * *\" (02:00 UTC every day).")

    combos = len(sweep.combinations())

    @schedule(name=sweep.schedule_name, cron_schedule=sweep.cron, job=launch_experiment, execution_timezone="UTC",
              default_status=DefaultScheduleStatus.STOPPED, tags={SWEEP_TAG: sweep.name},
              description=f"Sweep {sweep.name} ({sweep.path.name}): {combos} experiment(s), "
                          f"{len(sweep.spec.models)} model(s) x {len(sweep.spec.benchmarks)} benchmark(s), "
                          f"{sweep.spec.episodes} episodes each; the coordinator sensor runs them.")
    def evaluate(context: ScheduleEvaluationContext):
        return tick_requests(sweep, context) or SkipReason(f"sweep {sweep.name} has no combinations")

    return evaluate


def sweep_schedules() -> list[ScheduleDefinition]:
    """A schedule for every sweep file with a `cron` in the sweeps folder (GREENAI_SWEEPS_DIR or `sweeps/`).
    A bad file stops the code location from loading with its E00N message: a nightly sweep that silently
    vanished would be worse."""
    return [sweep_schedule(s) for s in load_sweeps() if s.cron]
