"""`greenai run`'s driver (runner.py) over real in-process Dagster runs: a step's project error comes back as
its own class from the run's structured failure metadata (assets/_errors.py), a bug as E000 with its message,
and only Dagster's public API is imported (issue 27, item 3)."""

from __future__ import annotations

import ast

import pytest

from greenai_dagster.core.errors import CompressionFailed, UnexpectedError
from greenai_dagster.core.settings.config import ExperimentConfig

from tests.conftest import REPO

RUNNER = REPO / "greenai_dagster" / "runner.py"
RECORD_KEYS = {"code", "error_class", "message", "remedy"}


def test_the_runner_imports_nothing_private_from_dagster():
    imported = []
    for node in ast.walk(ast.parse(RUNNER.read_text())):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported += [f"{node.module}.{alias.name}" for alias in node.names]
    dagster_names = [name for name in imported if name.split(".")[0] == "dagster"]
    assert dagster_names, "the runner should import Dagster (the check below would prove nothing)"
    assert not [name for name in dagster_names if any(part.startswith("_") for part in name.split("."))]


def _step_failures(instance, experiment: str) -> list:
    from dagster import DagsterEventType, RunsFilter

    from greenai_dagster.instance import EXPERIMENT_TAG

    failures = []
    for run in instance.get_runs(RunsFilter(tags={EXPERIMENT_TAG: experiment})):
        failures += [(run, entry.dagster_event.step_failure_data)
                     for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)]
    return failures


def test_a_project_error_in_a_step_reaches_the_caller_as_its_class_from_the_failure_metadata(
        data_root, tiny_model_dir, tiny_benchmark):
    """`lora` alone passes the input checks (a known method) and fails in the setup run's model_spec step,
    which alone knows the model's search space (E005)."""
    from greenai_dagster.api import service
    from greenai_dagster.instance import LOG_FILE_TAG, dagster_instance
    from greenai_dagster.runner import run_experiment

    config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=1,
                              name="lora_alone", compression_methods=["lora"], eval={"limit_per_task": 2},
                              output_dir=str(data_root / "experiments"))
    with pytest.raises(CompressionFailed) as err:
        run_experiment(config, echo=lambda _: None)
    assert type(err.value) is CompressionFailed and err.value.code == "E005"
    assert "lora" in err.value.message and err.value.remedy.startswith("Methods this model can use")

    [(run, failure)] = _step_failures(dagster_instance(), "lora_alone")
    metadata = failure.user_failure_data.metadata          # what the step raised, as data, not as text
    assert RECORD_KEYS | {"library_log"} <= set(metadata)
    assert {key: metadata[key].value for key in RECORD_KEYS} == err.value.record()
    assert metadata["library_log"].value == run.tags[LOG_FILE_TAG]
    assert failure.user_failure_data.description == str(err.value)     # the UI shows the E005 line and remedy
    assert service._failure_message(run.run_id) == str(err.value)     # GET /jobs/<run> says the same


def test_a_bug_in_a_step_is_e000_with_its_message(data_root, tmp_path, monkeypatch):
    from greenai_dagster import runner
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.storage.store import ResultsStore
    from greenai_dagster.partitions import experiments_partitions
    from greenai_dagster.resources import GpuResource, ResultsStoreResource

    def broken_spec(store, exp, device="cpu"):
        return 1 / 0

    monkeypatch.setattr(pipeline, "build_model_spec", broken_spec)
    instance = runner.dagster_instance()
    instance.add_dynamic_partitions(experiments_partitions.name, ["buggy"])
    ResultsStore(tmp_path / "r.duckdb").create_experiment("buggy", "m", "d", {}, str(tmp_path))   # its record opens
    resources = {"store": ResultsStoreResource(path=str(tmp_path / "r.duckdb")), "gpu": GpuResource(device="cpu")}
    with pytest.raises(UnexpectedError) as err:
        runner._run_stage("setup", "buggy", instance, resources)
    assert err.value.code == "E000" and err.value.message == "ZeroDivisionError: division by zero"
    [(_, failure)] = _step_failures(instance, "buggy")
    assert failure.user_failure_data is None               # a bug is left to Dagster as it is, traceback included


def test_an_interrupted_step_reads_as_an_interruption_not_a_bug():
    """SIGTERM or Ctrl-C while a step runs (a deadline's `timeout`, a user) becomes Dagster's
    DagsterExecutionInterruptedError inside the step; `greenai run` then says "interrupted" and keeps what is
    written, where it used to print an E000 "unexpected failure (please report it)"."""
    from dagster import job, op
    from dagster._core.errors import DagsterExecutionInterruptedError

    from greenai_dagster.runner import step_error, was_interrupted

    @op
    def stopped():
        raise DagsterExecutionInterruptedError("Execution was interrupted")

    @op
    def broken():
        raise ValueError("a real bug")

    @job
    def interrupted_job():
        stopped()

    @job
    def failed_job():
        broken()

    interrupted = interrupted_job.execute_in_process(raise_on_error=False)
    failed = failed_job.execute_in_process(raise_on_error=False)
    assert not interrupted.success and was_interrupted(interrupted)
    assert not failed.success and not was_interrupted(failed)
    assert step_error(failed, "x").code == "E000"
