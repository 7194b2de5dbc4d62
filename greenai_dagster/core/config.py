"""Typed experiment configuration, validated at the edge (CLI flags, --config JSON, UI launch)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from greenai_dagster.core import objectives as objective_registry

from greenai_dagster.core.errors import EvaluationError
from greenai_dagster.core.eval_settings import EvalSettings
from greenai_dagster.core.user_files import read_user_text
from greenai_dagster.core.loading import DEFAULT_MODEL
from greenai_dagster.core.paths import experiments_dir


# The `eval` block: the same class the evaluation functions take (core/eval_settings.py), one set of names,
# defaults and descriptions; EvalConfig stays as its name here for stored configs and callers.
EvalConfig = EvalSettings


class ExperimentConfig(BaseModel):
    """Everything one experiment needs; stored as JSON in DuckDB's `experiments` table."""

    model_config = ConfigDict(extra="forbid")
    model: str = DEFAULT_MODEL
    dataset: str = "generated_mc"
    benchmark_source: str = Field("auto", pattern="^(auto|offline|hub)$",
                                  description="lm-eval's standard tasks (hub) or local data (offline); auto: "
                                              "the hub where reachable. Fixed when the experiment is created.")
    episodes: int = Field(3, ge=1, le=1000)
    budget: float = Field(2.0, gt=0, description="hours of wall time")
    output_dir: str = Field(default_factory=lambda: str(experiments_dir()))
    name: str | None = None
    compression_methods: list[str] | None = None
    trust_remote_code: bool = Field(False, description=(
        "let transformers run Python code shipped with the model (auto_map); off by default: such a model is "
        "refused with E002 naming --trust-remote-code"))
    allow_code_execution: bool = Field(False, description=(
        "run model-written code (HumanEval) in the sandbox (core/sandbox.py); off by default: a benchmark that "
        "executes code is refused with E004 without it (CLI --allow-code-execution)"))
    constraints: dict[str, float] = Field(default_factory=dict, description=(
        "min_<metric>/max_<metric> bounds on result columns, e.g. min_accuracy, max_latency_ms; the quality gate's "
        "max_kl, max_ppl_ratio and max_accuracy_drop (defaults in core/gate.py) mark candidates beyond them "
        "`degraded`"))
    objectives: list[str] | None = Field(None, description="frontier objectives (core/objectives.py); default: "
                                                           + ", ".join(objective_registry.DEFAULT_FRONTIER))
    coordinator: str = Field("planner", pattern="^(planner|llm|random)$")
    coordinator_fallback: str | None = Field(None, pattern="^planner$", description=(
        "when the coordinator fails after its own retries (endpoint errors, rate limits, no valid answer): "
        "\"planner\" lets the offline planner decide that episode; unset ends the experiment with termination "
        "'error', the failure recorded"))
    llm_model: str = "gpt-4o-mini"
    llm_base_url: str | None = None
    llm_temperature: float = Field(0.2, ge=0.0, le=2.0)
    family_priors: bool = Field(False, description="the planner starts from earlier experiments in the store on "
                                "the same model family (core/coordinator/priors.py)")
    seed: int = 0
    convergence_patience: int = Field(4, ge=1, description="stop after this many episodes with no frontier change")
    stop_when_constraints_met: bool = False
    driver: str = Field("cli", pattern="^(cli|sensor)$", description="who runs the episodes: the CLI in-process, or the Dagster sensor")
    device: str = "auto"
    country_iso_code: str = "TWN"
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("constraints")
    @classmethod
    def _constraint_names(cls, value: dict) -> dict:
        from greenai_dagster.core.gate import check_constraint_names

        return check_constraint_names(value)

    @field_validator("name")
    @classmethod
    def _name_is_a_partition_key(cls, value):
        """The name is a Dagster partition key (alone, and as the experiment dimension of the candidates'
        `<experiment>|<strategy>` key) and the first part of every candidate key `<experiment>/<strategy_id>`."""
        if not value:      # unset: a generated name (`experiment_name`)
            return value
        reserved = set(value) & set("/|,[]\\")
        if reserved or "..." in value or any(ord(c) < 32 for c in value):
            raise ValueError(f"experiment name {value!r} must not hold control characters, '...' or any "
                             "of / \\ | , [ ] (it is a Dagster partition key and a folder name)")
        return value

    @field_validator("llm_base_url")
    @classmethod
    def _no_credentials_in_url(cls, value):
        """A key belongs in OPENAI_API_KEY, never in the config (which is stored in DuckDB and the reports)."""
        if value is None:
            return value
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("llm_base_url must be an http(s) URL such as http://127.0.0.1:8765/v1")
        secret_query = [k for k, _ in parse_qsl(parts.query) if re.search(r"key|token|secret|password", k, re.I)]
        if parts.username or parts.password or secret_query:
            raise ValueError("llm_base_url must not carry credentials (user:password@ or a key/token parameter); "
                             "put the key in OPENAI_API_KEY")
        return value

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value):
        if value is not None:
            unknown = [v for v in value if v not in objective_registry.OBJECTIVES]
            if unknown or not value:
                raise ValueError(f"unknown objective(s) {unknown}; known: {', '.join(objective_registry.OBJECTIVES)}")
        return value

    def make_coordinator(self, priors: list[dict] | None = None):
        from greenai_dagster.core.coordinator import LlmSettings, make_coordinator

        settings = LlmSettings(model=self.llm_model, base_url=self.llm_base_url, temperature=self.llm_temperature)
        return make_coordinator(self.coordinator, seed=self.seed, llm=settings, priors=priors)

    def experiment_name(self) -> str:
        if self.name:
            return self.name
        short = Path(self.model).name if self.model != DEFAULT_MODEL else "smollm2-135m"
        short = re.sub(r"[^A-Za-z0-9.-]+", "-", short).strip("-").lower()
        bench = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(self.dataset).stem).lower()
        return f"{short}_{bench}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"


def load_config(overrides: dict, config_file: str | None = None, eval_overrides: dict | None = None) -> ExperimentConfig:
    """Merge a --config JSON file with CLI overrides (CLI wins, also inside `eval`) and validate."""
    data: dict = {}
    if config_file:
        text = read_user_text(Path(config_file), "config file", "a JSON file to --config")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"config file '{config_file}' is not valid JSON: {exc}.", "Fix the JSON syntax.") from None
        if not isinstance(data, dict):
            raise EvaluationError(f"config file '{config_file}' holds a JSON {type(data).__name__}, not an object.",
                                  'The file must be one JSON object, e.g. {"model": "...", "episodes": 5}.')
        if not isinstance(data.get("eval", {}), dict):
            raise EvaluationError("invalid configuration: eval: must be an object.", "Fix that field in the config.")
    data.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(data.get("compression_methods"), list):   # E005 before anything runs (types: pydantic below)
        from greenai_dagster.core.coordinator.space import check_method_names

        check_method_names([m for m in data["compression_methods"] if isinstance(m, str)])
    if eval_overrides:
        data["eval"] = {**data.get("eval", {}), **eval_overrides}
    return validated_config(data, "Fix that field in the config or flags.")


def validated_config(data: dict, remedy: str) -> "ExperimentConfig":
    """`ExperimentConfig(**data)`, or the seed's E004 naming the first invalid field (never a raw pydantic
    traceback: the CLI, a config file and the Launchpad all end here)."""
    try:
        return ExperimentConfig(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise EvaluationError(f"invalid configuration: {where}: {first['msg']}.", remedy) from None
