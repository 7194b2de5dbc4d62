"""The experiment record: what one experiment is, read once and handed to every step.

Before this record each step fetched its settings again by key (`ExperimentConfig(**store.experiment(name)
["config"])`), and three places worked out the frontier's objectives each in their own way (one ignored the
stored facts, so reports named a "best accuracy" after accuracy had been dropped). Now a driver opens the
experiment once per step (`open_experiment(store, name)`, the store coming from the deployment's resources)
and passes the `Experiment` down: `build_model_spec(store, exp)`, `evaluate_baseline(store, exp, device)`,
`compress_candidate(store, exp, key, device)`, `benchmark_candidate(store, exp, key, device)`.

The record is a snapshot taken when it is opened. The setup steps write the spec, the baseline and the
benchmark's facts; a driver that goes on in the same process after them opens the experiment again to see
them (each Dagster step and each engine action opens it afresh, so only scripts need to care).

Security opt-ins are fields (`trust_remote_code`, `allow_code_execution`), passed explicitly to whatever
loads a model or runs model-written code, never set in the process environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.models.spec import ModelSpec
from greenai_dagster.core.search import objectives as objective_registry
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import ResultsStore, folder_of

SPEC_FILE = "model_spec.json"


@dataclass(frozen=True)
class Experiment:
    """One experiment as the steps need it: its settings, where its files go, what setup found out."""

    name: str
    config: ExperimentConfig
    folder: Path                          # <output_dir>/<name>: model_spec.json, episode_NNN/, the reports
    spec: ModelSpec | None                # None until the setup step has written model_spec.json
    baseline: dict | None                 # the baseline's results row; None until it is evaluated
    facts: dict                           # what the steps found out (benchmark_discriminates, notes, ...)
    objectives: dict[str, bool]           # the frontier's objectives in use, {name: maximise} (see below)
    created_at: datetime                  # when it was recorded: the start of its --budget clock
    trust_remote_code: bool = False       # the user's opt-in: transformers may run a model's own code
    allow_code_execution: bool = False    # the user's opt-in: model-written code runs in the sandbox


def resolve_objectives(config: ExperimentConfig, facts: dict | None) -> dict[str, bool]:
    """The frontier's objectives, {name: maximise}: the ones the user chose (or the default set), less
    accuracy when the benchmark cannot tell the baseline from chance (`benchmark_discriminates` false in
    the stored facts): accuracy figures near chance would rank candidates by noise, so quality is then
    ranked by fidelity alone. The one place this is decided (the engine, the pipeline, the reports and
    `greenai analyze` all read it from the record)."""
    facts = facts or {}
    if facts.get("objectives"):           # decided once, when the baseline was scored: stored with the facts
        return objective_registry.directions(list(facts["objectives"]))
    chosen = config.objectives or objective_registry.DEFAULT_FRONTIER
    if facts.get("benchmark_discriminates") is False:
        chosen = [o for o in chosen if o not in objective_registry.FIDELITY_ONLY_DROP]
    return objective_registry.directions(list(chosen))


def unknown_experiment(name: str) -> ModelLoadError:
    return ModelLoadError(f"experiment '{name}' is not in the results store.",
                          "Create it with `greenai run` (or check the name: `greenai query \"SELECT name FROM "
                          "experiments\"`).")


def open_experiment(store: ResultsStore, name: str) -> Experiment:
    """The stored experiment `name` as a record (E002 naming it when the store has no such experiment)."""
    stored = store.experiment(name)
    if stored is None:
        raise unknown_experiment(name)
    config = ExperimentConfig(**stored["config"])
    folder = folder_of(stored)
    facts = store.facts(name)
    return Experiment(name=name, config=config, folder=folder, spec=_read_spec(folder),
                      baseline=store.baseline(name), facts=facts, objectives=resolve_objectives(config, facts),
                      created_at=stored["created_at"],
                      trust_remote_code=config.trust_remote_code, allow_code_execution=config.allow_code_execution)


def _read_spec(folder: Path) -> ModelSpec | None:
    spec_file = folder / SPEC_FILE
    if not spec_file.exists():
        return None
    return ModelSpec.from_json(json.loads(spec_file.read_text()))
