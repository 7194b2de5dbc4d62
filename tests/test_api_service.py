"""Job status from Dagster's runs, whatever state or event type a run ended in (issue: GET /jobs answered
500 for every job once any launch run had failed with a RUN_FAILURE event)."""

from __future__ import annotations


def test_a_failed_launch_is_listed_with_its_e00n_message(data_root):
    from greenai_dagster.api import service
    from greenai_dagster.definitions import defs
    from greenai_dagster.instance import dagster_instance

    launch = defs.get_job_def("launch_experiment")
    result = launch.execute_in_process(
        run_config={"ops": {"create_experiment": {"config": {"episodes": -1, "name": "bad_launch"}}}},
        instance=dagster_instance(), raise_on_error=False, tags={service.EXPERIMENT_TAG: "bad_launch"})
    assert not result.success

    listed = {job["job_id"]: job for job in service.jobs()["jobs"]}           # no 500: every run state is read
    failed = listed[result.run_id]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("E004: invalid configuration: episodes: Input should be greater than or equal to 1")
    assert service.job(result.run_id)["error"] == failed["error"]
