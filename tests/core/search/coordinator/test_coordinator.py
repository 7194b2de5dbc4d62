"""Coordinators: the planner's priors and search, random search, and the LLM client against a
local HTTP server that speaks the Chat Completions API (the one remote service we fake)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from greenai_dagster.core.errors import CoordinatorKeyMissing, NetworkError, QuotaExceeded
from greenai_dagster.core.search.coordinator import CoordinatorState, LlmCoordinator, LlmSettings, Planner, RandomSearch
from greenai_dagster.core.search.coordinator.space import search_space

BASELINE = {"accuracy": 0.5, "latency_ms": 30.0, "memory_gb": 0.8, "model_size_gb": 0.25, "perplexity": 11.0,
            "compression_ratio": 1.0, "strategy_id": "baseline", "kl_divergence": 0.0, "ppl_ratio": 1.0}


def measured(strategy, accuracy, latency, memory, size, kl=None):
    kl = (0.5 - accuracy) * 0.5 + 0.02 if kl is None else kl     # a less accurate model moved further
    return {"candidate_key": f"e/{strategy.label()}", "strategy_id": strategy.label(), "strategy": strategy.to_json(),
            "accuracy": accuracy, "latency_ms": latency, "memory_gb": memory, "model_size_gb": size,
            "perplexity": 12.0, "compression_ratio": 0.25 / size, "kl_divergence": max(kl, 0.001), "ppl_ratio": 1.1}


def state_for(spec, results=(), allowed=None, constraints=None):
    return CoordinatorState(spec=spec, baseline=BASELINE, results=list(results), frontier_ids=[],
                            candidates=search_space(spec, allowed), tried_labels={r["strategy_id"] for r in results},
                            constraints=constraints or {}, allowed_methods=allowed, episode=len(results) + 1,
                            episodes_left=5, budget_hours_left=1.0)


def test_search_space_is_valid_and_unique(tiny_spec):
    space = search_space(tiny_spec)
    labels = [c.label() for c in space]
    assert len(labels) == len(set(labels)) >= 24
    assert labels[0] == "gptq_w4g64_act"
    assert {c.methods[0] for c in space} >= {"gptq", "awq", "autoround", "int8", "magnitude", "structured", "asvd"}


def test_planner_starts_with_the_seed_priors_then_searches(tiny_spec):
    planner = Planner(seed=0)
    first = planner.propose(state_for(tiny_spec))
    assert first.strategy.label() == "gptq_w4g64_act" and "preferred methods" in first.reasoning
    results = [measured(first.strategy, 0.48, 31.0, 0.9, 0.1)]
    second = planner.propose(state_for(tiny_spec, results))
    assert second.strategy.label() == "int8_dynamic"
    results.append(measured(second.strategy, 0.47, 15.0, 0.6, 0.15))
    third = planner.propose(state_for(tiny_spec, results))
    assert third.strategy.methods[0] in ("awq", "autoround") and "preferred methods" in third.reasoning
    results.append(measured(third.strategy, 0.49, 12.0, 0.5, 0.1))
    seen = {r["strategy_id"] for r in results}
    for _ in range(6):
        proposal = planner.propose(state_for(tiny_spec, results))
        label = proposal.strategy.label()
        assert label not in seen
        assert ("Space-filling" in proposal.reasoning) if len(results) == 3 else ("Gaussian-process" in proposal.reasoning)
        seen.add(label)
        results.append(measured(proposal.strategy, 0.45, 25.0, 0.7, 0.12))


def _priors_favouring(spec, favourite: str, with_kl: bool = True):
    """An earlier experiment (its own baseline twice as slow) where `favourite` beat everything."""
    from greenai_dagster.core.search.coordinator.priors import prior_rows

    earlier_baseline = dict(BASELINE, latency_ms=60.0)
    rows = []
    for strategy in search_space(spec):
        best = strategy.label() == favourite
        row = measured(strategy, 0.5 if best else 0.3, 12.0 if best else 50.0, 0.3 if best else 0.75,
                       0.06 if best else 0.24, kl=0.001 if best else 2.0)
        if not with_kl:
            row.pop("kl_divergence")
        rows.append(row)
    names = ["kl_divergence", "accuracy", "latency_ms", "memory_gb", "model_size_gb"]
    return prior_rows(rows, earlier_baseline, names, "earlier")


def test_prior_rows_are_ratios_to_their_own_baseline_and_kl_as_is(tiny_spec):
    priors = _priors_favouring(tiny_spec, "awq_w4g64")
    awq = next(p for p in priors if p["label"] == "awq_w4g64")
    assert awq["values"]["latency_ms"] == pytest.approx(12.0 / 60.0)
    assert awq["values"]["model_size_gb"] == pytest.approx(0.06 / 0.25)
    assert awq["values"]["kl_divergence"] == pytest.approx(0.001)
    assert "kl_divergence" not in _priors_favouring(tiny_spec, "awq_w4g64", with_kl=False)[0]["values"]


def test_planner_with_family_priors_starts_where_the_earlier_experiment_did_best(tiny_spec):
    """Priors that inform every objective replace the hand-written start (which would take GPTQ W4
    first); priors without KL do not, since they leave quality unmodelled."""
    informed = Planner(seed=0, priors=_priors_favouring(tiny_spec, "awq_w4g64")).propose(state_for(tiny_spec))
    assert informed.strategy.label() == "awq_w4g64" and "prior rows" in informed.reasoning
    partial = Planner(seed=0, priors=_priors_favouring(tiny_spec, "awq_w4g64", with_kl=False))
    assert partial.propose(state_for(tiny_spec)).strategy.label() == "gptq_w4g64_act"


def test_tpe_variant_proposes_new_candidates(tiny_spec):
    planner, results = Planner(seed=2, sampler="tpe"), []
    for _ in range(5):
        proposal = planner.propose(state_for(tiny_spec, results))
        assert proposal.strategy.label() not in {r["strategy_id"] for r in results}
        results.append(measured(proposal.strategy, 0.4, 30.0, 0.8, 0.1))
    assert "TPE" in proposal.reasoning


def test_planner_obeys_allowed_methods(tiny_spec):
    planner, results = Planner(seed=1), []
    for _ in range(4):
        proposal = planner.propose(state_for(tiny_spec, results, allowed=["gptq", "rtn"]))
        assert set(proposal.strategy.methods) <= {"gptq", "rtn"}
        results.append(measured(proposal.strategy, 0.4, 30.0, 0.8, 0.1))


def test_random_search_never_repeats_and_ends(tiny_spec):
    search, results = RandomSearch(seed=3), []
    space = search_space(tiny_spec)
    for _ in range(len(space)):
        proposal = search.propose(state_for(tiny_spec, results))
        results.append(measured(proposal.strategy, 0.4, 30.0, 0.8, 0.1))
    assert len({r["strategy_id"] for r in results}) == len(space)
    assert search.propose(state_for(tiny_spec, results)) is None


class FakeChatServer:
    """Serves queued (status, body, headers) answers at /v1/chat/completions on 127.0.0.1."""

    last = None   # the most recent server, for tests that inspect what was sent

    def __init__(self, answers):
        self.answers, self.requests = list(answers), []
        outer = self
        FakeChatServer.last = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers["Content-Length"])
                outer.requests.append(json.loads(self.rfile.read(length)))
                status, body, headers = outer.answers.pop(0)
                if status == "hang":
                    threading.Event().wait(3)
                    return
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def __exit__(self, *exc):
        self.server.shutdown()


def chat(content):
    return (200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": content}}]}, {})


GOOD = json.dumps({"steps": [{"method": "awq", "params": {"bits": 4, "group_size": 64}}],
                   "reasoning": "AWQ for speed at 4 bits"})


def coordinator(url, sleeps=None, timeout=30.0):
    record = sleeps if sleeps is not None else []
    return LlmCoordinator(LlmSettings(model="m", base_url=url, api_key="k", timeout_s=timeout), sleep=record.append)


def test_llm_good_answer_is_validated_and_carries_reasoning(tiny_spec):
    with FakeChatServer([chat(GOOD)]) as url:
        proposal = coordinator(url).propose(state_for(tiny_spec))
    assert proposal.strategy.label() == "awq_w4g64" and proposal.reasoning == "AWQ for speed at 4 bits"


def test_llm_prompt_carries_the_state(tiny_spec):
    server = FakeChatServer([chat(GOOD)])
    with server as url:
        coordinator(url).propose(state_for(tiny_spec, constraints={"min_accuracy": 0.3}, allowed=["awq", "gptq"]))
    payload = json.loads(server.requests[0]["messages"][1]["content"])
    assert payload["constraints"] == {"min_accuracy": 0.3} and payload["allowed_methods"] == ["awq", "gptq"]
    assert payload["model_spec"]["valid_group_sizes"] == [32, 64] and payload["baseline"]["accuracy"] == 0.5
    assert server.requests[0]["response_format"]["type"] == "json_schema"


def test_llm_malformed_then_invalid_then_good(tiny_spec):
    bad_json = "steps: awq please"
    invalid = json.dumps({"steps": [{"method": "gptq", "params": {"bits": 4, "group_size": 128}}], "reasoning": "r"})
    server = FakeChatServer([chat(bad_json), chat(invalid), chat(GOOD)])
    with server as url:
        proposal = coordinator(url).propose(state_for(tiny_spec))
    assert proposal.strategy.label() == "awq_w4g64"
    feedback = [m["content"] for m in server.requests[2]["messages"] if m["role"] == "user"][1:]
    assert "not valid JSON" in feedback[0] and "group size 128" in feedback[1]


def test_llm_duplicate_is_rejected(tiny_spec):
    space = search_space(tiny_spec)
    awq = next(c for c in space if c.label() == "awq_w4g64")
    tried = [measured(awq, 0.4, 30.0, 0.8, 0.1)]
    with FakeChatServer([chat(GOOD), chat(GOOD), chat(GOOD)]) as url:
        with pytest.raises(Exception, match="already tried"):
            coordinator(url).propose(state_for(tiny_spec, tried))


def test_llm_429_honours_retry_after(tiny_spec):
    limited = (429, {"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limit_exceeded"}},
               {"Retry-After": "7"})
    sleeps = []
    with FakeChatServer([limited, chat(GOOD)]) as url:
        proposal = coordinator(url, sleeps).propose(state_for(tiny_spec))
    assert sleeps == [7.0] and proposal.strategy.label() == "awq_w4g64"


def test_llm_quota_exhausted_is_e008(tiny_spec):
    quota = (429, {"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}, {})
    with FakeChatServer([quota]) as url:
        with pytest.raises(QuotaExceeded) as err:
            coordinator(url).propose(state_for(tiny_spec))
    assert err.value.code == "E008"


def test_llm_timeout_is_e006(tiny_spec):
    with FakeChatServer([("hang", None, {})]) as url:
        with pytest.raises(NetworkError) as err:
            coordinator(url, timeout=0.5).propose(state_for(tiny_spec))
    assert err.value.code == "E006"


def test_llm_without_key_is_e001(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(CoordinatorKeyMissing) as err:
        LlmCoordinator(LlmSettings(api_key=None))
    assert err.value.code == "E001"


def test_every_strategy_of_the_space_has_its_own_feature_point(tiny_spec):
    from greenai_dagster.core.search.coordinator.space import FEATURES, features

    space = search_space(tiny_spec)
    points = {tuple(features(c)[k] for k in FEATURES): c.label() for c in space}
    assert len(points) == len(space)
    w4 = [c for c in space if features(c)["weight_bits"] == 4 and features(c)["sparsity"] == 0]
    assert len({tuple(features(c).values()) for c in w4}) == len(w4) >= 6


LLAMA_CPP_REFUSAL = (500, {"error": {"code": 500, "type": "server_error",
                                     "message": "response_format type must be one of \"text\" or \"json_object\", "
                                                "but got: json_schema"}}, {})


def test_llm_steps_down_to_a_dialect_the_server_speaks_and_remembers_it(tiny_spec, data_root):
    with FakeChatServer([LLAMA_CPP_REFUSAL, chat(GOOD), chat(GOOD)]) as url:
        first = coordinator(url).propose(state_for(tiny_spec))
        assert first.strategy.methods == ["awq"]
        later = coordinator(url)                     # a new process would read the same file
        assert later.dialect == "json_object"
        later.propose(state_for(tiny_spec))
        sent = [r.get("response_format", {}).get("type") for r in FakeChatServer.last.requests]
    assert sent == ["json_schema", "json_object", "json_object"]


def test_llm_without_structured_output_reads_json_from_prose(tiny_spec, data_root):
    refusal = (400, {"error": {"message": "Unrecognized request argument supplied: response_format"}}, {})
    prose = "Here is my choice:\n```json\n" + GOOD + "\n```\nGood luck."
    with FakeChatServer([refusal, refusal, chat(prose)]) as url:
        proposal = LlmCoordinator(LlmSettings(model="plain", base_url=url, api_key="k"), sleep=lambda _: None).propose(
            state_for(tiny_spec))
        sent = [("response_format" in r) for r in FakeChatServer.last.requests]
    assert proposal.strategy.methods == ["awq"] and sent == [True, True, False]


@pytest.mark.parametrize("status", [404, 500, 503])
def test_llm_http_failures_become_e006_not_tracebacks(tiny_spec, data_root, status):
    failure = (status, {"error": {"message": "model 'm' not found" if status == 404 else "upstream exploded"}}, {})
    with FakeChatServer([failure]) as url:
        with pytest.raises(NetworkError, match=f"HTTP {status}"):
            LlmCoordinator(LlmSettings(model=f"m{status}", base_url=url, api_key="k")).propose(state_for(tiny_spec))
