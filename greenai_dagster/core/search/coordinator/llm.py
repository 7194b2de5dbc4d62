"""The LLM coordinator: any OpenAI-compatible Chat Completions endpoint through the `openai` client.

The prompt carries the whole state (spec, baseline, results, frontier, constraints, allowed
methods, remaining budget, the candidate menu). The answer must be JSON matching
`STRATEGY_SCHEMA` (requested as structured output); it is validated against the model spec and
the history, and a bounded retry tells the model exactly what was wrong. Errors map to the
seed's codes: no key E001, network / timeout / other HTTP failures E006, quota or persistent rate
limiting E008 (a 429 is retried after its Retry-After, bounded).

Servers speak different structured-output dialects: OpenAI's `json_schema`, `json_object` with a
`schema` (llama.cpp's server refuses `json_schema` with HTTP 500, accepts this and constrains its
sampling to the schema with a grammar), or none. The client
starts with the richest, steps down when a server refuses the `response_format` it sent, and
remembers per endpoint and model what worked (`data/llm_endpoints.json`), so later requests (and
other processes: the sensor, the CLI) go straight to the dialect that works. Without a
`response_format` the answer is plain text, from which the JSON object is taken (code fences and
prose around it are ignored) and validated as always.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from greenai_dagster.core.errors import (CompressionFailed, CoordinatorKeyMissing, GreenAIError, NetworkError,
                                         QuotaExceeded)
from greenai_dagster.core.methods.mixed.method import known_sensitivity
from greenai_dagster.core.redact import redact
from greenai_dagster.core.search.coordinator.base import CoordinatorState, Proposal
from greenai_dagster.core.search.objectives import get as get_objective
from greenai_dagster.core.storage.paths import data_root
from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

STRATEGY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["steps", "reasoning"],
    "properties": {
        "reasoning": {"type": "string"},
        "steps": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["method", "params"],
            "properties": {"method": {"type": "string"},
                           "params": {"type": "object",
                                      "additionalProperties": {"type": ["number", "string", "boolean"]}}}}},
    },
}

SYSTEM_PROMPT = (
    "You are the coordinator of a multi-objective LLM compression search. The objectives (with direction and unit) "
    "are listed in the request under `objectives`. Candidates marked `degraded` failed the quality gate (their next-"
    "token distribution moved too far from the baseline's: KL divergence or perplexity ratio beyond the bound) and "
    "can never join the frontier. Accuracy carries a 95% interval: differences inside it are noise. "
    "Each episode you choose ONE compression strategy "
    "(an ordered list of steps) that is most likely to extend the Pareto frontier, respecting the constraints and "
    "the allowed methods, and never repeating a tried strategy. Prefer a strategy from the candidate menu. Answer "
    "with JSON only: {\"steps\": [{\"method\": ..., \"params\": {...}}], \"reasoning\": \"...\"}."
)


@dataclass
class LlmSettings:
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 0.2
    timeout_s: float = 300.0           # ExperimentConfig.llm_timeout_s (defaults to this) says why
    max_tokens: int = 400              # an answer is ~100 tokens; the cap stops a small model that loops
    max_answer_retries: int = 3        # invalid / malformed answers
    max_rate_limit_retries: int = 4    # 429s
    max_retry_after_s: float = 60.0


SUMMARY_KEYS = ("strategy_id", "kl_divergence", "top1_agreement", "ppl_ratio", "accuracy", "accuracy_stderr",
                "latency_ms", "memory_gb", "model_size_gb", "compression_ratio", "degraded", "degraded_reason")


def _summary(row: dict) -> dict:
    return {k: (round(row[k], 4) if isinstance(row.get(k), float) else row.get(k)) for k in SUMMARY_KEYS}


def build_messages(state: CoordinatorState) -> list[dict]:
    spec = state.spec
    payload = {
        "model_spec": {k: getattr(spec, k) for k in ("model_name", "model_family", "parameter_count", "model_size_gb",
                                                       "hidden_size", "num_layers", "linear_in_features",
                                                       "valid_group_sizes", "preferred_methods",
                                                       "unsupported_methods")},
        "objectives": {n: {"direction": get_objective(n).direction, "unit": get_objective(n).unit,
                           "description": get_objective(n).description} for n in state.objectives},
        "baseline": _summary(state.baseline),
        "results_so_far": [dict(_summary(r), steps=r["strategy"]["steps"]) for r in state.results],
        "pareto_frontier": state.frontier_ids,
        "constraints": state.constraints,
        "allowed_methods": state.allowed_methods or "all",
        "episode": state.episode, "episodes_left": state.episodes_left,
        "budget_hours_left": round(state.budget_hours_left, 3),
        "candidate_menu": [{"label": c.label(), "steps": [{"method": s.method, "params": s.params} for s in c.steps]}
                           for c in state.untried()],
    }
    if not state.allowed_methods or "mixed" in state.allowed_methods:
        payload["mixed_precision"] = mixed_precision_brief(spec)
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps(payload, default=str)}]


def mixed_precision_brief(spec) -> dict:
    """What the LLM needs to propose a per-block mixed allocation: how to ask for one and, once measured,
    each block's sensitivity (KL when only that block is quantized at each level)."""
    brief = {"how": "propose {\"method\": \"mixed\", \"params\": {\"budget_bits\": B}} (B = average bits per "
                    "quantized weight, e.g. 3.5): the method measures each block's sensitivity and solves for the "
                    "allocation of w2/w3/w4/w8 (group 64) with the least KL within B; \"solver\": \"evolutionary\" "
                    "searches on measured KL instead of the additive table"}
    table = known_sensitivity(spec)
    if table:
        brief["sensitivity"] = {"levels": table["levels"], "kl_when_only_this_block_is_quantized": {
            block: {lv: round(kl, 5) for lv, kl in row.items()}
            for block, row in table["kl_when_only_this_block_is_quantized"].items()}}
    return brief


DIALECTS = ("json_schema", "json_object", "none")


REASONING_MAX_CHARS = 300   # so a grammar-constrained answer ends well inside max_tokens


def strategy_schema(menu: list[list[dict]] | None = None) -> dict:
    """STRATEGY_SCHEMA with `steps` one of the candidate menu's step lists, exactly (an enum of JSON values).
    `parse_answer` accepts only menu strategies, so a schema that allowed any method and any parameters let a
    grammar-constrained small model answer JSON that parsed and was still refused: on the lent H100
    (2026-12-07) SmolLM2-135M invented a candidate ('mixed_4b_knapsack') and a parameter ('bits_per_block')
    and fell back to the planner in 4 of 5 episodes. Constrained to the menu, every answer is a valid choice."""
    if not menu:
        return STRATEGY_SCHEMA
    schema = json.loads(json.dumps(STRATEGY_SCHEMA))
    schema["properties"]["steps"] = {"enum": menu}
    schema["properties"]["reasoning"] = {"type": "string", "maxLength": REASONING_MAX_CHARS}
    return schema


def response_format(dialect: str, schema: dict | None = None) -> dict | None:
    schema = schema or STRATEGY_SCHEMA
    if dialect == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "strategy", "schema": schema}}
    if dialect == "json_object":   # llama.cpp's server turns the schema into a grammar; others ignore it
        return {"type": "json_object", "schema": schema}
    return None


def refuses_response_format(exc) -> bool:
    """A 4xx/5xx whose message is about the structured-output request, not about anything else."""
    text = str(getattr(exc, "message", "") or exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "structured output",
                                         "response format"))


def dialects_file() -> Path:
    return data_root() / "llm_endpoints.json"


def remembered_dialect(endpoint: str) -> str | None:
    try:
        return json.loads(dialects_file().read_text()).get(endpoint)
    except (OSError, ValueError):
        return None


def remember_dialect(endpoint: str, dialect: str) -> None:
    """Best effort: a read-only data folder only means the next process negotiates again."""
    path = dialects_file()
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        known[endpoint] = dialect
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    except (OSError, ValueError):
        pass


def extract_json(text: str) -> str:
    """The JSON object in an answer that may wrap it in a code fence or prose."""
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    if fenced:
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else text


def parse_answer(text: str, state: CoordinatorState) -> Proposal:
    """JSON -> validated Strategy, or ValueError saying exactly what is wrong."""
    try:
        data = json.loads(extract_json(text), strict=False)   # a raw newline inside the reasoning is no error
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
        raise ValueError("the answer must be an object with a non-empty 'steps' list and a 'reasoning' string")
    try:
        steps = [Step(str(s["method"]), dict(s.get("params") or {})) for s in data["steps"]]
    except (KeyError, TypeError, AttributeError):
        raise ValueError("each step must be an object with 'method' (string) and 'params' (object)") from None
    if state.allowed_methods and any(s.method not in state.allowed_methods for s in steps):
        raise ValueError(f"only these methods are allowed: {state.allowed_methods}")
    try:
        strategy = validate_strategy(Strategy("llm", steps, redact(str(data.get("reasoning", "")))), state.spec)
    except GreenAIError as exc:
        raise ValueError(f"invalid strategy: {exc.message} {exc.remedy}") from None
    label = strategy.label()
    if label in state.tried_labels:
        raise ValueError(f"'{label}' was already tried; choose a different strategy")
    menu = {c.label(): c for c in state.candidates}
    if menu and label not in menu:
        raise ValueError(f"'{label}' is not in the candidate menu; pick one of: {', '.join(c.label() for c in state.untried())}")
    return Proposal(strategy, strategy.reasoning or "(no reasoning given)")


class LlmCoordinator:
    name = "llm"

    def __init__(self, settings: LlmSettings | None = None, sleep=time.sleep):
        self.settings = settings or LlmSettings()
        self.sleep = sleep
        key = self.settings.api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise CoordinatorKeyMissing("the llm coordinator needs an API key (OPENAI_API_KEY).")
        from openai import OpenAI

        self.client = OpenAI(api_key=key, base_url=self.settings.base_url or os.environ.get("OPENAI_BASE_URL"),
                             timeout=self.settings.timeout_s, max_retries=0)
        self.endpoint = f"{self.client.base_url} {self.settings.model}"
        self.dialect = remembered_dialect(self.endpoint) or DIALECTS[0]

    def propose(self, state: CoordinatorState) -> Proposal | None:
        if not state.untried():
            return None
        messages = build_messages(state)
        self._schema = strategy_schema([[{"method": s.method, "params": s.params} for s in c.steps]
                                        for c in state.untried()])
        problems = []
        for _ in range(self.settings.max_answer_retries):
            text = self._complete(messages)
            try:
                return parse_answer(text, state)
            except ValueError as exc:
                problems.append(str(exc))
                messages = messages + [{"role": "assistant", "content": text},
                                       {"role": "user", "content": f"That answer was rejected: {exc}. Answer again with JSON only."}]
        raise CompressionFailed(
            f"the LLM coordinator gave no valid strategy in {self.settings.max_answer_retries} tries: {problems[-1]}",
            f"Use a more capable model (llm_model, now '{self.settings.model}'), or the offline planner "
            "(--coordinator planner).")

    def _complete(self, messages: list[dict]) -> str:
        """One answer's text, negotiating the structured-output dialect with the server."""
        import openai

        while True:
            try:
                text = self._request(messages)
            except (openai.BadRequestError, openai.InternalServerError, openai.UnprocessableEntityError) as exc:
                position = DIALECTS.index(self.dialect)
                if not refuses_response_format(exc) or position == len(DIALECTS) - 1:
                    raise self._http_error(exc) from None
                self.dialect = DIALECTS[position + 1]      # the server refused this dialect: step down
                continue
            except openai.APIStatusError as exc:
                raise self._http_error(exc) from None
            remember_dialect(self.endpoint, self.dialect)
            return text

    def _http_error(self, exc) -> GreenAIError:
        status = getattr(exc, "status_code", "?")
        detail = str(getattr(exc, "message", exc)).splitlines()[0][:200]
        if status == 403:
            return CoordinatorKeyMissing(f"the LLM API refused the key for this request (403: {detail}).")
        return NetworkError(f"the LLM API at {self.client.base_url} failed with HTTP {status}: {detail}",
                            f"Check the base URL and the model name ('{self.settings.model}'), retry later, or use "
                            "the offline planner (--coordinator planner).")

    def _request(self, messages: list[dict]) -> str:
        import openai

        fmt = response_format(self.dialect, getattr(self, "_schema", None))
        extra = {"response_format": fmt} if fmt else {}
        for attempt in range(self.settings.max_rate_limit_retries + 1):
            try:
                response = self.client.chat.completions.create(
                    model=self.settings.model, messages=messages, temperature=self.settings.temperature,
                    max_tokens=self.settings.max_tokens, **extra)
                return self._answer_text(response)
            except openai.RateLimitError as exc:
                body = exc.body if isinstance(exc.body, dict) else {}
                code = (body.get("error") or body).get("code") if isinstance(body, dict) else None
                if code == "insufficient_quota" or attempt == self.settings.max_rate_limit_retries:
                    raise QuotaExceeded(f"the LLM API refused with 429 ({code or 'rate limited'}).") from exc
                self.sleep(self._retry_after(exc, attempt))
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                raise NetworkError(f"the LLM API at {self.client.base_url} could not be reached ({type(exc).__name__}).",
                                   "Check the base URL and network, or use the offline planner (--coordinator planner).") from exc
            except openai.AuthenticationError:
                raise CoordinatorKeyMissing("the LLM API rejected the key (401).") from None
            except openai.APIStatusError:
                raise                      # _complete maps it (dialect fallback, then E006 / E001)
            except openai.OpenAIError as exc:  # anything else the client raises: never a traceback
                raise NetworkError(f"the LLM API at {self.client.base_url} failed ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}).",
                                   "Check the base URL and the server, or use the offline planner "
                                   "(--coordinator planner).") from None
        raise QuotaExceeded("rate limited")  # unreachable: the loop raises or returns

    def _answer_text(self, response) -> str:
        """The first choice's text; E006 for a response that is not a Chat Completion or has no choices."""
        where = f"the LLM API at {self.client.base_url}"
        remedy = ("Check that the base URL points at an OpenAI-compatible Chat Completions endpoint and the model "
                  f"name ('{self.settings.model}') is served there, or use the offline planner (--coordinator planner).")
        if isinstance(response, (str, bytes)) or not hasattr(response, "choices"):
            text = response if isinstance(response, str) else type(response).__name__
            raise NetworkError(f"{where} answered with something that is not a Chat Completions response "
                               f"({text[:80]!r}).", remedy)
        if not response.choices:
            raise NetworkError(f"{where} answered HTTP 200 with no choices (model '{self.settings.model}').", remedy)
        try:
            return response.choices[0].message.content or ""   # empty: rejected by parse_answer, asked again
        except (AttributeError, IndexError, TypeError):
            raise NetworkError(f"{where} answered with a malformed choice (no message).", remedy) from None

    def _retry_after(self, exc, attempt: int) -> float:
        header = exc.response.headers.get("retry-after") if exc.response is not None else None
        try:
            delay = float(header) if header is not None else 2.0 ** attempt
        except ValueError:
            delay = 2.0 ** attempt
        return min(max(delay, 0.0), self.settings.max_retry_after_s)
