"""Job status from Dagster's runs, whatever state or event type a run ended in (issue: GET /jobs answered
500 for every job once any launch run had failed with a RUN_FAILURE event)."""

from __future__ import annotations


def _launch(run_config: dict, **kwargs):
    """`launch_experiment` in this process, on the session's instance and results store (the job from
    `definitions` holds a store resource bound to whatever data root was set when it was first imported)."""
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.instance import dagster_instance
    from greenai_dagster.jobs import launch_experiment
    from greenai_dagster.resources import ResultsStoreResource

    return launch_experiment.execute_in_process(run_config=run_config, instance=dagster_instance(),
                                                resources={"store": ResultsStoreResource(path=str(duckdb_path()))},
                                                **kwargs)


def test_a_failed_launch_is_listed_with_its_e00n_message(data_root):
    from greenai_dagster.api import service

    result = _launch({"ops": {"create_experiment": {"config": {"episodes": -1, "name": "bad_launch"}}}},
                     raise_on_error=False, tags={service.EXPERIMENT_TAG: "bad_launch"})
    assert not result.success

    listed = {job["job_id"]: job for job in service.jobs()["jobs"]}           # no 500: every run state is read
    failed = listed[result.run_id]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("E004: invalid configuration: episodes: Input should be greater than or equal to 1")
    assert service.job(result.run_id)["error"] == failed["error"]


def test_the_docs_page_needs_no_internet(data_root):
    """Swagger UI's files come from the installed `fastapi-offline` package, not a CDN."""
    import re

    from fastapi.testclient import TestClient

    from greenai_dagster.api.app import ApiSettings, create_app

    client = TestClient(create_app(ApiSettings(api_key=None, dagster_url="http://127.0.0.1:9")))
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and not [s for s in sources if s.startswith(("http://", "https://", "//"))], sources
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert asset in sources and client.get(asset).status_code == 200
    assert "openapi.json" in page.text and client.get("/openapi.json").json()["info"]["title"] == "greenai-dagster"
    # a 405 lists every method the path serves (Starlette's own named only the first route's: GET)
    assert client.options("/jobs/some-job").headers["allow"] == "DELETE, GET"


def test_greenai_cancel_stops_an_active_experiment(data_root, capsys):
    from greenai_dagster.api import service
    from greenai_dagster.cli import main
    from greenai_dagster.core.settings.config import ExperimentConfig

    config = ExperimentConfig(name="cancel_me", driver="sensor")
    service.store().create_experiment("cancel_me", config.model, config.dataset, config.model_dump(),
                                      config.output_dir)
    assert "cancel_me" in service.store().active_experiments()
    assert main(["cancel", "cancel_me", "--dagster-url", "http://127.0.0.1:9"]) == 0   # no run to terminate
    assert "cancelled" in capsys.readouterr().out
    assert "cancel_me" not in service.store().active_experiments()       # the sensor drives active ones only
    assert service.store().experiment("cancel_me")["termination_reason"] == "cancelled"
    assert service.job("cancel_me")["status"] == "cancelled"


def test_a_launchpad_launch_is_found_by_the_api(data_root, tiny_model_dir, tiny_benchmark):
    """A run launched from the Launchpad carries no tags; the op tags it with its experiment."""
    from greenai_dagster.api import service
    from greenai_dagster.instance import EXPERIMENT_TAG, SOURCE_TAG, dagster_instance

    result = _launch({"ops": {"create_experiment": {"config": {"name": "from_launchpad", "model": str(tiny_model_dir),
                                                               "dataset": str(tiny_benchmark), "episodes": 1}}}})
    assert result.success
    run = dagster_instance().get_run_by_id(result.run_id)
    assert run.tags[EXPERIMENT_TAG] == "from_launchpad" and run.tags[SOURCE_TAG] == "launchpad"
    state = service.job(result.run_id)
    assert state["experiment"] == "from_launchpad" and state["status"] in ("pending", "running")
    assert service.cancel("from_launchpad", "http://127.0.0.1:9")["status"] == "cancelled"


def test_a_cancel_that_comes_before_the_experiment_exists_wins(data_root, tiny_model_dir, tiny_benchmark):
    """DELETE /jobs/{id} while the launch run is STARTING (Dagster will not terminate it) records the request;
    the launch op then finishes the experiment as cancelled instead of handing it to the sensor."""
    from greenai_dagster.api import service

    service.store().set_facts("cancelled_early", {"cancel_requested": True})      # what cancel() records
    result = _launch({"ops": {"create_experiment": {"config": {"name": "cancelled_early", "model": str(tiny_model_dir),
                                                               "dataset": str(tiny_benchmark), "episodes": 1}}}})
    assert result.success
    assert "cancelled_early" not in service.store().active_experiments()
    assert service.store().experiment("cancelled_early")["termination_reason"] == "cancelled"
    assert service.job(result.run_id)["status"] == "cancelled"


def test_a_users_session_through_the_api_never_answers_500(data_root, tiny_model_dir, tiny_benchmark):
    """Issue 28's stateful walk, as a user's own sequence over HTTP (TestClient on the real app): a failed launch
    in the history, a working one, then list -> read -> episodes/logs/pareto -> a /compress with no webserver
    -> cancel -> cancel again -> list -> an unknown job. Every response is counted; none may be a 500."""
    from fastapi.testclient import TestClient

    from greenai_dagster.api import service
    from greenai_dagster.api.app import ApiSettings, create_app

    failed = _launch({"ops": {"create_experiment": {"config": {"episodes": -1, "name": "walk_bad"}}}},
                     raise_on_error=False, tags={service.EXPERIMENT_TAG: "walk_bad"})
    good = _launch({"ops": {"create_experiment": {"config": {"name": "walk_good", "model": str(tiny_model_dir),
                                                             "dataset": str(tiny_benchmark), "episodes": 1}}}})
    client = TestClient(create_app(ApiSettings(api_key=None, dagster_url="http://127.0.0.1:9")),
                        raise_server_exceptions=False)
    answers: list[tuple[str, str, int]] = []

    def call(method: str, path: str, **kwargs):
        response = client.request(method, path, **kwargs)
        answers.append((method, path, response.status_code))
        return response

    listed = {j["job_id"]: j for j in call("GET", "/jobs").json()["jobs"]}
    assert listed[failed.run_id]["status"] == "failed" and listed[failed.run_id]["error"].startswith("E004")
    assert call("GET", f"/jobs/{failed.run_id}").json()["status"] == "failed"
    assert call("GET", f"/jobs/{good.run_id}").json()["experiment"] == "walk_good"
    episodes = call("GET", f"/episodes/{good.run_id}")
    assert episodes.status_code == 200 and episodes.json()["episodes"] == [], episodes.text   # none run yet
    for path in (f"/jobs/{good.run_id}/logs", f"/pareto/{good.run_id}",
                 f"/episodes/{failed.run_id}", f"/pareto/{failed.run_id}", "/experiments",
                 "/experiments/walk_good", "/experiments/walk_good/chart"):
        call("GET", path)
    body = {"model_name": str(tiny_model_dir), "dataset": str(tiny_benchmark), "max_episodes": 1}
    assert call("POST", "/compress", json=body).status_code == 503          # no webserver: said, not a 500
    assert call("DELETE", f"/jobs/{good.run_id}").json()["status"] == "cancelled"
    call("DELETE", f"/jobs/{good.run_id}")                                  # a second cancel
    after = {j["job_id"]: j for j in call("GET", "/jobs").json()["jobs"]}
    assert after[good.run_id]["status"] == "cancelled" and after[failed.run_id]["status"] == "failed"
    assert call("GET", "/jobs/no-such-job").status_code == 404
    server_errors = [a for a in answers if a[2] >= 500 and a[2] != 503]
    print(f"\nstateful API walk: {len(answers)} requests, {len(server_errors)} server errors (500): {answers}")
    assert not server_errors, server_errors
    assert len(answers) == 16
