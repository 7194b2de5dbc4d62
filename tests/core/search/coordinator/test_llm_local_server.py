"""The `llm` coordinator against a real, fully offline endpoint: llama-cpp-python's OpenAI-compatible
server serving the packaged SmolLM2-135M-Instruct GGUF on 127.0.0.1 (what `greenai llm-server` runs).

The server refuses OpenAI's `json_schema` dialect; the coordinator must step down to `json_object`
with a schema (grammar-constrained), remember it, and return a strategy that passed validation.
"""

import pytest

from greenai_dagster.core.search.coordinator import LlmCoordinator, LlmSettings
from greenai_dagster.core.search.coordinator.base import CoordinatorState
from greenai_dagster.core.search.coordinator.space import search_space


@pytest.fixture(scope="module")
def llama_server():
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed")
    from greenai_dagster.core.search.coordinator.local_server import start
    from greenai_dagster.core.models.default_model import find_packaged_gguf

    proc, url = start(find_packaged_gguf())
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_llm_coordinator_proposes_a_valid_strategy_through_llama_cpp(llama_server, tiny_spec, data_root):
    baseline = {"strategy_id": "baseline", "accuracy": 0.5, "latency_ms": 30.0, "memory_gb": 0.8,
                "model_size_gb": 0.25, "kl_divergence": 0.0, "ppl_ratio": 1.0}
    state = CoordinatorState(spec=tiny_spec, baseline=baseline, results=[], frontier_ids=[],
                             candidates=search_space(tiny_spec, ["gptq", "rtn", "magnitude"]), tried_labels=set(),
                             constraints={}, allowed_methods=["gptq", "rtn", "magnitude"], episode=1,
                             episodes_left=3, budget_hours_left=1.0)
    coordinator = LlmCoordinator(LlmSettings(model="SmolLM2-135M-Instruct", base_url=llama_server, api_key="local",
                                             timeout_s=300, temperature=0.0))
    proposal = coordinator.propose(state)
    assert coordinator.dialect == "json_object"
    assert proposal is not None and set(proposal.strategy.methods) <= {"gptq", "rtn", "magnitude"}
    assert proposal.strategy.label() not in state.tried_labels


def test_every_grammar_constrained_answer_is_a_menu_strategy(llama_server, tiny_spec, data_root):
    """The schema the coordinator sends lists the menu's step lists as an enum, so llama.cpp's grammar lets the
    135M model write nothing but a menu choice: with one try per episode (no retries) and sampling at
    temperature 1, four episodes in a row each get a valid, untried strategy on the first answer. (With the
    open schema the same model invented candidates and parameters and fell back to the planner in 4 of 5
    episodes on the lent H100.)"""
    methods = ["gptq", "rtn", "magnitude", "awq"]
    candidates = search_space(tiny_spec, methods)
    coordinator = LlmCoordinator(LlmSettings(model="SmolLM2-135M-Instruct", base_url=llama_server, api_key="local",
                                             timeout_s=300, temperature=1.0, max_answer_retries=1))
    tried: set[str] = set()
    menu = {c.label() for c in candidates}
    for episode in range(1, 5):
        state = CoordinatorState(spec=tiny_spec, baseline={"strategy_id": "baseline", "accuracy": 0.5,
                                                           "kl_divergence": 0.0}, results=[], frontier_ids=[],
                                 candidates=candidates, tried_labels=set(tried), constraints={},
                                 allowed_methods=methods, episode=episode, episodes_left=5 - episode,
                                 budget_hours_left=1.0)
        proposal = coordinator.propose(state)   # raises E005 if the single answer was refused
        label = proposal.strategy.label()
        assert label in menu and label not in tried
        tried.add(label)
