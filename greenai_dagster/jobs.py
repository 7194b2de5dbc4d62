"""Jobs: create an experiment from the Dagster UI (the coordinator sensor then drives it)."""

from dagster import Config, OpExecutionContext, job, op
from pydantic import Field

from greenai_dagster.core.config import ExperimentConfig
from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.partitions import experiments_partitions
from greenai_dagster.resources import ResultsStoreResource


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
    allow_code_execution: bool = Field(False, description=(
        "opt in to executing model-written code (HumanEval) in the sandbox; off by default"))
    trust_remote_code: bool = Field(False, description=(
        "let transformers run Python code shipped with the model (auto_map); off by default"))


def register_experiment(store, config: ExperimentConfig) -> str:
    """Record the experiment for the sensor; checks the inputs first (clear E00x errors)."""
    from greenai_dagster.core.benchmarks import resolve_source
    from greenai_dagster.runner import validate_inputs

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
                                constraints=config.constraints, objectives=config.objectives or None, driver="sensor",
                                allow_code_execution=config.allow_code_execution,
                                trust_remote_code=config.trust_remote_code)
    try:
        name = register_experiment(store.get(), settings)
    except GreenAIError as exc:
        raise RuntimeError(str(exc)) from None
    context.instance.add_dynamic_partitions(experiments_partitions.name, [name])
    context.log.info(f"experiment {name} created; coordinator_sensor will drive it")
    return name


@job(description="Create a compression experiment; the coordinator sensor runs its episodes.")
def launch_experiment():
    create_experiment()
