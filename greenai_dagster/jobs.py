"""Jobs: create an experiment from the Dagster UI (the coordinator sensor then drives it), and one named
asset job per stage of an experiment, so every run says what it is (setup, candidate, frontier,
frontier_full_set) instead of `__ASSET_JOB`. Each runs its steps in the run's own process (the
steps of a stage are sequential; a process per step only re-imports torch)."""

from typing import Optional

from dagster import AssetSelection, Config, OpExecutionContext, define_asset_job, in_process_executor, job, op
from pydantic import Field

from greenai_dagster.core.config import ExperimentConfig
from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.partitions import candidates_partitions, experiments_partitions
from greenai_dagster.resources import ResultsStoreResource


class EvalOverrides(Config):
    """Evaluation settings (core/config.py `EvalConfig`); a field left unset keeps its default."""

    limit_per_task: Optional[int] = Field(None, description="proxy items per benchmark task while searching (10)")
    full_set_for_frontier: Optional[bool] = Field(None, description="score the final frontier on every item "
                                                                    "(default: on a GPU only)")
    fidelity_tokens: Optional[int] = Field(None, description="held-out tokens scored against the baseline (4096)")
    batch_size: Optional[int] = Field(None, description="evaluation batch size (8)")
    prompt_len: Optional[int] = Field(None, description="latency probe: prompt tokens (128)")
    new_tokens: Optional[int] = Field(None, description="latency probe: decoded tokens (16)")
    latency_repeats: Optional[int] = Field(None, description="latency probe: repeats (5)")
    throughput_batch_size: Optional[int] = Field(None, description="throughput probe: batch size (4)")
    timeout_s: Optional[float] = Field(None, description="evaluation time limit per model, seconds (1800)")

    def settings(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class NewExperimentConfig(Config):
    """The `greenai run` settings, as launchpad config."""

    model: str = "smollm2-135m-instruct"
    dataset: str = "bigbench_above_chance"
    episodes: int = 3
    budget: float = 2.0
    name: str = ""
    coordinator: str = "planner"
    compression_methods: list[str] = []
    constraints: dict[str, float] = Field(default_factory=dict, description=(
        "min_<metric>/max_<metric> bounds, e.g. max_latency_ms; the quality gate's max_kl (default 0.5 nats/token) "
        "and max_ppl_ratio (default 2.0) mark candidates beyond them degraded"))
    objectives: list[str] = Field(default_factory=list, description=(
        "frontier objectives (greenai_dagster/core/objectives.py); empty = kl_divergence, accuracy, latency_ms, "
        "memory_gb, model_size_gb"))
    eval: EvalOverrides = Field(default_factory=EvalOverrides, description="evaluation settings; unset = defaults")
    allow_code_execution: bool = Field(False, description=(
        "opt in to executing model-written code (HumanEval) in the sandbox; off by default"))
    trust_remote_code: bool = Field(False, description=(
        "let transformers run Python code shipped with the model (auto_map); off by default"))


def register_experiment(store, config: ExperimentConfig) -> str:
    """Record the experiment for the sensor; checks the inputs first (clear E00x errors)."""
    from greenai_dagster.core.benchmarks import resolve_source
    from greenai_dagster.core.pipeline import validate_inputs

    config = config.model_copy(update={"benchmark_source": resolve_source(config.dataset, config.benchmark_source)})
    validate_inputs(config)
    config.make_coordinator()
    name = config.experiment_name()
    store.create_experiment(name, config.model, config.dataset, config.model_dump(), config.output_dir)
    return name


@op
def create_experiment(context: OpExecutionContext, config: NewExperimentConfig, store: ResultsStoreResource) -> str:
    settings = ExperimentConfig(model=config.model, dataset=config.dataset, episodes=config.episodes, budget=config.budget,
                                name=config.name or None, coordinator=config.coordinator,
                                compression_methods=config.compression_methods or None,
                                constraints=config.constraints, objectives=config.objectives or None,
                                eval=config.eval.settings(), driver="sensor",
                                allow_code_execution=config.allow_code_execution,
                                trust_remote_code=config.trust_remote_code)
    try:
        name = register_experiment(store.get(), settings)
    except GreenAIError as exc:
        raise RuntimeError(str(exc)) from None
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
