"""Jobs: create an experiment from the Dagster UI (the coordinator sensor then drives it), and one named
asset job per stage of an experiment, so every run says what it is (setup, candidate, frontier,
frontier_full_set) instead of `__ASSET_JOB`. Each runs its steps in the run's own process (the
steps of a stage are sequential; a process per step only re-imports torch)."""

from enum import Enum
from typing import Optional

from dagster import AssetSelection, Config, OpExecutionContext, define_asset_job, in_process_executor, job, op
from pydantic import Field, create_model

from greenai_dagster.core import objectives as objective_registry
from greenai_dagster.core.config import ExperimentConfig, validated_config
from greenai_dagster.instance import EXPERIMENT_TAG, SOURCE_TAG
from greenai_dagster.core.eval_settings import OVERRIDABLE, override_fields
from greenai_dagster.core.methods import REGISTRY as METHODS
from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.partitions import candidates_partitions, experiments_partitions
from greenai_dagster.resources import ResultsStoreResource


class _EvalOverridesBase(Config):
    def settings(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None}


# The Launchpad's `eval` block is generated from the one evaluation settings class (core/eval_settings.py):
# the same names and descriptions, each optional (unset keeps the class's default, named in the description).
LAUNCHPAD_EVAL_FIELDS = OVERRIDABLE
EvalOverrides = create_model(
    "EvalOverrides", __base__=_EvalOverridesBase,
    __doc__="Evaluation settings (core/eval_settings.py `EvalSettings`); a field left unset keeps its default.",
    **override_fields())


class Coordinator(str, Enum):
    """Who proposes each episode's strategy (core/coordinator)."""

    planner = "planner"    # deterministic: spec priors, then a surrogate over what was measured
    llm = "llm"            # an OpenAI-compatible model (OPENAI_API_KEY, or llm_base_url in `greenai run`)
    random = "random"      # uniform over the search space (a baseline for the others)


class BenchmarkSource(str, Enum):
    """Where a named benchmark's items come from; fixed when the experiment is created."""

    auto = "auto"          # the hub where reachable, else the packaged offline copy
    offline = "offline"    # the packaged offline copy
    hub = "hub"            # lm-eval's standard task from the Hugging Face hub


CONSTRAINT_KEYS = ", ".join(f"min_{n}/max_{n}" for n in objective_registry.OBJECTIVES)


class NewExperimentConfig(Config):
    """The `greenai run` settings, as launchpad config."""

    model: str = Field("smollm2-135m-instruct", description=(
        "the model to compress: the embedded default (smollm2-135m-instruct), a Hugging Face id, or a local folder"))
    dataset: str = Field("generated_mc", description=(
        "the benchmark: a name from `greenai benchmarks` (e.g. generated_mc, bigbench_hard, humaneval) or "
        "a local .jsonl file of multiple-choice items"))
    benchmark_source: BenchmarkSource = Field(BenchmarkSource.auto, description=(
        "auto: the hub where reachable, else offline; offline: the packaged copy; hub: lm-eval's standard task"))
    episodes: int = Field(3, description="candidates to compress and evaluate (1-1000)")
    budget: float = Field(2.0, description="wall-clock budget in hours; the experiment stops when it is spent")
    name: str = Field("", description="experiment name (the partition key); empty: <model>_<benchmark>_<time>")
    seed: int = Field(0, description="seed of the coordinator's choices (planner tie-breaks, random)")
    coordinator: Coordinator = Field(Coordinator.planner, description=(
        "who proposes each episode: planner (deterministic, spec priors then a surrogate), llm (an "
        "OpenAI-compatible model; needs OPENAI_API_KEY) or random"))
    compression_methods: list[str] = Field(default_factory=list, description=(
        "methods the coordinator may use (`greenai methods`: " + ", ".join(sorted(METHODS)) + "); empty = all that "
        "suit the model"))
    constraints: dict[str, float] = Field(default_factory=dict, description=(
        "bounds on result columns, as min_<metric>/max_<metric>: " + CONSTRAINT_KEYS + "; also max_kl "
        "(quality gate, default 0.5 nats/token), max_ppl_ratio (default 2.0) and max_accuracy_drop (default 0.05, "
        "where the paired McNemar test says worse): candidates beyond the gate are marked degraded. Example: "
        "{max_latency_ms: 20, min_accuracy: 0.3}"))
    objectives: list[str] = Field(default_factory=list, description=(
        "frontier objectives, any of: " + ", ".join(objective_registry.OBJECTIVES) + "; empty = "
        + ", ".join(objective_registry.DEFAULT_FRONTIER)))
    eval: EvalOverrides = Field(default_factory=EvalOverrides, description=(
        "evaluation settings: proxy items per task (limit_per_task), full-set scoring of the final frontier "
        "(full_set_for_frontier), fidelity tokens, latency probe; unset = defaults"))
    allow_code_execution: bool = Field(False, description=(
        "opt in to executing model-written code (HumanEval) in the sandbox; off by default"))
    trust_remote_code: bool = Field(False, description=(
        "let transformers run Python code shipped with the model (auto_map); off by default"))


def register_experiment(store, config: ExperimentConfig) -> str:
    """Record the experiment for the sensor; checks the inputs first (clear E00x errors). The same
    creation and validation as `greenai run` (core/engine.py `create_experiment`)."""
    from greenai_dagster.core.engine import create_experiment

    name, _, _ = create_experiment(store, config)
    return name


@op
def create_experiment(context: OpExecutionContext, config: NewExperimentConfig, store: ResultsStoreResource) -> str:
    try:
        settings = validated_config(dict(
            model=config.model, dataset=config.dataset, episodes=config.episodes, budget=config.budget,
            benchmark_source=BenchmarkSource(config.benchmark_source).value, name=config.name or None,
            coordinator=Coordinator(config.coordinator).value, seed=config.seed,
            compression_methods=config.compression_methods or None, constraints=config.constraints,
            objectives=config.objectives or None, eval=config.eval.settings(), driver="sensor",
            allow_code_execution=config.allow_code_execution, trust_remote_code=config.trust_remote_code),
            "Fix that field in the Launchpad's config and launch again.")
        name = register_experiment(store.get(), settings)
    except GreenAIError as exc:
        raise RuntimeError(str(exc)) from None
    # one identity whoever launched it: a Launchpad launch carries no tags, so the run is tagged here, as
    # POST /compress tags its own before submitting (GET /jobs/<this run> and /pareto find the experiment)
    tags = {EXPERIMENT_TAG: name}
    if SOURCE_TAG not in context.run.tags:
        tags[SOURCE_TAG] = "launchpad"
    context.instance.add_run_tags(context.run_id, tags)
    if store.get().facts(name).get("cancel_requested"):     # DELETE /jobs/{id} while this run was starting
        store.get().finish_experiment(name, "cancelled")
        context.log.info(f"experiment {name} was cancelled while its launch run started; nothing will run")
        return name
    context.instance.add_dynamic_partitions(experiments_partitions.name, [name])
    context.log.info(f"experiment {name} created; coordinator_sensor will drive it")
    return name


@job(description="Create a compression experiment; the coordinator sensor runs its episodes.",
     executor_def=in_process_executor)
def launch_experiment():
    create_experiment()


setup_job = define_asset_job(
    "setup", AssetSelection.assets("model_spec", "baseline"), partitions_def=experiments_partitions,
    executor_def=in_process_executor, description="An experiment's model spec and baseline (once per experiment).")
candidate_job = define_asset_job(
    "candidate", AssetSelection.assets("compressed_variant", "benchmark_result"), partitions_def=candidates_partitions,
    executor_def=in_process_executor,
    description="One episode: compress the candidate strategy, then benchmark it (and check the figures).")
frontier_job = define_asset_job(
    "frontier", AssetSelection.assets("pareto_frontier"), partitions_def=experiments_partitions,
    executor_def=in_process_executor, description="Recompute an experiment's Pareto frontier, files and chart.")
full_set_job = define_asset_job(
    "frontier_full_set", AssetSelection.assets("frontier_full_evaluation"), partitions_def=experiments_partitions,
    executor_def=in_process_executor,
    description="Score the baseline and the final frontier members on the benchmark's full set.")
STAGE_JOBS = {"setup": setup_job, "candidate": candidate_job, "frontier": frontier_job,
              "frontier_full_set": full_set_job}
