"""What the REST API does, as plain functions: launch experiments as Dagster runs, read back.

A *job* (the seed's word) is one experiment. POST /compress submits a run of the
`launch_experiment` job to the Dagster webserver's GraphQL API (the run is queued on the
instance, the daemon starts it, its op registers the experiment, and `coordinator_sensor` runs
the episodes as further runs tagged `greenai/experiment`). The job id is that run's id; an
experiment's own name is accepted wherever a job id is (experiments started with `greenai run`).
Everything read comes from the Dagster instance (runs, their status, their logs) and the DuckDB
results store (experiments, episodes, frontier) or the experiment folder it names.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from greenai_dagster.api import models
from greenai_dagster.core.data.benchmarks import availability, resolve_source
from greenai_dagster.core.errors import from_record
from greenai_dagster.core.methods import REGISTRY
from greenai_dagster.core.methods.assess import build_spec
from greenai_dagster.core.models.loading import load_config, load_model_and_tokenizer, resolve_model_path
from greenai_dagster.core.pipeline import validate_inputs
from greenai_dagster.core.reporting import report
from greenai_dagster.core.settings.config import validated_config
from greenai_dagster.core.storage.paths import dagster_home
from greenai_dagster.core.storage.store import ResultsStore, folder_of
from greenai_dagster.instance import EXPERIMENT_TAG, SOURCE_TAG, dagster_instance
from greenai_dagster.jobs import launch_run_config
from greenai_dagster.resources import GpuResource, open_store, resources_for

LAUNCH_JOB = "launch_experiment"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"


class NotFound(Exception):
    """404: no such job, experiment, solution or file."""


class Conflict(Exception):
    """409: an experiment of that name exists."""


class Unavailable(Exception):
    """503: the Dagster webserver cannot be reached to launch a run."""


def store() -> ResultsStore:
    """The deployment's results store, through the resources the Dagster runs use (`cluster`: the shared file)."""
    return open_store(resources_for())


def plain(value):
    """JSON-safe: non-finite floats -> None, timestamps -> ISO text, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):
        try:
            if value != value:                                       # pandas NaT != itself
                return None
            if isinstance(value, datetime) and value.tzinfo is None:  # the store keeps naive UTC
                value = value.replace(tzinfo=timezone.utc)
            return value.isoformat()
        except (TypeError, ValueError):
            return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _iso(ts: float | datetime | None) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).isoformat()
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


# --- launching -----------------------------------------------------------------------------------
# The webserver's GraphQL as the UI's Launchpad sends it, for a client that launches the way a UI user does:
# the code location and repository to launch in, and the launch (`params`: ExecutionParams, i.e. selector,
# runConfigData, executionMetadata). `submit_launch_run` goes through dagster_graphql's client instead.
GRAPHQL_LOCATIONS = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
GRAPHQL_LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


def _graphql_client(dagster_url: str):
    from dagster_graphql import DagsterGraphQLClient

    url = urlparse(dagster_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise Unavailable(f"GREENAI_DAGSTER_URL '{dagster_url}' is not an http(s) URL.")
    return DagsterGraphQLClient(url.hostname, port_number=url.port, use_https=url.scheme == "https",
                                path_prefix=url.path.rstrip("/"), timeout=60)


def submit_launch_run(dagster_url: str, run_config: dict, tags: dict) -> str:
    """Submit a `launch_experiment` run through the webserver's GraphQL API; returns the run id."""
    try:
        client = _graphql_client(dagster_url)
        return client.submit_job_execution(LAUNCH_JOB, run_config=run_config, tags=tags)
    except Unavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - connection refused, GraphQL error: the same answer to the client
        raise Unavailable(f"could not launch a run through the Dagster webserver at {dagster_url} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                          "Start it with `dagster dev -w workspace.yaml` on the same DAGSTER_HOME, or set "
                          "--dagster-url.") from None


def compress(request, dagster_url: str) -> dict:
    """POST /compress: check the inputs now (E00x -> 400), then submit the launch run (status pending)."""
    config = validated_config(models.config_kwargs(request), models.REQUEST_REMEDY)
    config = config.model_copy(update={"driver": "sensor",
                                       "benchmark_source": resolve_source(config.dataset, config.benchmark_source)})
    validate_inputs(config)
    config.make_coordinator()           # E001 now if the llm coordinator has no key
    name = request.experiment_name or f"{config.experiment_name()}_{uuid.uuid4().hex[:6]}"
    if store().experiment(name) is not None or _launch_runs(experiment=name):
        raise Conflict(f"an experiment named '{name}' exists; choose another experiment_name.")
    # the run config a Launchpad user would type (jobs.py, generated from ExperimentConfig): one launch path
    run_config = launch_run_config(config.model_copy(update={"name": name}))
    run_id = submit_launch_run(dagster_url, run_config, {EXPERIMENT_TAG: name, SOURCE_TAG: "api"})
    return job(run_id)


# --- jobs ----------------------------------------------------------------------------------------
def _launch_runs(experiment: str | None = None, limit: int | None = None):
    from dagster import RunsFilter

    tags = {EXPERIMENT_TAG: experiment} if experiment else None
    return dagster_instance().get_run_records(RunsFilter(job_name=LAUNCH_JOB, tags=tags), limit=limit)


def _launch_record(job_id: str):
    from dagster import RunsFilter

    records = dagster_instance().get_run_records(RunsFilter(run_ids=[job_id], job_name=LAUNCH_JOB), limit=1)
    return records[0] if records else None


def resolve(job_id: str) -> tuple[object | None, str]:
    """(launch run record or None, experiment name) for a job id or an experiment's name."""
    record = _launch_record(job_id)
    if record is not None:
        return record, record.dagster_run.tags.get(EXPERIMENT_TAG, "")
    if store().experiment(job_id) is not None:
        return None, job_id
    raise NotFound(f"no job or experiment '{job_id}'.")


def status_of(run_status, experiment: dict | None, runs_in_flight: bool = False) -> str:
    """The seed's status from the launch run's Dagster status, the experiment's record, and whether any
    run of the experiment is still in flight (the sensor can end an experiment while its last run exits)."""
    from dagster import DagsterRunStatus as S

    if run_status in (S.QUEUED, S.NOT_STARTED, S.STARTING, S.MANAGED):
        return "pending"
    if run_status in (S.CANCELED, S.CANCELING) and (experiment is None or experiment["termination_reason"] == "cancelled"):
        return "cancelled"
    if run_status in (S.FAILURE, S.CANCELED, S.CANCELING):
        return "failed"
    if experiment is None:
        return "running" if run_status == S.STARTED else "failed"
    if experiment["status"] == "finished" and experiment["termination_reason"] == "cancelled":
        return "cancelled"
    if experiment["status"] == "finished" and not runs_in_flight:
        return "failed" if experiment["termination_reason"] == "error" else "completed"
    return "running"


def _runs_in_flight(name: str) -> bool:
    from dagster import DagsterRunStatus as S, RunsFilter

    unfinished = [S.QUEUED, S.NOT_STARTED, S.STARTING, S.STARTED, S.MANAGED, S.CANCELING]
    return bool(dagster_instance().get_run_ids(RunsFilter(tags={EXPERIMENT_TAG: name}, statuses=unfinished), limit=1))


def _failure_message(run_id: str) -> str | None:
    """Why a run failed: the project's error its failed step carries as data (assets/_errors.py: rebuilt as
    its class, printed as the CLI prints it), else the first line of what was raised (a bug), else the log."""
    from dagster import DagsterEventType

    entries = dagster_instance().all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE,
                                                            DagsterEventType.RUN_FAILURE})
    # StepFailureData and JobFailureData both carry `.error` (None where the run failed without one); only a
    # step's failure carries `user_failure_data` (the typed accessors raise for the other event type)
    data = [entry.dagster_event.event_specific_data if entry.dagster_event else None for entry in entries]
    for item in data:
        failure = getattr(item, "user_failure_data", None)
        if failure is not None and "code" in failure.metadata:
            return str(from_record({key: value.value for key, value in failure.metadata.items()}))
    for entry, item in zip(reversed(entries), reversed(data)):
        error = getattr(item, "error", None)
        if error is not None:
            return (error.cause or error).message.strip().splitlines()[0]
        if entry.message:
            return entry.message
    return None


def job(job_id: str) -> dict:
    record, name = resolve(job_id)
    return _job_info(job_id, record, name)


def _job_info(job_id: str, record, name: str) -> dict:
    results = store()
    experiment = results.experiment(name) if name else None
    run = record.dagster_run if record else None
    finished = experiment is not None and experiment["status"] == "finished"
    status = status_of(run.status if run else None, experiment, finished and _runs_in_flight(name))
    if experiment is None and name and results.facts(name).get("cancel_requested"):
        status = "cancelled"
    if experiment is not None:
        max_episodes = int(experiment["config"].get("episodes", 0))
    else:
        config = ((run.run_config or {}).get("ops", {}).get("create_experiment", {}).get("config", {})) if run else {}
        max_episodes = int(config.get("episodes", 3))
    strategies = results.strategies(name) if experiment else []
    frontier = results.frontier(name) if experiment else None
    error = None
    if status == "failed":
        if run is not None and run.status.value in ("FAILURE", "CANCELED", "CANCELING"):
            error = _failure_message(run.run_id) or f"launch run {run.status.value.lower()}"
        else:
            failed = [s for s in strategies if s["status"] == "failed"]
            error = "; ".join(f"{s['strategy_id']}: {s['error']}" for s in failed[-3:]) or "experiment ended in error"
    return plain({
        "job_id": job_id, "status": status, "experiment": name or None,
        "created_at": _iso(record.create_timestamp) if record else (experiment or {}).get("created_at"),
        "updated_at": _iso(record.update_timestamp) if record else None,
        "progress": {"current_episode": max([int(s["episode"]) for s in strategies], default=0),
                     "max_episodes": max_episodes,
                     "episodes_completed": sum(s["status"] in ("done", "failed") for s in strategies),
                     "pareto_solutions": len((frontier or {}).get("members", []))},
        "termination_reason": experiment["termination_reason"] if experiment else None,
        "error": error, "dagster_status": run.status.value if run else None,
    })


def cancel(job_id: str, dagster_url: str) -> dict:
    """DELETE /jobs/{id}: stop an experiment, whoever launched it. The experiment is finished with the
    reason `cancelled` first (the sensor drives only active experiments, so no new episode starts); then
    every unfinished run of it is stopped: queued ones are marked canceled on the instance, started ones
    are terminated through the webserver's GraphQL API (Dagster's own run termination)."""
    from dagster import DagsterRunStatus as S, RunsFilter

    record, name = resolve(job_id)
    results = store()
    experiment = results.experiment(name) if name else None
    launch = record.dagster_run if record else None
    if experiment is None and not name:
        raise Conflict("this launch run has not named its experiment yet (a Launchpad launch that is starting); "
                       "cancel again in a few seconds.")
    if experiment is None:
        # the launch run has not created it yet (Dagster refuses to terminate a STARTING run): the request is
        # kept, and `create_experiment` finishes the experiment as cancelled as soon as it exists
        results.set_facts(name, {"cancel_requested": True})
    elif experiment["status"] != "finished":
        results.finish_experiment(name, "cancelled")
    instance = dagster_instance()
    runs = {r.run_id: r for r in instance.get_runs(RunsFilter(tags={EXPERIMENT_TAG: name}))} if name else {}
    if launch is not None:
        runs[launch.run_id] = launch
    started = []
    for run in runs.values():
        if run.status in (S.QUEUED, S.NOT_STARTED):
            instance.report_run_canceled(run, message="canceled through the REST API (DELETE /jobs)")
        elif run.status in (S.STARTING, S.STARTED):
            started.append(run.run_id)
    _terminate(instance, started, name, dagster_url)
    return job(job_id)


def _terminate(instance, run_ids: list[str], name: str, dagster_url: str, patience_s: float = 30.0) -> None:
    """Terminate started runs through the webserver, again until each is stopped or `patience_s` passes.
    Why again: between our read of a run's status and the webserver's, a run can still be STARTING (Dagster
    refuses to terminate those) or finish on its own (then there is nothing to terminate); either makes
    `terminate_runs` raise for the whole list. Each retry reads the statuses afresh and asks only for runs
    that are still running."""
    from dagster import DagsterRunStatus as S

    deadline, failure = time.monotonic() + patience_s, None
    while run_ids:
        try:
            _graphql_client(dagster_url).terminate_runs(run_ids)
            return
        except Unavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - re-read the statuses below; the last failure is reported
            failure = exc
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
        runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
        run_ids = [r.run_id for r in runs if r is not None and r.status in (S.STARTING, S.STARTED)]
    if run_ids:   # the experiment is already stopped; say what is still running
        raise Unavailable(f"experiment {name} is cancelled (no new episode starts), but its running runs "
                          f"{', '.join(run_ids)} could not be terminated through {dagster_url} "
                          f"({type(failure).__name__}: {failure}); they end with their current step.")


def jobs(limit: int = 100) -> dict:
    return {"jobs": [_job_info(r.dagster_run.run_id, r, r.dagster_run.tags.get(EXPERIMENT_TAG, ""))
                     for r in _launch_runs(limit=limit)]}


def job_logs(job_id: str, limit: int = 500) -> dict:
    """The Dagster event log of every run of the job (launch, setup, candidates, frontier), oldest first."""
    from dagster import RunsFilter

    record, name = resolve(job_id)
    instance = dagster_instance()
    runs = {r.run_id: r for r in instance.get_runs(RunsFilter(tags={EXPERIMENT_TAG: name}))} if name else {}
    if record is not None:
        runs[record.dagster_run.run_id] = record.dagster_run
    lines = []
    for run in runs.values():
        for entry in instance.all_logs(run.run_id):
            lines.append({"timestamp": entry.timestamp, "run_id": run.run_id, "job_name": run.job_name,
                          "level": logging.getLevelName(entry.level) if isinstance(entry.level, int) else str(entry.level),
                          "event": entry.dagster_event_type.value if entry.dagster_event_type else None,
                          "step": entry.step_key, "message": entry.message or entry.user_message or ""})
    lines.sort(key=lambda line: line["timestamp"])
    for line in lines:
        line["timestamp"] = _iso(line["timestamp"])
    return {"job_id": job_id, "experiment": name or None, "logs": lines[-limit:]}


# --- experiments ---------------------------------------------------------------------------------
def _experiment(name: str) -> dict:
    record = store().experiment(name)
    if record is None:
        raise NotFound(f"no experiment '{name}'.")
    return record


def experiment_dir(name: str) -> Path:
    return folder_of(_experiment(name)).resolve()


def episodes(job_id: str) -> dict:
    _, name = resolve(job_id)
    results = store()
    rows = {r["candidate_key"]: r for r in results.results(name)}
    out = []
    for s in results.strategies(name):
        row = rows.get(s["candidate_key"])
        out.append({"episode": int(s["episode"]), "strategy_id": s["strategy_id"], "status": s["status"],
                    "error": s["error"], "strategy": s["strategy"], "result": report.result_json(row) if row else None})
    return plain({"job_id": job_id, "experiment": name, "episodes": out})


def experiments() -> dict:
    frame = store().query(
        "SELECT e.name AS id, e.model, e.dataset, e.status, e.termination_reason, e.created_at, e.finished_at, "
        "(SELECT count(*) FROM results r WHERE r.experiment = e.name AND NOT r.is_baseline) AS episodes_completed, "
        "(SELECT count(*) FROM results r WHERE r.experiment = e.name AND r.is_pareto) AS pareto_solutions "
        "FROM experiments e ORDER BY e.created_at DESC")
    return {"experiments": [plain(r) for r in frame.to_dict("records")]}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def experiment(name: str) -> dict:
    record = _experiment(name)
    folder = experiment_dir(name)
    results = store()
    frontier = results.frontier(name) or {}
    members = [key.split("/", 1)[1] for key in frontier.get("members", [])]
    return plain({
        "id": name, "model": record["model"], "dataset": record["dataset"], "status": record["status"],
        "termination_reason": record["termination_reason"], "created_at": record["created_at"],
        "finished_at": record["finished_at"], "config": record["config"],
        "jobs": [r.dagster_run.run_id for r in _launch_runs(experiment=name)],
        "model_spec": _read_json(folder / "model_spec.json"),
        "final_results": _read_json(folder / "final_results.json"),
        "frontier": {"members": members, "hypervolume": frontier.get("hypervolume")},
        "links": {"pareto": f"/pareto/{name}", "episodes": f"/episodes/{name}", "chart": f"/experiments/{name}/chart",
                  "downloads": {sid: download_path(name, sid) for sid in members}},
    })


def download_path(name: str, strategy_id: str) -> str:
    return f"/experiments/{name}/solutions/{strategy_id}/download"


def pareto(job_id: str) -> dict:
    """The seed's pareto_frontier.json; each strategy also carries the seed's short form (method, bits)."""
    _, name = resolve(job_id)
    data = _read_json(experiment_dir(name) / "pareto_frontier.json") or {"experiment_name": name, "solutions": []}
    for solution in data.get("solutions", []):
        strategy = solution["strategy"]
        strategy.setdefault("method", strategy.get("quantization_method") or (strategy.get("methods") or [None])[0])
        strategy.setdefault("bits", strategy.get("quantization_bits"))
        solution["download_url"] = download_path(name, strategy["strategy_id"])
    data["job_id"] = job_id
    return plain(data)


def chart_file(name: str) -> Path:
    path = experiment_dir(name) / "pareto_visualization.html"
    if not path.is_file():
        raise NotFound(f"experiment '{name}' has no frontier chart yet.")
    return path


def solution_folder(name: str, strategy_id: str) -> Path:
    """The checkpoint folder of a frontier member, only ever one the results store names inside the
    experiment's own folder (never a path built from the request)."""
    folder = experiment_dir(name)
    row = store().result(f"{name}/{strategy_id}")
    if row is None or not row["is_pareto"] or not row.get("checkpoint_path"):
        raise NotFound(f"'{strategy_id}' is not a Pareto solution of experiment '{name}'.")
    checkpoint = Path(row["checkpoint_path"]).resolve()
    if not checkpoint.is_relative_to(folder) or not checkpoint.is_dir():
        raise NotFound(f"the checkpoint of '{strategy_id}' is not available.")
    return checkpoint


def pack_solution(name: str, strategy_id: str) -> Path:
    """A temporary .tar.gz of the solution's checkpoint (folder named after the strategy); the caller deletes it."""
    folder = solution_folder(name, strategy_id)
    handle = tempfile.NamedTemporaryFile(prefix="greenai_", suffix=".tar.gz", delete=False)
    handle.close()
    with tarfile.open(handle.name, "w:gz") as archive:
        archive.add(folder, arcname=strategy_id)
    return Path(handle.name)


# --- catalogue and status ------------------------------------------------------------------------
def methods() -> dict:
    out = []
    for name, method in sorted(REGISTRY.items()):
        schema = method.Params.model_json_schema()
        doc = type(method).__doc__ or sys.modules[type(method).__module__].__doc__ or ""
        out.append({"name": name, "family": method.family, "description": " ".join(doc.strip().split("\n\n")[0].split()),
                    "parameters": schema.get("properties", {}), "must_be_first": method.must_be_first,
                    "must_be_last": method.must_be_last})
    return plain({"methods": out})


def benchmarks() -> dict:
    return {"benchmarks": availability()}


def spec_infer(model_name: str) -> dict:
    """The seed's model_spec.json for a model (loaded on the CPU to measure its shapes)."""
    load_config(model_name)                      # E002 / E006 before any weights are read
    path = resolve_model_path(model_name)
    model, _ = load_model_and_tokenizer(path)
    spec = build_spec(model_name, model, checkpoint_path=path if Path(path).is_dir() else None)
    return plain(spec.to_json())


def gpu() -> dict:
    import torch

    status = GpuResource().status()
    status["cuda_available"] = torch.cuda.is_available()
    status["device_count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return plain(status)


def _reachable(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/server_info", timeout=timeout_s) as reply:
            return reply.status == 200
    except Exception:  # noqa: BLE001
        return False


def health(dagster_url: str) -> dict:
    daemon_seen = None
    try:
        beats = dagster_instance().get_daemon_heartbeats()
        daemon_seen = max((b.timestamp for b in beats.values()), default=None)
    except Exception:  # noqa: BLE001 - an instance without daemon storage
        pass
    return plain({
        "status": "ok", "time": _iso(time.time()),
        "database": str(store().path), "dagster_home": os.environ.get("DAGSTER_HOME", str(dagster_home())),
        "dagster_webserver": {"url": dagster_url, "reachable": _reachable(dagster_url)},
        "dagster_daemon": {"running": daemon_seen is not None and time.time() - daemon_seen < 120,
                           "last_heartbeat": _iso(daemon_seen)},
    })
