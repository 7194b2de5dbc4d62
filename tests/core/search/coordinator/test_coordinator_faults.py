"""Coordinator failures against a real local HTTP server that misbehaves on purpose, the gaps left by
test_coordinator.py (timeouts, 429 with Retry-After, 500s, garbage JSON, quota): every HTTP failure and
empty answer of the endpoint is one clear code (400-503, empty or null choices, not JSON), 429 without Retry-After (bounded exponential
backoff, then E008), valid JSON naming an unknown method (asked again, then E005), and what the sweep
does when the coordinator has failed: the planner decides that episode where the config allows it
(`coordinator_fallback: "planner"`), else the experiment ends with termination `error`, recorded.
Never a traceback."""

from __future__ import annotations

import json

import pytest

from greenai_dagster.core.errors import (CompressionFailed, CoordinatorKeyMissing, GreenAIError, NetworkError,
                                         QuotaExceeded)
from tests.core.search.coordinator.test_coordinator import GOOD, FakeChatServer, chat, coordinator, state_for

RATE_LIMITED = (429, {"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limit_exceeded"}}, {})
SERVER_ERROR = (500, {"error": {"message": "boom", "type": "server_error"}}, {})


def test_429_without_retry_after_backs_off_exponentially_then_e008(tiny_spec):
    sleeps = []
    with FakeChatServer([RATE_LIMITED] * 5) as url:
        with pytest.raises(QuotaExceeded) as err:
            coordinator(url, sleeps).propose(state_for(tiny_spec))
    assert sleeps == [1.0, 2.0, 4.0, 8.0]                    # 4 retries, doubling, then it gives up
    assert str(err.value).startswith("E008: ") and "Remedy:" in str(err.value)


def test_429_without_retry_after_then_an_answer_goes_on(tiny_spec):
    sleeps = []
    with FakeChatServer([RATE_LIMITED, RATE_LIMITED, chat(GOOD)]) as url:
        proposal = coordinator(url, sleeps).propose(state_for(tiny_spec))
    assert sleeps == [1.0, 2.0] and proposal.strategy.label() == "awq_w4g64"


def test_valid_json_naming_an_unknown_method_is_asked_again_then_e005(tiny_spec):
    unknown = json.dumps({"steps": [{"method": "quantum_annealing", "params": {}}], "reasoning": "new"})
    server = FakeChatServer([chat(unknown)] * 3)
    with server as url:
        with pytest.raises(CompressionFailed) as err:
            coordinator(url).propose(state_for(tiny_spec))
    assert len(server.requests) == 3
    feedback = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "user"][-1]
    assert "quantum_annealing" in feedback
    assert str(err.value).startswith("E005: the LLM coordinator gave no valid strategy in 3 tries")


def _experiment(tmp_path, tiny_spec, url, fallback):
    from tests.core.storage.test_store import sample_row

    from greenai_dagster.core import pipeline
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.reporting.report import write_json
    from greenai_dagster.core.storage.store import ResultsStore

    store = ResultsStore(tmp_path / "r.duckdb")
    config = ExperimentConfig(model="m", dataset="d", episodes=3, name="exp", output_dir=str(tmp_path),
                              coordinator="llm", llm_base_url=url, coordinator_fallback=fallback)
    store.create_experiment("exp", "m", "d", config.model_dump(), str(tmp_path))
    write_json(pipeline.experiment_dir(store, "exp") / "model_spec.json", tiny_spec.to_json())
    store.write_result(sample_row("exp/baseline", 0, 0.5))
    return store


@pytest.mark.parametrize("failure", ["500s", "garbage"])
def test_a_failed_coordinator_falls_back_to_the_planner_where_allowed(tmp_path, tiny_spec, failure):
    from greenai_dagster.core.decide import decide_or_fall_back
    from greenai_dagster.core.experiment import open_experiment

    answers = [SERVER_ERROR] if failure == "500s" else [chat("{not json")] * 3
    with FakeChatServer(answers) as url:
        store = _experiment(tmp_path, tiny_spec, url, "planner")
        decision = decide_or_fall_back(store, open_experiment(store, "exp"), coordinator(url))
    assert decision.termination_reason is None and decision.episode == 1
    assert decision.proposal.strategy.label() == "gptq_w4g64_act"           # the planner's first prior
    assert decision.proposal.strategy.reasoning.startswith("[planner fallback: E00")
    assert "planner decided this episode" in decision.note
    facts = store.facts("exp")
    assert facts["coordinator_fallbacks"] == 1 and facts["coordinator_error"].startswith(("E006: ", "E005: "))


def test_a_failed_coordinator_without_fallback_ends_the_experiment_recorded(tmp_path, tiny_spec):
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.decide import decide_or_fall_back
    from greenai_dagster.core.experiment import open_experiment

    with FakeChatServer([SERVER_ERROR]) as url:
        store = _experiment(tmp_path, tiny_spec, url, None)
        decision = decide_or_fall_back(store, open_experiment(store, "exp"), coordinator(url))
    assert decision.termination_reason == "error" and decision.proposal is None
    assert store.facts("exp")["coordinator_error"].startswith("E006: ") and "HTTP 500" in decision.note
    final = pipeline.finish_experiment(store, open_experiment(store, "exp"), decision.termination_reason)
    assert final["termination_reason"] == "error"
    assert store.experiment("exp")["termination_reason"] == "error"


def _completion(choices):
    return (200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": choices}, {})


NO_CONTENT = [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}]


@pytest.mark.parametrize("name, answers, error, code", [
    ("400", [(400, {"error": {"message": "max_tokens is too large"}}, {})], NetworkError, "E006"),
    ("401", [(401, {"error": {"message": "bad key"}}, {})], CoordinatorKeyMissing, "E001"),
    ("403", [(403, {"error": {"message": "forbidden"}}, {})], CoordinatorKeyMissing, "E001"),
    ("404", [(404, {"error": {"message": "no such model"}}, {})], NetworkError, "E006"),
    ("500", [(500, "internal error", {})], NetworkError, "E006"),
    ("502", [(502, {"error": {"message": "bad gateway"}}, {})], NetworkError, "E006"),
    ("503", [(503, {"error": {"message": "overloaded"}}, {})], NetworkError, "E006"),
    ("empty choices", [_completion([])] * 3, NetworkError, "E006"),        # not retried as "invalid answers"
    ("null choices", [_completion(None)] * 3, NetworkError, "E006"),
    ("not json", [(200, "<html>a proxy login page</html>", {})], NetworkError, "E006"),
    ("no content x3", [_completion(NO_CONTENT)] * 3, CompressionFailed, "E005"),
])
def test_llm_endpoint_failures_are_clear_codes(name, answers, error, code, tiny_spec, data_root):
    from tests.core.search.coordinator.test_coordinator import FakeChatServer, state_for

    from greenai_dagster.core.search.coordinator import LlmCoordinator, LlmSettings

    with FakeChatServer(answers) as url:
        with pytest.raises(GreenAIError) as err:
            LlmCoordinator(LlmSettings(model=f"m-{name}", base_url=url, api_key="k"),
                           sleep=lambda _: None).propose(state_for(tiny_spec))
    assert isinstance(err.value, error) and err.value.code == code, str(err.value)
    assert "Remedy:" in str(err.value) and "coordinator.api_key" not in str(err.value)
