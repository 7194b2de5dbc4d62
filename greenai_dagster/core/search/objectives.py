"""Every objective the system can optimise or report, named once.

The store, the Pareto code, the report and chart, `analyze`, the LLM coordinator's prompt and the
asset metadata all read this table; adding an objective is one entry. `frontier=True` marks the
default frontier objectives; users pick others with `objectives: [...]` in the config or
`--objectives` on the CLI.

Hypervolume needs every objective on a comparable scale and a reference point worse than any
member: objectives with `scale="baseline"` are divided by the baseline's value (reference 0 for
maximised, 2x the baseline for minimised ones); `kl_divergence` is 0 for the baseline, so it is
used as is with the quality gate's bound as its reference (nothing beyond the gate can be a member).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str                  # also the results column
    direction: str             # "max" or "min"
    unit: str
    description: str
    frontier: bool = False     # a default frontier objective
    scale: str = "baseline"    # "baseline": normalised by the baseline's value; "absolute": used as is
    label: str = ""            # short column header for tables

    @property
    def maximise(self) -> bool:
        return self.direction == "max"

    def header(self) -> str:
        return self.label or self.name


OBJECTIVES: dict[str, Objective] = {o.name: o for o in [
    Objective("kl_divergence", "min", "nats/token",
              "mean KL divergence of the next-token distribution from the baseline's, on held-out text",
              frontier=True, scale="absolute", label="KL"),
    Objective("accuracy", "max", "fraction", "benchmark accuracy (macro mean over tasks; proxy items while searching)",
              frontier=True, label="acc"),
    Objective("latency_ms", "min", "ms/token", "decode latency per token at batch 1", frontier=True, label="ms/tok"),
    Objective("memory_gb", "min", "GiB", "peak memory while serving", frontier=True, label="mem GB"),
    Objective("model_size_gb", "min", "GiB", "size of the weight files on disk", frontier=True, label="size GB"),
    Objective("kl_sampled", "min", "nats/token",
              "mean KL divergence from the baseline on text the baseline sampled itself (16 prompts across domains, "
              "temperature 1; core.evaluation.sampled_text)", scale="absolute", label="KL smp"),
    Objective("top1_agreement", "max", "fraction",
              "share of held-out positions where the candidate's most likely token is the baseline's", label="top1"),
    Objective("ppl_ratio", "min", "ratio", "perplexity on held-out text divided by the baseline's", label="ppl x"),
    Objective("perplexity", "min", "", "perplexity on held-out text", label="ppl"),
    Objective("throughput_tokens_per_s", "max", "tokens/s", "batched generation throughput", label="tok/s"),
    Objective("energy_j_per_token", "min", "J/token",
              "energy per decoded token while serving (core.evaluation.serving_energy: RAPL or NVML counter, else codecarbon's power model)",
              label="J/tok"),
    Objective("energy_kwh", "min", "kWh", "energy of compression plus evaluation (codecarbon)", label="kWh"),
    Objective("co2_grams", "min", "g", "CO2 of compression plus evaluation (codecarbon)", label="CO2 g"),
    Objective("compression_ratio", "max", "x", "baseline size / candidate size", label="ratio"),
]}

DEFAULT_FRONTIER = [o.name for o in OBJECTIVES.values() if o.frontier]
# Quality ranks by fidelity alone when the benchmark cannot tell the baseline from chance.
FIDELITY_ONLY_DROP = ("accuracy",)


def get(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective '{name}'; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def directions(names: list[str] | None = None) -> dict[str, bool]:
    """{name: maximise} for the given objective names (default: the frontier objectives)."""
    return {n: get(n).maximise for n in (names or DEFAULT_FRONTIER)}
