"""The project's persistent Dagster instance (DAGSTER_HOME, default <data root>/dagster_home) and run tags."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

from greenai_dagster.core.storage.paths import dagster_home

EXPERIMENT_TAG = "greenai/experiment"   # every run of an experiment (launch, setup, candidates, frontier)
CANDIDATE_TAG = "greenai/candidate"     # candidate runs: the candidate key `<experiment>/<strategy_id>`
SOURCE_TAG = "greenai/source"           # cli | api | sensor | launchpad
RUN_KEY_TAG = "greenai/run"             # the engine's run key (core/engine.py): `<exp>:setup`, `<exp>/<strategy>`, ...
LOG_FILE_TAG = "greenai/log_file"       # `greenai run`'s runs: the file the libraries' output went to (runner.py)


def dagster_instance() -> DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(dagster_home())
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.get()
