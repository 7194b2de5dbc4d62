"""What the UI should show when an experiment ends: its termination reason (and, where the full-set
scoring was not asked for, why `frontier_full_evaluation` stays unmaterialized), recorded as asset
observations on the experiment's partition, so they sit in those assets' event lists."""

from __future__ import annotations

from dagster import AssetObservation, DagsterInstance

from greenai_dagster.core.reporting import frontier_text


def record_finish(instance: DagsterInstance, name: str, final: dict, full_set_ran: bool) -> None:
    summary = final.get("frontier_summary") or {}
    instance.report_runless_asset_event(AssetObservation(
        asset_key="pareto_frontier", partition=name,
        description=f"experiment ended: {final['termination_reason']}",
        metadata={"termination_reason": final["termination_reason"],
                  "episodes_completed": final.get("episodes_completed", 0),
                  "frontier_size": summary.get("num_solutions", 0)}))
    if not full_set_ran:
        instance.report_runless_asset_event(AssetObservation(
            asset_key="frontier_full_evaluation", partition=name,
            description="not materialized for this experiment: full-set scoring was not asked for",
            metadata={"skipped_because": "eval.full_set_for_frontier is off for this experiment (" +
                                         frontier_text.FULL_SET_WHEN + ")"}))
