"""The REST API as a client uses it: uvicorn on a free 127.0.0.1 port, `dagster dev` (webserver +
daemon) on another, every endpoint through httpx.

POST /compress with the seed's body (a tiny model folder, a tiny benchmark, 1 episode) submits a
`launch_experiment` run through the webserver; the daemon runs it and the coordinator sensor the
episodes; the job completes and /pareto returns the seed's shape. Also: a path-traversal attempt
and a missing key are refused, bodies are validated naming the field, and schemathesis finds no
5xx over the OpenAPI schema.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port, start_dagster, stop_process_group, wait_for_dagster

FAST_EVAL = {"limit_per_task": 4, "full_set_for_frontier": False, "batch_size": 4, "fidelity_tokens": 512,
             "prompt_len": 16, "new_tokens": 4, "latency_repeats": 2, "throughput_batch_size": 2}


class ServerThread:
    """The real app under uvicorn in a thread of this process."""

    def __init__(self, settings, port: int | None = None):
        import uvicorn

        from greenai_dagster.api.app import create_app

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def api_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def dagster_dev(data_root, api_port):
    """`dagster dev` on the session's DAGSTER_HOME: webserver, daemon (queued runs, the sensor), code server."""
    home = Path(os.environ["DAGSTER_HOME"])
    config = home / "dagster.yaml"
    if "run_coordinator" not in config.read_text():      # pick queued runs up every second (default 5)
        config.write_text(config.read_text() + "run_coordinator:\n  module: dagster.core.run_coordinator\n"
                          "  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n")
    log = open(data_root / "dagster_dev.log", "w")
    proc, url = start_dagster(["dagster", "dev"], log, {"GREENAI_SENSOR_INTERVAL_S": "1",
                                                        "GREENAI_API_URL": f"http://127.0.0.1:{api_port}"})
    try:
        wait_for_dagster(url, proc, data_root / "dagster_dev.log")
        yield url
    finally:
        stop_process_group(proc, timeout_s=30)
        log.close()


@pytest.fixture(scope="module")
def api(dagster_dev, api_port):
    from greenai_dagster.api.app import ApiSettings

    with ServerThread(ApiSettings(api_key=None, dagster_url=dagster_dev), api_port) as server:
        yield server.url


@pytest.fixture(scope="module")
def bare_api(data_root):
    """No key, no Dagster webserver: for validation and the key-less reads."""
    from greenai_dagster.api.app import ApiSettings

    with ServerThread(ApiSettings(api_key=None, dagster_url=f"http://127.0.0.1:{free_port()}")) as server:
        yield server.url


@pytest.fixture(scope="module")
def finished_job(api, tiny_model_dir, tiny_benchmark):
    # the seed's body, on the tiny model and benchmark; int8 (torch only) keeps the episode short
    body = {"model_name": str(tiny_model_dir), "dataset": str(tiny_benchmark), "max_episodes": 1,
            "compression_methods": ["int8"], "eval": FAST_EVAL}
    reply = httpx.post(f"{api}/compress", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    created = reply.json()
    seen = [created["status"]]
    deadline = time.time() + 1500
    while seen[-1] not in ("completed", "failed"):
        assert time.time() < deadline, f"job did not finish: {seen[-1]}"
        time.sleep(2)
        state = httpx.get(f"{api}/jobs/{created['job_id']}", timeout=30).json()
        if state["status"] != seen[-1]:
            seen.append(state["status"])
    return created, state, seen


def test_compress_with_the_seed_body_starts_a_dagster_run_that_completes(finished_job):
    created, state, seen = finished_job
    assert created["status"] == "pending" and created["progress"] == {
        "current_episode": 0, "max_episodes": 1, "episodes_completed": 0, "pareto_solutions": 0}
    # the daemon may already have dequeued it (1 s pickup) by the time the reply is built
    assert created["dagster_status"] in ("QUEUED", "STARTING") and created["created_at"]
    assert state["status"] == "completed", state
    assert seen[0] == "pending" and "running" in seen
    assert state["progress"]["current_episode"] == 1 and state["progress"]["episodes_completed"] == 1
    assert state["termination_reason"] == "max_episodes_reached" and state["dagster_status"] == "SUCCESS"

    from dagster import RunsFilter

    from greenai_dagster.instance import dagster_instance

    instance = dagster_instance()
    assert instance.get_run_by_id(created["job_id"]).job_name == "launch_experiment"
    runs = instance.get_runs(RunsFilter(tags={"greenai/experiment": created["experiment"]}))
    assert all(r.status.value == "SUCCESS" for r in runs)
    # named jobs say what each run is (not __ASSET_JOB), tagged with the experiment and the candidate
    assert sorted(r.job_name for r in runs) == ["candidate", "frontier", "launch_experiment", "setup"]
    [candidate] = [r for r in runs if r.job_name == "candidate"]
    assert candidate.tags["greenai/candidate"] == f"{created['experiment']}/ep001_int8_dynamic"
    # its Dagster partition is (experiment, strategy); the daemon tagged both dimensions, which give the key back
    from greenai_dagster.partitions import candidate_key_of_run

    assert candidate.tags["dagster/partition"] == f"{created['experiment']}|ep001_int8_dynamic"
    assert candidate_key_of_run(candidate.tags) == candidate.tags["greenai/candidate"]


def test_the_frontier_metadata_links_to_the_served_chart(api, finished_job):
    from dagster import AssetKey, AssetRecordsFilter

    from greenai_dagster.instance import dagster_instance

    name = finished_job[0]["experiment"]
    [record] = dagster_instance().fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("pareto_frontier"), asset_partitions=[name]), limit=1).records
    metadata = record.asset_materialization.metadata
    assert metadata["chart"].url == f"{api}/experiments/{name}/chart"          # a link Dagster renders
    assert metadata["pareto_api"].url == f"{api}/pareto/{name}"
    assert metadata["chart_file"].path.endswith("pareto_visualization.html")
    chart = httpx.get(metadata["chart"].url, timeout=60)
    assert chart.status_code == 200 and "plotly" in chart.text.lower()
    # the sensor recorded the termination reason on the experiment's frontier when it ended
    observed = dagster_instance().fetch_observations(AssetKey("pareto_frontier"), limit=20).records
    [ended] = [r for r in observed if r.partition_key == name]
    assert ended.asset_observation.metadata["termination_reason"].value == "max_episodes_reached"


def test_pareto_returns_the_seed_shape(api, finished_job):
    created, _, _ = finished_job
    reply = httpx.get(f"{api}/pareto/{created['job_id']}", timeout=30)
    assert reply.status_code == 200
    data = reply.json()
    [solution] = data["solutions"]
    strategy, result = solution["strategy"], solution["result"]
    for key in ("strategy_id", "methods", "quantization_bits", "quantization_method", "method", "bits"):
        assert key in strategy, key
    assert strategy["method"] == "int8" and strategy["bits"] == 8 and strategy["methods"] == ["int8"]
    for key in ("accuracy", "latency_ms", "memory_gb", "model_size_gb", "compression_ratio", "co2_grams",
                "is_pareto_optimal"):
        assert key in result, key
    assert result["is_pareto_optimal"] is True and 0.0 <= result["accuracy"] <= 1.0
    assert httpx.get(f"{api}/pareto/{created['experiment']}", timeout=30).json()["solutions"] == data["solutions"]


def test_every_read_endpoint(api, finished_job, tiny_model_dir):
    created, _, _ = finished_job
    job_id, name = created["job_id"], created["experiment"]
    get = lambda path, **kw: httpx.get(f"{api}{path}", timeout=60, **kw)  # noqa: E731

    root = get("/").json()
    assert "POST /compress" in root["endpoints"] and root["docs"] == "/docs"
    assert job_id in [j["job_id"] for j in get("/jobs").json()["jobs"]]
    logs = get(f"/jobs/{job_id}/logs", params={"limit": 10000}).json()["logs"]
    assert {"launch_experiment"} < {line["job_name"] for line in logs}
    assert any(line["event"] == "ASSET_MATERIALIZATION" for line in logs)
    [episode] = get(f"/episodes/{job_id}").json()["episodes"]
    assert episode["episode"] == 1 and episode["status"] == "done" and episode["result"]["latency_ms"] > 0
    assert episode["strategy"]["reasoning"]
    listed = {e["id"]: e for e in get("/experiments").json()["experiments"]}
    assert listed[name]["status"] == "finished" and listed[name]["pareto_solutions"] == 1
    detail = get(f"/experiments/{name}").json()
    assert detail["final_results"]["episodes_completed"] == 1 and detail["jobs"] == [job_id]
    assert detail["model_spec"]["model_family"] == "llama"

    chart = get(f"/experiments/{name}/chart")
    assert chart.status_code == 200 and chart.headers["content-type"].startswith("text/html")
    assert "plotly" in chart.text.lower()

    [member] = detail["frontier"]["members"]
    download = get(detail["links"]["downloads"][member])
    assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
    assert f'filename="{member}.tar.gz"' in download.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as archive:
        names = archive.getnames()
    assert f"{member}/config.json" in names and all(n.startswith(member) for n in names)

    assert {m["name"] for m in get("/methods").json()["methods"]} >= {"gptq", "awq", "int8", "lora"}
    assert "generated_mc" in {b["name"] for b in get("/benchmarks").json()["benchmarks"]}
    health = get("/health").json()
    assert health["status"] == "ok" and health["dagster_webserver"]["reachable"]
    assert health["dagster_daemon"]["running"]
    assert get("/gpu").json()["device"] in ("cpu", "cuda")
    spec = httpx.post(f"{api}/spec/infer", json={"model_name": str(tiny_model_dir)}, timeout=120).json()
    assert spec["model_family"] == "llama" and spec["parameter_count"] and "preferred_methods" in spec
    assert "swagger" in get("/docs").text.lower() and "/compress" in get("/openapi.json").json()["paths"]


def test_path_traversal_is_refused(api, finished_job):
    name = finished_job[0]["experiment"]
    attempts = [f"/experiments/{name}/solutions/..%2F..%2F..%2F..%2Fetc%2Fpasswd/download",
                f"/experiments/{name}/solutions/../../../../etc/passwd/download",
                "/experiments/..%2F..%2F..%2Fetc/chart", "/experiments/../chart", "/experiments/../../etc/passwd",
                f"/experiments/{name}/solutions/baseline/download",      # a row, but not a Pareto solution
                f"/experiments/{name}/solutions/model.safetensors/download"]
    with httpx.Client(base_url=api, timeout=30) as client:
        for path in attempts:
            reply = client.send(client.build_request("GET", path))   # sent as written, not normalised
            assert reply.status_code in (404, 422), (path, reply.status_code)
            assert "root:" not in reply.text


def test_a_job_is_canceled_and_starts_no_new_episode(api, finished_job, tiny_model_dir, tiny_benchmark):
    body = {"model_name": str(tiny_model_dir), "dataset": str(tiny_benchmark), "max_episodes": 5,
            "compression_methods": ["int8"], "eval": FAST_EVAL, "experiment_name": "to_cancel"}
    created = httpx.post(f"{api}/compress", json=body, timeout=120).json()
    deadline = time.time() + 120
    while True:                                   # a launch run that is STARTING cannot be stopped yet (409)
        reply = httpx.delete(f"{api}/jobs/{created['job_id']}", timeout=60)
        if reply.status_code != 409 or time.time() > deadline:
            break
        time.sleep(1)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "cancelled"
    time.sleep(8)                                  # several sensor ticks (1 s here): nothing more is started
    state = httpx.get(f"{api}/jobs/{created['job_id']}", timeout=30).json()
    assert state["status"] == "cancelled" and state["progress"]["episodes_completed"] <= 1
    listed = {j["job_id"]: j["status"] for j in httpx.get(f"{api}/jobs", timeout=30).json()["jobs"]}
    assert listed[created["job_id"]] == "cancelled"


def test_bodies_are_validated_naming_the_field(bare_api):
    post = lambda body: httpx.post(f"{bare_api}/compress", json=body, timeout=60)  # noqa: E731
    cases = [({"dataset": "x"}, ["body", "model_name"]),
             ({"model_name": "m", "max_episodes": 0}, ["body", "max_episodes"]),
             ({"model_name": "m", "compression_methods": ["zip"]}, ["body", "compression_methods"]),
             ({"model_name": "m", "experiment_name": "../escape"}, ["body", "experiment_name"]),
             ({"model_name": "m", "eval": {"fidelity_tokens": 1}}, ["body", "eval", "fidelity_tokens"]),
             ({"model_name": "m", "surprise": 1}, ["body", "surprise"]),
             ({"model_name": "m", "constraints": {"max_bogus": 1}}, ["body", "constraints"])]
    for body, where in cases:
        reply = post(body)
        assert reply.status_code == 422, body
        assert any(error["loc"] == where for error in reply.json()["detail"]), reply.json()
    missing = post({"model_name": str(REPO / "no-such-model")})
    assert missing.status_code == 400 and missing.json()["detail"]["code"] in ("E002", "E006")
    assert httpx.get(f"{bare_api}/jobs/no-such-job", timeout=30).status_code == 404


def test_a_key_is_required_when_configured_and_beyond_loopback(data_root, monkeypatch):
    from greenai_dagster.api.app import ApiSettings
    from greenai_dagster.api.server import KeyRequired, settings_for
    from greenai_dagster.cli import main

    monkeypatch.delenv("GREENAI_API_KEY", raising=False)
    with pytest.raises(KeyRequired):
        settings_for("0.0.0.0")
    assert main(["serve", "--host", "0.0.0.0", "--port", str(free_port())]) == 2    # refuses before binding
    assert settings_for("0.0.0.0", api_key="k").api_key == "k" and settings_for("127.0.0.1").api_key is None

    with ServerThread(ApiSettings(api_key="s3cret-key", dagster_url="http://127.0.0.1:1")) as server:
        for path in ("/", "/jobs", "/experiments", "/methods"):
            assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 401
            assert httpx.get(f"{server.url}{path}", headers={"X-API-Key": "wrong"}, timeout=30).status_code == 401
        assert httpx.post(f"{server.url}/compress", json={"model_name": "m"}, timeout=30).status_code == 401
        assert httpx.get(f"{server.url}/jobs", headers={"X-API-Key": "s3cret-key"}, timeout=30).status_code == 200
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
        schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
        assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_schemathesis_finds_no_server_error(api, finished_job, data_root):
    pytest.importorskip("schemathesis")
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{api}/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", "3", "--phases", "examples,coverage,fuzzing",
         "--generation-database", "none", "--seed", "1", "--request-timeout", "60", "-w", "1"],
        capture_output=True, text=True, timeout=600, cwd=data_root)
    lines = run.stdout.splitlines()
    cases = [lines[i + 1].strip() for i, line in enumerate(lines[:-1]) if line.strip() == "Test cases:"]
    closing = [line.strip(" =") for line in lines if line.startswith("=") and " in " in line]
    print("schemathesis:", "; ".join(cases + closing[-1:]) or run.stdout[-2000:])
    assert run.returncode == 0, run.stdout[-6000:]
