"""The frontier as a person reads it in the Dagster UI: a rounded markdown table, what the
hypervolume means, the best member per objective, and why the full-set scoring did not run.

Numbers are rounded to what the measurement supports (3-4 significant digits, intervals at 2
decimals); the frontier is two narrow tables that fit the partition panel of a 1600 px page, with the
runtime that measured each row named in a short column and described in full under them.
"""

from __future__ import annotations

from greenai_dagster.core.evaluation.flips import interval_text
from greenai_dagster.core.reporting.report import measured_by
from greenai_dagster.core.search.objectives import OBJECTIVES, get

FULL_SET_WHEN = ("Scored only when asked for, last in an experiment: on a GPU by default; on CPU off by default "
                 "(a full bigbench_hard pass takes about 30 min per model on 2 cores). Turn it on with "
                 "`greenai run --full-eval` or, in the Launchpad, `eval: {full_set_for_frontier: true}`.")


def num(value, digits: int = 4) -> str:
    """A float rounded to `digits` significant digits, plain notation where it reads well; '-' for none."""
    if value is None or value != value:
        return "-"
    value = float(value)
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    return text if "e" not in text or abs(value) < 1e-4 else f"{value:.{digits}f}"


def runtime_name(row: dict) -> str:
    return str((row.get("conditions") or {}).get("runtime") or "?")


def frontier_markdown(summary, baseline: dict | None) -> str:
    """The frontier as two narrow markdown tables (quality, then serving cost as measured by each row's
    runtime), so each fits the partition panel of a 1600 px page; the baseline first, for reference (it
    is not a member); then the runtimes in full and what was kept off the frontier and why."""
    rows = ([("(baseline)", baseline)] if baseline else []) + [(m["strategy_id"], m) for m in summary.members]

    def quality(r: dict, name: str) -> str:
        ci = interval_text(r["accuracy"], r.get("accuracy_stderr"), 2).replace("95% CI ", "")
        return (f"| {name} | {num(r.get('kl_divergence'), 3)} | {num(r.get('ppl_ratio'))} | "
                f"{num(r.get('top1_agreement'), 3)} | {r['accuracy']:.3f} [{ci}] | {num(r.get('model_size_gb'), 3)} |\n")

    def cost(r: dict, name: str) -> str:
        return (f"| {name} | {num(r.get('latency_ms'), 3)} | {num(r.get('throughput_tokens_per_s'), 3)} | "
                f"{num(r.get('energy_j_per_token'), 3)} | {num(r.get('memory_gb'), 3)} | {runtime_name(r)} |\n")

    quality_table = ("| strategy | KL nats/tok | ppl ratio | top-1 | accuracy [95% CI] | size GiB |\n"
                     "|---|---|---|---|---|---|\n" + "".join(quality(r, name) for name, r in rows))
    cost_table = ("| strategy | ms/tok | tok/s | J/tok | mem GiB | runtime |\n|---|---|---|---|---|---|\n"
                  + "".join(cost(r, name) for name, r in rows))

    runtimes = sorted({f"- {runtime_name(r)}: {measured_by(r)}\n" for _, r in rows if runtime_name(r) != "?"})
    kept_off = "".join(f"- {e['strategy_id']}: {e['reason']}\n" for e in summary.excluded)
    return (quality_table + "\nServing cost (decode at batch 1; tok/s batched):\n\n" + cost_table
            + ("\nThe baseline is shown for reference; it is not a frontier member.\n" if baseline else "")
            + (f"\nMeasured by:\n{''.join(runtimes)}" if runtimes else "")
            + (f"\nKept off the frontier:\n{kept_off}" if kept_off else ""))


def hypervolume_text(summary) -> str:
    """What the hypervolume number is, so a reader can tell whether 1.04 is good."""
    scales = []
    for name in summary.objectives:
        objective = get(name)
        if objective.scale == "absolute":
            scales.append(f"{name} as is ({objective.unit}; reference: the quality gate's bound)")
        else:
            scales.append(f"{name} / baseline (reference: {'0' if objective.maximise else '2x the baseline'})")
    why_zero = ""
    if summary.members and not summary.hypervolume:
        which = "; ".join(f"{sid}: {', '.join(axes)}" for sid, axes in getattr(summary, "at_reference", {}).items())
        why_zero = (" It is 0 because every member reaches the reference point on at least one axis (a figure at "
                    "the quality gate's bound, an accuracy of 0, or 2x the baseline's latency, memory or size), so "
                    "the members dominate no volume" + (f" ({which})" if which else "") + ": read their figures "
                    "below, e.g. a variant served by a slow fallback runtime (conditions.runtime_fallback says why).")
    return (f"Hypervolume = {num(summary.hypervolume)}: the volume of objective space the {len(summary.members)} "
            f"frontier member(s) dominate, up to a reference point worse than any acceptable model. Larger is "
            f"better; it grows when a new member improves on the frontier anywhere. Axes: {'; '.join(scales)}. "
            f"Compare it only between experiments with the same objectives and baseline.{why_zero}")


def best_per_objective(summary) -> dict:
    """{objective: "strategy (value unit)"}: the best feasible candidate on each objective alone."""
    out = {}
    for name, row in summary.best_per_objective.items():
        unit = OBJECTIVES[name].unit if name in OBJECTIVES else ""
        out[name] = f"{row['strategy_id']} ({num(row.get(name))} {unit})".replace(" )", ")")
    return out
