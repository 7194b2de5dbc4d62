"""One schema for the experiment settings (issues 27 and 28): the Launchpad's config, the REST request and
the CLI's flags are generated from core/settings/config.py's ExperimentConfig, so for every field each entry point
that exposes it shows the same default and description, and a bad value gets the same E004 message
whoever sent it. These tests read each entry point as its user meets it (Dagster's config schema, the
OpenAPI JSON schema, argparse's actions and help), not the tables they were generated from."""

from __future__ import annotations

import json
from enum import Enum

import pytest

from greenai_dagster.core.errors import EvaluationError
from greenai_dagster.core.evaluation.eval_settings import EvalSettings
from greenai_dagster.core.settings.config import (CLI_EVAL_FLAGS, CLI_FLAGS, LAUNCHPAD_FIELDS, REST_FIELDS,
                                                  ExperimentConfig, describe, field_bounds, field_default,
                                                  validated_config)

# set in a --config JSON file only: a decision, so a new field fails here until it is placed somewhere
CONFIG_FILE_ONLY = {"coordinator_fallback", "llm_model", "llm_base_url", "llm_temperature", "llm_timeout_s",
                    "family_priors",
                    "convergence_patience", "stop_when_constraints_met", "driver", "country_iso_code"}
BAD_CONSTRAINTS = {"max_bogus": 1.0}


def launchpad_fields() -> dict:
    from greenai_dagster.jobs import launch_experiment

    schema = launch_experiment.run_config_schema.config_type
    return schema.fields["ops"].config_type.fields["create_experiment"].config_type.fields["config"].config_type.fields


def rest_properties() -> dict:
    from greenai_dagster.api.models import CompressRequest

    return CompressRequest.model_json_schema()["properties"]


def cli_actions() -> dict:
    from greenai_dagster.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    return {option: action for action in run._actions for option in action.option_strings}


def test_every_field_is_placed_in_an_entry_point_or_the_config_file():
    placed = set(LAUNCHPAD_FIELDS) | set(REST_FIELDS) | set(CLI_FLAGS) | CONFIG_FILE_ONLY
    assert placed == set(ExperimentConfig.model_fields)
    assert "device" not in ExperimentConfig.model_fields          # never read (issue 27): gone, old rows load
    assert ExperimentConfig(device="auto", model="m").model == "m"


@pytest.mark.parametrize("name", sorted(ExperimentConfig.model_fields))
def test_each_entry_point_shows_the_schemas_default_and_description(name):
    default, text = field_default(ExperimentConfig, name), describe(ExperimentConfig, name)
    if name in LAUNCHPAD_FIELDS:
        field = launchpad_fields()[name]
        assert field.description == text
        if name == "eval":               # overrides, each unset: EvalSettings' defaults (test_engine.py checks them)
            assert set(field.config_type.fields) <= set(EvalSettings.model_fields)
        elif field.default_provided:
            shown = field.default_value
            assert (shown.value if isinstance(shown, Enum) else shown) == default
        else:                            # a default factory: Dagster leaves the field out, the op builds it
            assert not field.is_required and default == {}
    if name in REST_FIELDS:
        prop = rest_properties()[REST_FIELDS[name]]
        assert prop["description"] == text
        if name == "model":              # the seed's body always names the model (test_api.py: 422 without it)
            assert "default" not in prop
        elif name != "eval":
            assert prop.get("default", {}) == default
        bounds = field_bounds(ExperimentConfig, name)
        keywords = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
        for key, bound in bounds.items():    # the REST schema may be stricter (a web request's limits), not looser
            shown = prop.get(keywords[key], prop.get("anyOf", [{}])[0].get(keywords[key]))
            assert shown is not None and (shown >= bound if key in ("ge", "gt") else shown <= bound)
    if name in CLI_FLAGS:
        action = cli_actions()[CLI_FLAGS[name][-1]]
        assert action.help.replace("%%", "%").startswith(text) and action.default is None   # None: "not given"
        shown = "unset" if default is None else default
        assert action.help.endswith(f"(default: {shown})")


def test_the_cli_and_the_launchpad_build_the_schemas_defaults(data_root):
    """What a user who sets nothing gets, through the CLI and the Launchpad, is ExperimentConfig()."""
    from greenai_dagster.cli import build_parser, config_from_args
    from greenai_dagster.jobs import NewExperimentConfig

    defaults = ExperimentConfig()
    from_cli = config_from_args(build_parser().parse_args(["run"]))
    assert from_cli.model_dump(exclude={"output_dir"}) == defaults.model_dump(exclude={"output_dir"})
    from_launchpad = ExperimentConfig(**NewExperimentConfig().settings())
    assert from_launchpad.model_dump() == defaults.model_dump()
    for name, flags in CLI_EVAL_FLAGS.items():                  # the eval flags: EvalSettings' text and default
        action = cli_actions()[flags[-1]]
        assert action.help.startswith(describe(EvalSettings, name))


def _api_error(body: dict) -> tuple[int, dict]:
    from fastapi.testclient import TestClient

    from greenai_dagster.api.app import ApiSettings, create_app

    client = TestClient(create_app(ApiSettings(api_key=None, dagster_url="http://127.0.0.1:9")))
    reply = client.post("/compress", json=body)
    return reply.status_code, reply.json()


def _cli_error(tmp_path, config: dict, capsys) -> str:
    from greenai_dagster.cli import main

    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["run", "-c", str(path)]) == 1
    return capsys.readouterr().err.strip()


def _launchpad_error(config: dict) -> str:
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.instance import dagster_instance
    from greenai_dagster.jobs import launch_experiment
    from greenai_dagster.resources import ResultsStoreResource

    result = launch_experiment.execute_in_process(
        run_config={"ops": {"create_experiment": {"config": config}}}, instance=dagster_instance(),
        resources={"store": ResultsStoreResource(path=str(duckdb_path()))}, raise_on_error=False)
    assert not result.success
    error = result.failure_data_for_node("create_experiment").error
    return (error.cause or error).message.split(": ", 1)[1]      # without Python's class name (RuntimeError)


@pytest.mark.parametrize("setting, rest_key, value", [("constraints", "constraints", BAD_CONSTRAINTS),
                                                      ("objectives", "objectives", ["vibes"]),
                                                      ("episodes", "max_episodes", 0)])
def test_a_bad_setting_gets_the_same_e004_message_through_every_entry_point(data_root, tmp_path, capsys, setting,
                                                                          rest_key, value):
    with pytest.raises(EvaluationError) as direct:
        validated_config({setting: value}, "remedy")
    message = direct.value.message                 # "invalid configuration: <field>: <what is wrong>."
    assert direct.value.code == "E004" and message.startswith(f"invalid configuration: {setting}: ")
    # the API names the field as the body does (max_episodes); the rest of the message is the same
    expected_api = message.replace(f": {setting}: ", f": {rest_key}: ", 1)

    status, reply = _api_error({"model_name": "m", rest_key: value})
    assert status == 422                                             # the HTTP answer of before: 422, field named
    assert any(error["loc"] == ["body", rest_key] for error in reply["detail"])
    assert reply["error"]["code"] == "E004" and reply["error"]["message"] == expected_api

    assert _cli_error(tmp_path, {setting: value}, capsys).startswith(f"E004: {message} Remedy: ")
    assert _launchpad_error({setting: value}).startswith(f"E004: {message} Remedy: ")


def test_an_infinite_bound_is_refused_everywhere_not_only_by_the_api():
    """One constraint check (core/settings/config.py `check_constraints`): the finite-number rule the REST model had
    alone now holds for config files and the Launchpad too."""
    with pytest.raises(EvaluationError, match="constraint 'max_kl' must be a finite number"):
        validated_config({"constraints": {"max_kl": float("inf")}}, "remedy")
