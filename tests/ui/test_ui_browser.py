"""The Dagster UI as a person uses it, in headless Chromium, and the GraphQL API as a script uses it.

A finished one-episode experiment on the tiny model (`greenai run`'s in-process path, the fastest
real one) on its own data root and DAGSTER_HOME; `dagster dev` (webserver, daemon, sensor) on a free
127.0.0.1 port starts while it runs, and the REST API serves the chart the metadata links to.
Playwright drives Debian's `chromium` (`executable_path`; no browser download): the asset graph
renders, the experiment's partitions and frontier metadata are listed, the chart link opens the
served chart, `frontier_full_evaluation` says why it was not materialized, an experiment is launched
through /graphql (the frontier job on the finished experiment) is watched to success, and an
experiment is launched from the Launchpad with typed config, its run succeeds and the coordinator
sensor picks the new experiment up (last: its runs then work in the background until teardown). Screenshots go to data/ui_screenshots/
(git-ignored). Skipped, with the reason, where chromium or playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest

from greenai_dagster.api.service import GRAPHQL_LAUNCH, GRAPHQL_LOCATIONS
from tests.api.test_api import FAST_EVAL, ServerThread
from tests.conftest import REPO, free_port, start_dagster, stop_process_group, wait_for_dagster

SHOTS = REPO / "data" / "ui_screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EXPERIMENT = "ui_exp"
LAUNCHED = "ui_launched"

try:
    import playwright.sync_api  # noqa: F401
    HAVE_PLAYWRIGHT = True
except ImportError:
    HAVE_PLAYWRIGHT = False

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="playwright is not installed (pip install playwright)"),
]


@pytest.fixture(scope="module")
def ui_root(tmp_path_factory):
    """Its own data root and DAGSTER_HOME (queued runs picked up every second, no telemetry, no
    newsletter pop-up), restored afterwards for the rest of the session."""
    root = tmp_path_factory.mktemp("ui_data")
    home = root / "dagster_home"
    (home / ".nux").mkdir(parents=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n")
    api_port = free_port()
    saved = {k: os.environ.get(k) for k in ("GREENAI_DATA", "DAGSTER_HOME", "GREENAI_API_URL")}
    os.environ.update(GREENAI_DATA=str(root), DAGSTER_HOME=str(home), GREENAI_API_URL=f"http://127.0.0.1:{api_port}")
    yield root, api_port
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def ui(ui_root, tiny_model_dir, tiny_benchmark):
    """dagster dev comes up while the experiment runs in this process; then the REST API for the chart."""
    from greenai_dagster.api.app import ApiSettings
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.runner import run_experiment

    root, api_port = ui_root
    started = time.time()
    # the instance's SQLite storages are created (and stamped by alembic) here, once, before `dagster dev` starts:
    # created by both processes at once they raced, and the code server refused its storage ("alembic_version
    # has more than one head"), which failed every browser test of a CI run
    from greenai_dagster.instance import dagster_instance

    instance = dagster_instance()
    instance.get_runs(limit=1)
    for storage in (instance.event_log_storage, instance.schedule_storage):
        assert storage is not None
    log = open(root / "dagster_dev.log", "w")
    proc, url = start_dagster(["dagster", "dev"], log, {"GREENAI_SENSOR_INTERVAL_S": "1"})
    try:
        config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=1, name=EXPERIMENT,
                                  compression_methods=["int8"], output_dir=str(root / "experiments"),
                                  eval={**FAST_EVAL, "full_set_for_frontier": False})
        outcome = run_experiment(config, echo=lambda _: None)
        assert outcome["termination_reason"] == "max_episodes_reached"
        built = time.time() - started
        wait_for_dagster(url, proc, root / "dagster_dev.log")
        print(f"experiment built in {built:.0f} s; dagster dev up after {time.time() - started:.0f} s")
        SHOTS.mkdir(parents=True, exist_ok=True)
        with ServerThread(ApiSettings(api_key=None, dagster_url=url), api_port):
            yield url
    finally:
        stop_process_group(proc, timeout_s=10)   # a throw-away instance: no need to wait out a slow shutdown
        log.close()


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(60_000)
        yield context.new_page()
        browser.close()


def shot(page, name: str, full_page: bool = False) -> None:
    page.screenshot(path=str(SHOTS / name), full_page=full_page)
    assert (SHOTS / name).stat().st_size > 10_000, name       # a rendered page, not a blank one


def test_the_asset_graph_renders(ui, page):
    page.goto(f"{ui}/asset-groups")
    # the first page fetches the UI's bundle; a collapsed group shows its name and its count ("2 assets" or, at
    # another zoom, "2": CI saw both), so wait for a group's name
    page.get_by_text("candidates", exact=True).first.wait_for(timeout=120_000)
    unfold = page.locator('[aria-label="unfold_more"]')       # groups start collapsed: open each, then
    for _ in range(unfold.count()):                            # reload so the graph is fitted to the page
        unfold.first.click()
    page.reload()
    for asset in ("model_spec", "baseline", "compressed_variant", "benchmark_result", "pareto_frontier"):
        page.get_by_text(asset, exact=True).first.wait_for()
    assert page.get_by_text("fronti", exact=False).count() >= 2   # the full-evaluation node (its name elided)
    shot(page, "01_asset_graph.png")


def test_an_experiments_partitions_and_frontier_metadata_are_listed(ui, page):
    page.goto(f"{ui}/assets/benchmark_result?view=partitions")   # the experiment x strategy grid
    page.get_by_placeholder("Filter by experiment").wait_for()  # one column per dimension, each key listed once
    page.get_by_placeholder("Filter by strategy").wait_for()
    page.get_by_text("ep001_int8_dynamic").first.wait_for()
    assert EXPERIMENT in page.inner_text("body")
    shot(page, "02_candidate_partitions.png")
    page.goto(f"{ui}/assets/benchmark_result?view=partitions&partition={EXPERIMENT}%7Cep001_int8_dynamic")
    page.get_by_text("kl_divergence").first.wait_for()          # the candidate's own materialization
    shot(page, "02a_candidate_partition.png")

    page.goto(f"{ui}/assets/pareto_frontier?view=partitions&partition={EXPERIMENT}")
    page.get_by_text("Serving cost").first.wait_for()          # the markdown renders after the rest
    text = page.inner_text("body")
    for expected in ("hypervolume_explained", "Larger is better", "best_per_objective", "(baseline)",
                     "ep001_int8_dynamic", "KL nats/tok", "ppl ratio", "J/tok", "torch-int8-dynamic",
                     "termination_reason", "not a frontier member"):
        assert expected in text, expected
    for table in page.locator("table").all():                  # metadata and frontier tables are not cut off
        box = table.bounding_box()
        assert box["x"] + box["width"] <= 1600, (table.inner_text()[:60], box)
    shot(page, "03_frontier_metadata.png")
    page.get_by_text("Serving cost").first.scroll_into_view_if_needed()   # the panel scrolls by itself
    shot(page, "03a_frontier_tables.png")


def test_the_termination_reason_is_in_the_frontiers_events(ui, page):
    from dagster import AssetKey

    from greenai_dagster.instance import dagster_instance

    instance = dagster_instance()
    [observed] = instance.fetch_observations(AssetKey("pareto_frontier"), limit=1).records
    assert observed.partition_key == EXPERIMENT
    assert observed.asset_observation.metadata["termination_reason"].value == "max_episodes_reached"
    [skipped] = instance.fetch_observations(AssetKey("frontier_full_evaluation"), limit=1).records
    assert "full_set_for_frontier" in skipped.asset_observation.metadata["skipped_because"].value
    page.goto(f"{ui}/assets/pareto_frontier?view=events&partition={EXPERIMENT}")
    page.get_by_text("max_episodes_reached").first.wait_for()
    shot(page, "03b_termination_reason.png")


def test_the_chart_link_opens_the_served_chart(ui, page):
    page.goto(f"{ui}/assets/pareto_frontier?view=partitions&partition={EXPERIMENT}")
    link = page.locator("a[href$='/chart']").first
    href = link.get_attribute("href")
    assert href == f"{os.environ['GREENAI_API_URL']}/experiments/{EXPERIMENT}/chart"
    page.goto(href)
    page.locator(".plotly .scatterlayer").first.wait_for()
    text = page.inner_text("body")
    assert "Pareto frontier" in text and "baseline" in text
    shot(page, "04_pareto_chart.png")


def test_the_sweeps_schedule_and_the_celery_job_are_in_the_ui(ui, page):
    """Issue 14: the sweep file in sweeps/ is a schedule the UI lists (stopped until a person starts it), and
    the Celery candidate sweep is a job there."""
    page.goto(f"{ui}/automation")
    page.get_by_text("sweep_nightly_smollm2").first.wait_for()
    shot(page, "06_sweep_schedule.png")
    page.goto(f"{ui}/jobs")
    page.get_by_text("candidate_sweep").first.wait_for()


def test_the_full_set_evaluation_says_why_it_was_not_materialized(ui, page):
    page.goto(f"{ui}/assets/frontier_full_evaluation")
    page.get_by_text("Never materialized").first.wait_for()
    text = page.inner_text("body")
    assert "--full-eval" in text and "full_set_for_frontier" in text
    shot(page, "05_full_set_not_materialized.png")


WATCH = """query Watch($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status jobName tags { key value } } }
}"""


def test_the_graphql_api_launches_and_watches_a_run(ui, page):
    from dagster import AssetKey, AssetRecordsFilter

    from greenai_dagster.instance import dagster_instance

    def graphql(query: str, variables: dict | None = None) -> dict:
        reply = httpx.post(f"{ui}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert "errors" not in reply.json(), reply.json()
        return reply.json()["data"]

    [repo] = graphql(GRAPHQL_LOCATIONS)["repositoriesOrError"]["nodes"]
    params = {"selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                           "jobName": "frontier"},
              "runConfigData": {},
              "executionMetadata": {"tags": [{"key": "dagster/partition", "value": EXPERIMENT},
                                             {"key": "greenai/experiment", "value": EXPERIMENT},
                                             {"key": "greenai/source", "value": "graphql"}]}}
    launched = graphql(GRAPHQL_LAUNCH, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    seen = [launched["run"]["status"]]
    deadline = time.time() + 180
    while seen[-1] not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.time() < deadline, f"the run did not finish: {seen}"
        time.sleep(1)
        status = graphql(WATCH, {"runId": run_id})["runOrError"]
        if status["status"] != seen[-1]:
            seen.append(status["status"])
    # watched from launch to the end (polled each second: a run of a second or two may pass STARTED unseen)
    assert seen[-1] == "SUCCESS" and len(seen) >= 2 and seen[0] in ("QUEUED", "NOT_STARTED", "STARTING"), seen
    assert status["jobName"] == "frontier"
    assert {"key": "dagster/partition", "value": EXPERIMENT} in status["tags"]

    records = dagster_instance().fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("pareto_frontier"), asset_partitions=[EXPERIMENT]), limit=5).records
    assert records[0].run_id == run_id               # the run materialized the experiment's frontier again
    page.goto(f"{ui}/runs/{run_id}")
    page.get_by_text("RUN_SUCCESS").first.wait_for()
    shot(page, "08_graphql_run.png")


LAUNCH_CONFIG = """ops:
  create_experiment:
    config:
      model: {model}
      dataset: {dataset}
      episodes: 1
      name: {name}
      coordinator: random
      compression_methods: [int8]
      eval: {{limit_per_task: 4, full_set_for_frontier: false, fidelity_tokens: 512, prompt_len: 16, new_tokens: 4, latency_repeats: 2, throughput_batch_size: 2}}
"""


def test_an_experiment_is_launched_from_the_launchpad(ui, page, tiny_model_dir, tiny_benchmark):
    from dagster import RunsFilter

    from greenai_dagster.instance import dagster_instance

    page.goto(f"{ui}/jobs")
    page.get_by_text("launch_experiment").first.click()
    page.get_by_text("Launchpad").first.click()
    editor = page.locator(".CodeMirror").first
    editor.wait_for()
    page.get_by_text("coordinator: planner").first.wait_for()     # the typed defaults, scaffolded
    config = LAUNCH_CONFIG.format(model=tiny_model_dir, dataset=tiny_benchmark, name=LAUNCHED)
    page.evaluate("text => document.querySelector('.CodeMirror').CodeMirror.setValue(text)", config)
    # the cursor on `coordinator:` shows that field's documentation and its allowed values
    page.evaluate("() => { const cm = document.querySelector('.CodeMirror').CodeMirror; cm.focus();"
                  " cm.setCursor({line: 7, ch: 8}); }")
    page.get_by_text("No errors").first.wait_for()
    documented = page.get_by_text("who proposes each episode").first     # the field's description, in the
    documented.scroll_into_view_if_needed()                               # editor's help panel
    assert documented.is_visible()
    shot(page, "06_launchpad_config.png")
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/**")
    run_id = page.url.rstrip("/").split("/")[-1]
    page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=180_000)
    shot(page, "07_launched_run.png")

    instance = dagster_instance()
    run = instance.get_run_by_id(run_id)
    assert run.job_name == "launch_experiment" and run.status.value == "SUCCESS"
    assert LAUNCHED in instance.get_dynamic_partitions("experiments")
    deadline = time.time() + 60                     # the coordinator sensor carries the experiment on
    while not instance.get_runs(RunsFilter(tags={"greenai/experiment": LAUNCHED}, job_name="setup")):
        assert time.time() < deadline, "the sensor did not request the new experiment's setup run"
        time.sleep(1)


def _launch_from_the_launchpad(ui, page, config: str) -> str:
    """Type `config` into launch_experiment's Launchpad, launch, and return the run id."""
    page.goto(f"{ui}/jobs")
    page.get_by_text("launch_experiment").first.click()
    page.get_by_text("Launchpad").first.click()
    page.locator(".CodeMirror").first.wait_for()
    page.evaluate("text => document.querySelector('.CodeMirror').CodeMirror.setValue(text)", config)
    page.get_by_text("No errors").first.wait_for()
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/**")
    return page.url.rstrip("/").split("/")[-1]


def test_a_failed_launch_the_job_list_offline_docs_and_a_cancel(ui, ui_root, page, tiny_model_dir, tiny_benchmark):
    """After the Launchpad launch above: a launch that fails (episodes -1) shows its E004 in the run and in
    GET /jobs (which once answered 500 for every job after one failed launch); the Launchpad's experiment
    is a job of the API; /docs renders offline; the experiment is cancelled through DELETE /jobs."""
    _, api_port = ui_root
    api = f"http://127.0.0.1:{api_port}"
    bad = LAUNCH_CONFIG.format(model=tiny_model_dir, dataset=tiny_benchmark, name="ui_bad").replace(
        "episodes: 1", "episodes: -1")
    failed_run = _launch_from_the_launchpad(ui, page, bad)
    page.get_by_text("RUN_FAILURE").first.wait_for(timeout=180_000)
    page.get_by_text("E004: invalid configuration: episodes").first.wait_for()
    shot(page, "09_failed_launch.png")

    listed = httpx.get(f"{api}/jobs", timeout=30)
    assert listed.status_code == 200, listed.text
    jobs = {j["job_id"]: j for j in listed.json()["jobs"]}
    assert jobs[failed_run]["status"] == "failed" and jobs[failed_run]["error"].startswith("E004")
    launched = [j for j in jobs.values() if j["experiment"] == LAUNCHED]
    assert launched, "the Launchpad's experiment is not a job of the API"

    page.goto(f"{api}/docs")                        # Swagger UI from the installed package: no CDN
    page.get_by_text("/compress").first.wait_for()
    page.get_by_text("/jobs/{job_id}").first.wait_for()
    shot(page, "10_api_docs_offline.png", full_page=True)

    cancelled = httpx.delete(f"{api}/jobs/{launched[0]['job_id']}", timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    after = {j["job_id"]: j["status"] for j in httpx.get(f"{api}/jobs", timeout=30).json()["jobs"]}
    assert after[launched[0]["job_id"]] == "cancelled" and after[failed_run] == "failed"
    page.goto(f"{ui}/runs")
    page.get_by_text("launch_experiment").first.wait_for()   # the runs table has rendered (a slow CPU: blank)
    shot(page, "11_runs_after_cancel.png")

