"""The one state machine of an experiment, executed by both drivers.

`next_action(store, name, run_status, device)` reads the results store (and the status of the runs the
caller already launched, by run key) and says what the experiment needs next:

  setup      the model spec and the baseline (job `setup`, experiment partition)
  candidate  compress + benchmark one strategy (job `candidate`; `partition_key` is the candidate key
             `<experiment>/<id>`, which the drivers run as the Dagster partition (experiment, strategy),
             converted in partitions.py); `strategy` is the decided (or resumed) one, `new` says whether it
             still has to be recorded
  frontier   recompute the frontier after a finished candidate (job `frontier`)
  full_set   score the final frontier on the benchmark's full set (job `frontier_full_set`)
  finish     end the experiment with `termination_reason`
  fail       a candidate's run failed: record it as failed (`error`), then ask again
  wait       a run is still in flight; nothing to do until it ends

Only `decide_or_fall_back` (the coordinator's facts on a failure) writes while deciding; every other store
write is `apply(store, action)`, called by the driver once it has committed to the action, so a driver that
raises between the two leaves the experiment as it was.

Drivers (both launch the same named jobs with the same partition keys and `greenai/run` run keys):
  - `coordinator_sensor` (sensors.py) turns actions into RunRequests; the daemon runs them in their own
    processes, and the sensor reads their status from the instance on the next tick.
  - `greenai run` (runner.py) executes each action's job in-process, on the persistent instance (the runs
    show in the Dagster UI like the sensor's), one after the other, and passes the outcome back as the run
    status. Chosen over `instance.submit_run` because a CLI run must work without a daemon or webserver;
    submitting to a queue that nothing drains would hang.

No dagster import here: the drivers own the Dagster side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from greenai_dagster.core import pipeline
from greenai_dagster.core.data.benchmarks import resolve_source
from greenai_dagster.core.decide import decide_or_fall_back
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.search.coordinator.priors import family_priors
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import ResultsStore
from greenai_dagster.core.strategy import Strategy

RUN_KINDS = {"setup": "setup", "candidate": "candidate", "frontier": "frontier", "full_set": "frontier_full_set"}


@dataclass(frozen=True)
class RunState:
    """What the caller knows about one launched run: `in_flight`, `success` or `failed` (with its error)."""

    state: str
    error: str | None = None


RunStatus = Callable[[str], Optional[RunState]]   # run key -> state; None: never launched


def never_launched(_run_key: str) -> RunState | None:
    return None


@dataclass
class Action:
    kind: str                                 # setup | candidate | frontier | full_set | finish | fail | wait
    experiment: str
    partition_key: str = ""
    run_key: str = ""
    episode: int = 0
    strategy: Strategy | None = None
    new: bool = False                         # candidate: not yet in the store's strategies table
    termination_reason: str | None = None     # finish
    error: str | None = None                  # fail: why its run failed
    note: str = ""                            # what to log (a coordinator fallback, what is in flight)
    extra: dict = field(default_factory=dict)

    @property
    def job_name(self) -> str | None:
        """The Dagster job that carries out this action (None: a store-only action)."""
        return RUN_KINDS.get(self.kind)


def setup_run_key(name: str) -> str:
    return f"{name}:setup"


def frontier_run_key(name: str, done: int) -> str:
    return f"{name}:frontier:{done}"


def full_set_run_key(name: str) -> str:
    return f"{name}:full_set"


def candidate_actions(store: ResultsStore, name: str) -> list[Action]:
    """The action that runs each registered candidate of `name` not yet done or failed (decided but not run,
    or left behind by a killed run), in episode order. `next_action` takes them one at a time, as their runs
    end; the Celery sweep (celery_sweep.py) fans them all out at once."""
    return [Action("candidate", name, r["candidate_key"], r["candidate_key"], episode=r["episode"],
                   strategy=Strategy.from_json(r["strategy"]), note=f"{name}: resuming {r['candidate_key']}")
            for r in store.strategies(name) if r["status"] not in ("done", "failed")]


def next_action(store: ResultsStore, name: str, run_status: RunStatus = never_launched,
                device: str = "cpu") -> Action:
    """What experiment `name` needs next, from the store and the status of runs already launched."""
    if store.baseline(name) is None:
        key = setup_run_key(name)
        status = run_status(key)
        if status is None:
            return Action("setup", name, name, key, note=f"{name}: spec + baseline requested")
        if status.state == "failed":
            return Action("finish", name, termination_reason="error",
                          note=f"{name}: setup run failed; experiment ended (error)", error=status.error)
        if status.state == "success":   # a setup run that wrote no baseline: its steps failed to record it
            return Action("finish", name, termination_reason="error",
                          note=f"{name}: setup run ended without a baseline; experiment ended (error)")
        return Action("wait", name, note=f"{name}: waiting for spec + baseline")

    for action in candidate_actions(store, name):
        status = run_status(action.run_key)
        if status is None:   # decided but not run (or a killed run left it behind): run it
            return action
        if status.state == "in_flight":
            return Action("wait", name, note=f"{name}: {action.partition_key} in flight")
        return Action("fail", name, action.partition_key, action.run_key, episode=action.episode,
                      strategy=action.strategy,
                      error=status.error or ("run failed" if status.state == "failed" else "run ended without a result"),
                      note=f"{action.partition_key}: run failed")

    done = len(store.results(name))
    frontier = store.frontier(name)
    if done and (frontier is None or frontier["episodes_seen"] < done):
        key = frontier_run_key(name, done)
        status = run_status(key)
        if status is None:
            return Action("frontier", name, name, key, note=f"{name}: frontier requested")
        return Action("wait", name, note=f"{name}: waiting for the frontier"
                      + (" (its run failed; see the Dagster UI)" if status.state == "failed" else ""))

    exp = open_experiment(store, name)      # opened now: the setup has written its spec, baseline and facts
    config = exp.config
    priors = None
    if config.family_priors:
        priors = family_priors(store, name, list(exp.objectives))
    decision = decide_or_fall_back(store, exp, config.make_coordinator(priors))
    if decision.termination_reason:
        if pipeline.wants_full_set(config, device):   # last: the final frontier on the full set
            key = full_set_run_key(name)
            status = run_status(key)
            if status is None:
                return Action("full_set", name, name, key, termination_reason=decision.termination_reason,
                              note=decision.note or f"{name}: full-set scoring of the frontier requested")
            if status.state == "in_flight":
                return Action("wait", name, note=f"{name}: waiting for the full-set scoring")
        return Action("finish", name, termination_reason=decision.termination_reason,
                      note=decision.note or f"{name}: finished ({decision.termination_reason})")
    strategy = decision.proposal.strategy
    key = pipeline.candidate_key(name, strategy.strategy_id)
    return Action("candidate", name, key, key, episode=decision.episode, strategy=strategy, new=True,
                  note=decision.note or f"{name}: episode {decision.episode} -> {strategy.strategy_id}",
                  extra={"coordinator_note": decision.note} if decision.note else {})


def apply(store: ResultsStore, action: Action) -> dict | None:
    """The store writes that commit to `action`; returns the final results of a `finish`."""
    if action.kind == "candidate" and action.new:
        store.add_strategy(action.partition_key, action.experiment, action.episode, action.strategy.to_json())
    elif action.kind == "fail":
        store.set_strategy_status(action.partition_key, "failed", action.error)
    elif action.kind == "finish":
        if store.baseline(action.experiment) is None:   # nothing to summarise: the setup never finished
            store.finish_experiment(action.experiment, action.termination_reason)
            return None
        return pipeline.finish_experiment(store, open_experiment(store, action.experiment), action.termination_reason)
    return None


def create_experiment(store: ResultsStore, config: ExperimentConfig) -> tuple[str, ExperimentConfig, dict | None]:
    """The one place an experiment is created, for every entry point (CLI, UI launch job, API).

    Returns (name, the config it runs with, the existing record or None). An existing experiment of that
    name keeps its stored config (a rerun resumes it); a new one has its benchmark source fixed and its
    inputs checked before anything is written (E00x: methods, model, memory, benchmark, folder, coordinator
    key), then is recorded as active."""
    name = config.experiment_name()
    existing = store.experiment(name)
    if existing is not None:
        config = ExperimentConfig(**existing["config"])
        if existing["status"] != "active":
            return name, config, existing
    else:
        config = config.model_copy(update={"benchmark_source": resolve_source(config.dataset, config.benchmark_source)})
    pipeline.validate_inputs(config)
    config.make_coordinator()   # E001 now, before any work, if the llm coordinator has no key
    if existing is None:
        store.create_experiment(name, config.model, config.dataset, config.model_dump(), config.output_dir)
    return name, config, existing


def log_dir(store: ResultsStore, name: str) -> Path:
    """Where the drivers keep per-run library logs (loguru, tqdm, warnings) of an experiment."""
    return pipeline.experiment_dir(store, name) / "logs"
