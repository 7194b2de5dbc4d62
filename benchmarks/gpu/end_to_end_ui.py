"""One experiment launched the way the Dagster UI launches it, then watched until the sensor has finished it.

    python benchmarks/gpu/end_to_end_ui.py DAGSTER_URL NAME EPISODES DEADLINE_S OUT.json [--eval JSON] [--methods JSON]

A second call with the same OUT.json (its instance still on disk) launches nothing: it watches the same
experiment again while the restarted daemon's sensor carries it on.

The Launchpad launches the job `launch_experiment` with the run config `jobs.launch_run_config` writes (the
one POST /compress submits too), through the webserver's GraphQL mutation `launchPipelineExecution`: this
script sends that mutation. From then on nothing here drives the experiment: the coordinator sensor
(`dagster dev`'s daemon) requests its setup, candidate and frontier runs. The script only watches, through
the same GraphQL API, every run tagged with the experiment, and stops when the results store says the
experiment finished (or at the deadline). OUT.json: the launch run's id, each run's id, job, status and
times, every status change seen (with seconds since launch), and the experiment's end as the store has it.
Run with the `dagster dev` instance's DAGSTER_HOME and GREENAI_DATA.
"""
from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

RUNS = """query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId jobName status startTime endTime
    tags { key value } } } }
}"""
RUN = "query Run($runId: ID!) { runOrError(runId: $runId) { ... on Run { runId jobName status startTime endTime } } }"


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=60))
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def launch(url: str, run_config: dict) -> dict:
    """The Launchpad's launch of `launch_experiment` with `run_config`; the mutation's answer."""
    from greenai_dagster.api.service import GRAPHQL_LAUNCH, GRAPHQL_LOCATIONS

    [repo] = graphql(url, GRAPHQL_LOCATIONS)["repositoriesOrError"]["nodes"]
    params = {"selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                           "jobName": "launch_experiment"},
              "runConfigData": run_config,
              "executionMetadata": {"tags": [{"key": "greenai/source", "value": "graphql"}]}}
    return graphql(url, GRAPHQL_LAUNCH, {"params": params})["launchPipelineExecution"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("episodes", type=int)
    parser.add_argument("deadline_s", type=float)
    parser.add_argument("out", type=Path)
    parser.add_argument("--eval", default=None, help="JSON: the config's eval settings")
    parser.add_argument("--methods", default=None, help="JSON list: compression_methods")
    args = parser.parse_args()
    end = time.time() + args.deadline_s

    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore
    from greenai_dagster.jobs import launch_run_config

    settings = {"name": args.name, "episodes": args.episodes}
    if args.eval:
        settings["eval"] = json.loads(args.eval)
    if args.methods:
        settings["compression_methods"] = json.loads(args.methods)
    run_config = launch_run_config(ExperimentConfig(**settings))
    record: dict = {"experiment": args.name, "dagster_url": args.url, "run_config": run_config, "runs": {},
                    "status_changes": [], "finished": False}

    def save() -> None:
        args.out.write_text(json.dumps(record, indent=2, default=str))

    started = time.time()
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    if earlier.get("launch_run_id"):   # a second call on the same instance: the sensor carries the experiment on
        record = {**earlier, "resumed_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        launch_id = record["launch_run_id"]
        print(f"watching launch_experiment run {launch_id} again (launched by an earlier call)", flush=True)
    else:
        answer = launch(args.url, run_config)
        record["launch"] = answer
        save()
        if answer.get("__typename") != "LaunchRunSuccess":
            raise SystemExit(f"the launch failed: {answer}")
        launch_id = answer["run"]["runId"]
        record["launch_run_id"] = launch_id
        print(f"launched launch_experiment run {launch_id}", flush=True)

    store = None
    while time.time() < end:
        runs = graphql(args.url, RUNS, {"tags": [{"key": "greenai/experiment", "value": args.name}]})
        seen = {r["runId"]: r for r in runs["runsOrError"].get("results") or []}
        if launch_id not in seen:      # tagged by its op once it runs; before that, asked by id
            seen[launch_id] = graphql(args.url, RUN, {"runId": launch_id})["runOrError"]
        for run_id, run in seen.items():
            before = record["runs"].get(run_id, {}).get("status")
            if run.get("status") != before:
                change = {"run_id": run_id, "job": run.get("jobName"), "status": run.get("status"),
                          "after_s": round(time.time() - started, 1)}
                record["status_changes"].append(change)
                print(f"{change['after_s']:7.1f} s  {change['job']:20s} {change['status']:12s} {run_id}", flush=True)
            record["runs"][run_id] = {k: v for k, v in run.items() if k != "tags"} | {
                "tags": {t["key"]: t["value"] for t in run.get("tags") or []}}
        if store is None and duckdb_path().exists():
            store = ResultsStore(duckdb_path())
        experiment = store.experiment(args.name) if store is not None else None
        in_flight = [r for r in seen.values() if r.get("status") in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")]
        failed_launch = seen[launch_id].get("status") in ("FAILURE", "CANCELED")
        if (experiment is not None and experiment["status"] == "finished" and not in_flight) or failed_launch:
            record["finished"] = experiment is not None and experiment["status"] == "finished"
            record["termination_reason"] = experiment["termination_reason"] if experiment else None
            break
        save()
        time.sleep(3)
    record["watched_s"] = round(time.time() - started, 1)
    save()
    print(f"finished: {record['finished']} ({record.get('termination_reason')}); {len(record['runs'])} runs "
          f"after {record['watched_s']} s", flush=True)


if __name__ == "__main__":
    main()
