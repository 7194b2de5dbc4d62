"""Property-based tests (hypothesis) over every input a user hands the project: the config file, the
strategy JSON (an LLM coordinator's answer), `greenai run` arguments, `greenai analyze` folders and
the REST API bodies. Every invalid input gets one clear error naming the field (an E00N GreenAIError,
argparse's usage error, or a 422 whose detail names the field), never a traceback, and nothing is
written. Examples are bounded (max_examples) to keep CI time modest.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from greenai_dagster.core.errors import GreenAIError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)  # same examples every CI run

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | \
    st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)

CONFIG_FIELDS = ["model", "dataset", "benchmark_source", "episodes", "budget", "output_dir", "name",
                 "compression_methods", "trust_remote_code", "allow_code_execution", "constraints", "objectives",
                 "coordinator", "llm_model", "llm_base_url", "llm_temperature", "llm_timeout_s", "seed",
                 "convergence_patience",
                 "stop_when_constraints_met", "driver", "country_iso_code", "eval"]
# per field: values that must be refused
INVALID_CONFIG = {
    "episodes": st.integers(max_value=0) | st.integers(min_value=1001) | st.text(alphabet=string.ascii_letters, min_size=1),
    "budget": st.floats(max_value=0) | st.just("two"),
    "benchmark_source": st.text(max_size=8).filter(lambda s: s not in ("auto", "offline", "hub")),
    "coordinator": st.text(max_size=8).filter(lambda s: s not in ("planner", "llm", "random")),
    "driver": st.text(max_size=8).filter(lambda s: s not in ("cli", "sensor")),
    "llm_temperature": st.floats(min_value=2.01, max_value=1e9) | st.floats(max_value=-0.01),
    "llm_timeout_s": st.floats(max_value=0) | st.floats(min_value=3600.01, max_value=1e12),
    "convergence_patience": st.integers(max_value=0),
    "constraints": st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: not k.startswith(("min_", "max_"))),
                                   st.floats(-10, 10), min_size=1, max_size=2),
    "objectives": st.lists(st.sampled_from(["speed", "vibes", "acc", "Accuracy"]), min_size=1, max_size=2),
    "compression_methods": st.lists(st.sampled_from(["gptq4", "zip", "quantum", "Gptq"]), min_size=1, max_size=2),
    "llm_base_url": st.sampled_from(["ftp://x", "not a url", "http://user:pw@host/v1", "http://h/v1?api_key=1"]),
    "eval": st.fixed_dictionaries({"batch_size": st.integers(max_value=0)}) |
            st.fixed_dictionaries({"fidelity_tokens": st.integers(0, 511)}) |
            st.fixed_dictionaries({"unknown_setting": st.integers()}) | st.integers() | st.text(max_size=4),
    "trust_remote_code": st.sampled_from(["maybe", 2, [True]]),
    "unknown_key": st.integers() | st.text(max_size=5),
}


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@FUZZ
@given(field=st.sampled_from(sorted(INVALID_CONFIG)), data=st.data())
def test_config_file_with_one_invalid_field_names_it(tmp_path_factory, field, data):
    from greenai_dagster.core.settings.config import load_config

    folder = tmp_path_factory.mktemp("cfg")
    value = data.draw(INVALID_CONFIG[field], label=field)
    path = folder / "config.json"
    path.write_text(json.dumps({"episodes": 2, field: value}))
    before = _listing(folder)
    with pytest.raises(GreenAIError) as err:
        load_config({}, str(path))
    text = str(err.value)
    assert text.startswith(("E004: ", "E005: ")) and "Remedy:" in text and "Traceback" not in text
    assert field in text or (field == "compression_methods" and any(str(v) in text for v in value)), text
    assert _listing(folder) == before


@FUZZ
@given(content=json_values | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_any_config_file_content_is_a_config_or_one_clear_error(tmp_path_factory, content):
    from greenai_dagster.core.settings.config import ExperimentConfig, load_config

    folder = tmp_path_factory.mktemp("cfg")
    path = folder / "c.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    try:
        assert isinstance(load_config({}, str(path)), ExperimentConfig)
    except GreenAIError as exc:
        assert str(exc).startswith("E00") and "Remedy:" in str(exc)
    assert _listing(folder) == {"c.json"}


# ---- strategy JSON: the LLM coordinator's answer -----------------------------------------------------

@pytest.fixture(scope="module")
def state(tiny_model_dir):
    from tests.core.search.coordinator.test_coordinator import state_for

    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.assess import build_spec

    model, _ = load_model_and_tokenizer(str(tiny_model_dir))
    return state_for(build_spec("tiny", model, str(tiny_model_dir)))


METHODS = ["gptq", "awq", "int8", "magnitude", "structured", "asvd", "rtn", "nope"]
steps = st.lists(st.fixed_dictionaries({"method": st.sampled_from(METHODS) | json_scalars},
                                       optional={"params": st.dictionaries(
                                           st.sampled_from(["bits", "group_size", "sparsity", "rank_ratio", "x"]),
                                           json_scalars, max_size=3) | json_scalars}), max_size=3)
answers = (st.fixed_dictionaries({"steps": steps}, optional={"reasoning": json_scalars}).map(json.dumps)
           | json_values.map(json.dumps) | st.text(max_size=60))


@FUZZ
@given(answer=answers)
def test_any_strategy_answer_is_a_valid_strategy_or_one_clear_reason(state, answer):
    from greenai_dagster.core.search.coordinator.llm import parse_answer
    from greenai_dagster.core.strategy import validate_strategy

    try:
        proposal = parse_answer(answer, state)
    except ValueError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert validate_strategy(proposal.strategy, state.spec).steps == proposal.strategy.steps


@FUZZ
@given(method=st.sampled_from(["gptq", "awq", "int8", "magnitude", "structured", "asvd", "rtn"]),
       param=st.sampled_from(["bits", "group_size", "sparsity", "rank_ratio", "num_calibration_samples"]),
       value=st.integers(-100, -1) | st.text(alphabet=string.ascii_letters, min_size=1, max_size=5) |
       st.lists(st.integers(), max_size=2))
def test_an_invalid_strategy_parameter_is_e005_naming_it(state, method, param, value):
    from greenai_dagster.core.methods import get_method
    from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

    known = get_method(method).Params.model_fields
    with pytest.raises(GreenAIError) as err:
        validate_strategy(Strategy("s", [Step(method, {param: value})]), state.spec)
    assert str(err.value).startswith("E005: ")
    assert param in str(err.value) if param in known else "extra" in str(err.value).lower() or param in str(err.value)


# ---- `greenai run` arguments -------------------------------------------------------------------------

FLAGS = {"-e": st.integers(-5, 2000).map(str) | st.text(max_size=4), "-b": st.floats(-5, 50).map(str) | st.just("x"),
         "--coordinator": st.sampled_from(["planner", "llm", "gpt", ""]),
         "--benchmark-source": st.sampled_from(["auto", "offline", "cloud"]),
         "--proxy-items": st.integers(-3, 50).map(str) | st.just("ten"),
         "--fidelity-tokens": st.integers(0, 9000).map(str), "--objectives": st.text(max_size=20),
         "-n": st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=10),
         "-c": st.sampled_from(["/nonexistent.json", "/", "/etc/hostname"])}


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.none(), max_size=4), data=st.data())
def test_run_arguments_parse_to_a_config_or_one_clear_error(tmp_path_factory, data_root, flags, data, capsys):
    from greenai_dagster.cli import build_parser, config_from_args
    from greenai_dagster.core.settings.config import ExperimentConfig

    argv = ["run"]
    for flag in flags:
        value = data.draw(FLAGS[flag], label=flag)
        assume(not value.startswith("-"))
        argv += [flag, value]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:                       # argparse: "error: argument -e/--episodes: invalid int value"
        err = capsys.readouterr().err
        assert exc.code == 2 and "error: argument" in err and "Traceback" not in err
        return
    try:
        assert isinstance(config_from_args(args), ExperimentConfig)
    except GreenAIError as exc:
        assert str(exc).startswith("E00") and "Remedy:" in str(exc)


# ---- `greenai analyze` ---------------------------------------------------------------------------------

@FUZZ
@given(files=st.dictionaries(st.sampled_from(["model_spec.json", "pareto_frontier.json", "final_results.json",
                                              "episode_001/strategy.json", "episode_001/results.json"]),
                             json_values | st.text(max_size=30), min_size=1, max_size=5),
       fmt=st.sampled_from(["summary", "detailed", "json"]))
def test_analyze_any_folder_contents_is_a_report_or_one_clear_error(tmp_path_factory, files, fmt):
    from greenai_dagster.core.reporting.analyze import analyze_folder

    folder = tmp_path_factory.mktemp("exp")
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    before = _listing(folder)
    try:
        assert isinstance(analyze_folder(folder, fmt), str)
    except GreenAIError as exc:
        assert str(exc).startswith("E004: ") and "Remedy:" in str(exc)
    assert _listing(folder) == before


# ---- REST API bodies ----------------------------------------------------------------------------------

INVALID_BODY = {
    "model_name": st.just("") | st.integers() | st.text(min_size=501, max_size=510),
    "max_episodes": st.integers(max_value=0) | st.integers(min_value=1001) | st.just("three"),
    "budget": st.floats(max_value=0, allow_infinity=False) | st.floats(min_value=10001, max_value=1e9),
    "experiment_name": st.text(min_size=1, max_size=8).filter(lambda s: not s[0].isalnum() or " " in s),
    "coordinator": st.text(max_size=6).filter(lambda s: s not in ("planner", "llm", "random")),
    "compression_methods": st.lists(st.sampled_from(["zip", "GPTQ"]), min_size=1, max_size=2) | st.just([]),
    "constraints": st.dictionaries(st.sampled_from(["latency", "min-acc", "max_x!"]), st.floats(0, 1), min_size=1),
    "objectives": st.lists(st.sampled_from(["speed", "vibes"]), min_size=1),
    "eval": st.fixed_dictionaries({"batch_size": st.integers(max_value=0)}) |
            st.fixed_dictionaries({"prompt_len": st.integers(0, 7)}) | st.fixed_dictionaries({"nope": st.integers()}),
    "surprise": st.integers(),
}


@pytest.fixture(scope="module")
def client(data_root):
    from fastapi.testclient import TestClient

    from greenai_dagster.api.app import ApiSettings, create_app

    return TestClient(create_app(ApiSettings(dagster_url="http://127.0.0.1:9")))


@FUZZ
@given(field=st.sampled_from(sorted(INVALID_BODY)), data=st.data())
def test_an_invalid_compress_body_is_422_naming_the_field(client, tiny_model_dir, tiny_benchmark, data_root, field,
                                                          data):
    from greenai_dagster.core.storage.paths import duckdb_path

    body = {"model_name": str(tiny_model_dir), "dataset": str(tiny_benchmark), "max_episodes": 1}
    body[field] = data.draw(INVALID_BODY[field], label=field)
    before = duckdb_path().exists() and duckdb_path().stat().st_mtime
    reply = client.post("/compress", json=body)
    assert reply.status_code == 422, (reply.status_code, reply.text)
    locations = [".".join(map(str, e["loc"])) for e in reply.json()["detail"]]
    assert any(field in where for where in locations), (field, locations)
    assert "Traceback" not in reply.text
    assert (duckdb_path().exists() and duckdb_path().stat().st_mtime) == before     # nothing written


finite_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=20) |
                           st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                      max_size=4), max_leaves=12)


@FUZZ
@given(body=finite_json)
def test_any_json_body_never_makes_a_5xx(client, body):
    for path in ("/compress", "/spec/infer"):
        if path == "/spec/infer" and isinstance(body, dict) and "model_name" in body:
            body = {**body, "not_a_field": 1}          # never a real model load from the hub in CI
        reply = client.post(path, json=body)
        assert 400 <= reply.status_code < 500, (path, body, reply.status_code, reply.text)
        assert "Traceback" not in reply.text
