"""deploy/k8s/ validated against dagster-k8s's and Dagster's own config schemas (no cluster needed): the
instance file (storage, run coordinator, K8sRunLauncher), the k8s_job_executor run config and the
candidate job's `dagster-k8s/config` tags. A misspelt key must fail the same check."""

from __future__ import annotations


import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"


@pytest.fixture(autouse=True)
def _pg_password(monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-secret")   # resolved from the environment, as in a pod


def _validate(schema, value):
    from dagster._config import process_config
    from dagster._config.field import resolve_to_config_type

    return process_config(resolve_to_config_type(schema), value)


def test_instance_yaml_passes_dagsters_instance_schema_and_the_launchers():
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster_k8s import K8sRunLauncher

    instance = yaml.safe_load((K8S / "dagster.yaml").read_text())
    assert _validate(dagster_instance_config_schema(), instance).success
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = _validate(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert "GREENAI_DATA=/data" in result.value["env_vars"]
    bad = {**launcher["config"], "volume_mount": launcher["config"]["volume_mounts"]}
    assert not _validate(K8sRunLauncher.config_type(), bad).success


def test_postgres_storage_block_passes_dagster_postgres_schema():
    from dagster_postgres import PostgresRunStorage

    for name in ("dagster.yaml",):
        storage = yaml.safe_load((K8S / name).read_text())["storage"]["postgres"]
        assert _validate(PostgresRunStorage.config_type(), storage).success


def test_k8s_job_executor_run_config_passes_its_schema():
    from dagster_k8s import k8s_job_executor

    config = yaml.safe_load((K8S / "k8s_job_executor.yaml").read_text())["execution"]["config"]
    schema = k8s_job_executor.config_schema.as_field().config_type
    result = _validate(schema, config)
    assert result.success, result.errors
    gpu = result.value["per_step_k8s_config"]["compress_and_benchmark"]["container_config"]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
    assert not _validate(schema, {**config, "max_concurent": 4}).success


def test_candidate_job_gpu_tags_pass_the_user_defined_k8s_schema():
    from dagster_k8s.job import USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, UserDefinedDagsterK8sConfig

    tags = yaml.safe_load((K8S / "candidate_job_tags.yaml").read_text())
    value = tags["dagster-k8s/config"]
    assert _validate(USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, value).success
    parsed = UserDefinedDagsterK8sConfig.from_dict(value)
    assert parsed.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert not _validate(USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, {"container_confg": {}}).success
